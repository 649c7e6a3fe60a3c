"""The Stable Diffusion backend: our stages in order equal diffusers' own pipelines, offline.

Tiny random-weight SD-architecture components (32x32 RGB, latent 4x8x8) keep the file to a few seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import (
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

from megen.errors import MegenError
from megen.models import registry
from megen.models.ldm import StagedLDM
from megen.models.registry import load_model
from megen.models.sd import load_stable_diffusion, staged_from_components
from megen.testing import build_tiny_sd_components, save_tiny_sd_checkpoint

PROMPTS = ["a photo of a cat", "a red house"]
STEPS = 6
SEED = 3


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The components are tiny: extra threads only fight over the CPU (10x slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    return build_tiny_sd_components(seed=0)


@pytest.fixture(scope="module")
def model(components: dict[str, Any]) -> StagedLDM:
    return staged_from_components(components, name="tiny-sd")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(len(PROMPTS), 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sd_checkpoint(tmp_path_factory.mktemp("tiny-sd"), seed=0)


def _pipe(cls: type, components: dict[str, Any]) -> Any:
    pipe = cls(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ours_txt2img(model: StagedLDM, guidance: float, stop_at: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(SEED)
    cond = model.encode_text(PROMPTS)
    z = model.noise(None, num_steps=STEPS, strength=None, generator=gen, batch_size=len(PROMPTS))
    if stop_at is not None:  # split: D[0:k] on one node, the latent crosses as a tensor, D[k:N] on another
        z = model.denoise(z, cond, num_steps=STEPS, start=0, stop=stop_at, guidance=guidance).clone()
        z = model.denoise(
            z, cond, num_steps=STEPS, start=stop_at, stop=STEPS, guidance=guidance, denoiser="ue"
        )
    else:
        z = model.denoise(z, cond, num_steps=STEPS, start=0, stop=STEPS, guidance=guidance)
    return model.decode(z)


def _ours_img2img(model: StagedLDM, images: torch.Tensor, strength: float, guidance: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(SEED)
    cond = model.encode_text(PROMPTS)
    z_ref = model.encode_image(images, sample=True, generator=gen)
    z = model.noise(z_ref, num_steps=STEPS, strength=strength, generator=gen)
    start = model.start_step(STEPS, strength)
    z = model.denoise(z, cond, num_steps=STEPS, start=start, stop=STEPS, guidance=guidance)
    return model.decode(z)


@pytest.mark.equivalence
class TestMatchesDiffusers:
    @pytest.mark.parametrize("guidance", [1.0, 7.5])
    def test_text_to_image_equals_stable_diffusion_pipeline(
        self, components: dict[str, Any], model: StagedLDM, guidance: float
    ) -> None:
        ref = _pipe(StableDiffusionPipeline, components)(
            prompt=PROMPTS,
            num_inference_steps=STEPS,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(SEED),
            output_type="pt",
        ).images
        ours = _ours_txt2img(model, guidance)
        assert ours.shape == ref.shape == (len(PROMPTS), *model.image_shape)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
        assert ours.std() > 0.01  # not a trivially constant image

    @pytest.mark.parametrize("guidance", [1.0, 7.5])
    @pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
    def test_image_to_image_equals_img2img_pipeline(
        self,
        components: dict[str, Any],
        model: StagedLDM,
        images: torch.Tensor,
        strength: float,
        guidance: float,
    ) -> None:
        ref = _pipe(StableDiffusionImg2ImgPipeline, components)(
            prompt=PROMPTS,
            image=images,
            strength=strength,
            num_inference_steps=STEPS,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(SEED),
            output_type="pt",
        ).images
        ours = _ours_img2img(model, images, strength, guidance)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)

    def test_guidance_and_prompt_change_the_image(self, model: StagedLDM) -> None:
        """Guards the equivalence tests against vacuous agreement (e.g. conditioning ignored)."""
        plain, guided = _ours_txt2img(model, 1.0), _ours_txt2img(model, 7.5)
        assert (plain - guided).abs().max() > 1e-4
        cond = model.encode_text(PROMPTS)
        assert (cond.hidden[0] - cond.hidden[1]).abs().max() > 1e-4


@pytest.mark.equivalence
@pytest.mark.parametrize("k", [0, 1, 3, STEPS - 1, STEPS])
def test_split_denoising_equals_unsplit_exactly(model: StagedLDM, k: int) -> None:
    assert torch.equal(_ours_txt2img(model, 7.5, stop_at=k), _ours_txt2img(model, 7.5))


@pytest.mark.equivalence
def test_saved_checkpoint_reloads_to_the_same_image(model: StagedLDM, checkpoint: Path) -> None:
    assert (checkpoint / "model_index.json").is_file()
    from megen.session import Session

    session = Session()
    loaded = session.model(str(checkpoint))
    assert session.model(str(checkpoint)) is loaded  # kept by the session
    assert load_model(str(checkpoint)) is not loaded  # the registry itself keeps nothing
    assert loaded.image_shape == model.image_shape and loaded.latent_shape == model.latent_shape
    assert loaded.name == checkpoint.name
    assert torch.equal(_ours_txt2img(loaded, 7.5), _ours_txt2img(model, 7.5))
    # the folder is a genuine diffusers checkpoint
    pipe = StableDiffusionPipeline.from_pretrained(checkpoint, local_files_only=True)
    assert pipe.unet.config.sample_size == 8


def test_hub_id_loads_from_the_local_cache_only(checkpoint: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "models--megen-test--tiny-sd" / "snapshots" / "0123abcd"
    shutil.copytree(checkpoint, snapshot)
    (tmp_path / "models--megen-test--tiny-sd" / "refs").mkdir()
    (tmp_path / "models--megen-test--tiny-sd" / "refs" / "main").write_text("0123abcd")
    loaded = load_stable_diffusion("megen-test/tiny-sd", cache_dir=tmp_path)
    assert loaded.name == "megen-test/tiny-sd"
    with pytest.raises(MegenError, match="not in the local Hugging Face cache"):
        load_stable_diffusion("megen-test/not-cached", cache_dir=tmp_path)


def test_scheduler_is_ddim_with_pipeline_corrections(components: dict[str, Any]) -> None:
    pndm = PNDMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=0, skip_prk_steps=True
    )
    pndm.register_to_config(clip_sample=True)
    model = staged_from_components({**components, "scheduler": pndm})
    sched = model.scheduler(STEPS)
    assert type(sched).__name__ == "DDIMScheduler"
    assert sched.config.clip_sample is False and sched.config.steps_offset == 1
    assert sched.config.beta_schedule == "scaled_linear"


def test_separate_ue_unet(checkpoint: Path, components: dict[str, Any], tmp_path: Path) -> None:
    config = dict(components["unet"].config)
    small = UNet2DConditionModel.from_config({**config, "block_out_channels": (8, 16), "norm_num_groups": 4})
    small.save_pretrained(tmp_path / "ue")
    model = load_stable_diffusion(checkpoint, ue_unet_path=tmp_path / "ue")
    assert model.denoisers["ue"] is not model.denoisers["es"]
    assert tuple(model.denoisers["ue"].config.block_out_channels) == (8, 16)
    wrong = UNet2DConditionModel.from_config({**config, "cross_attention_dim": 16})
    wrong.save_pretrained(tmp_path / "wrong")
    with pytest.raises(MegenError, match="text states"):
        load_stable_diffusion(checkpoint, ue_unet_path=tmp_path / "wrong")
    with pytest.raises(MegenError, match="no UNet at"):
        load_stable_diffusion(checkpoint, ue_unet_path=tmp_path / "missing")


class TestErrors:
    def test_bogus_path(self, tmp_path: Path) -> None:
        with pytest.raises(MegenError, match="no Stable Diffusion checkpoint at") as info:
            load_stable_diffusion(str(tmp_path / "no-such-folder"))
        assert "\n" not in str(info.value)

    def test_unknown_name_through_registry(self) -> None:
        with pytest.raises(MegenError, match="unknown model 'definitely/not-a-model'"):
            load_model("definitely/not-a-model")
        with pytest.raises(MegenError, match="empty model name"):
            load_model("  ")

    def test_folder_without_model_index(self, tmp_path: Path) -> None:
        with pytest.raises(MegenError, match="no model_index.json"):
            load_model(str(tmp_path))

    def test_file_instead_of_folder(self, tmp_path: Path) -> None:
        f = tmp_path / "model.safetensors"
        f.write_bytes(b"\0")
        with pytest.raises(MegenError, match="is a file"):
            load_stable_diffusion(f)

    def test_corrupt_checkpoint(self, checkpoint: Path, tmp_path: Path) -> None:
        broken = shutil.copytree(checkpoint, tmp_path / "broken")
        (broken / "unet" / "config.json").write_text("{not json")
        with pytest.raises(MegenError, match="could not load the UNet") as info:
            load_stable_diffusion(broken)
        assert "\n" not in str(info.value)


def test_registry_routes_tiny_names_and_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Any] = []

    class FakeModel(str):
        def to(self, device: Any, dtype: Any) -> FakeModel:  # load_model places every model on its device
            return self

    def fake_load_tiny(path: Any = None) -> str:
        calls.append(path)
        return FakeModel(f"tiny:{path}")

    monkeypatch.setattr(registry, "load_tiny", fake_load_tiny)
    assert load_model(None) == "tiny:None"
    assert load_model("tiny") == "tiny:None"
    assert registry.model_key(None) == registry.model_key("tiny")  # one model, one session cache entry
    (tmp_path / "megen_tiny.json").write_text(json.dumps({"name": "tiny"}))
    assert load_model(str(tmp_path)) == f"tiny:{tmp_path.resolve()}"
    assert registry.model_key(str(tmp_path / ".." / tmp_path.name)) == registry.model_key(str(tmp_path))
    assert calls == [None, None, str(tmp_path.resolve())]
