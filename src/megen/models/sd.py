"""Stable Diffusion checkpoints (diffusers layout) behind the :class:`~megen.models.ldm.StagedLDM` interface.

A checkpoint is a folder in the diffusers layout (``model_index.json`` plus the sub-folders ``vae/``,
``unet/``, ``text_encoder/``, ``tokenizer/`` and ``scheduler/``), or the id of a Hugging Face Hub
repository that is already in the user's local cache. Nothing is ever downloaded by default.

Conventions (the same as diffusers' ``StableDiffusionPipeline`` and ``StableDiffusionImg2ImgPipeline``, so
that running the stages in order gives exactly the pipelines' images for the same generator):

* The checkpoint's scheduler config is converted to :class:`~diffusers.DDIMScheduler` with
  ``clip_sample = False`` and ``steps_offset = 1`` (the two corrections the diffusers pipelines apply
  themselves). DDIM with ``eta = 0`` keeps no history between steps, so a denoising run split at any
  step, with the latent handed over as a tensor, equals the unsplit run exactly.
* The prompt is tokenised to the tokenizer's ``model_max_length`` and the CLIP text encoder's last hidden
  state ``[B, L, D]`` is the cross-attention condition; classifier-free guidance uses the empty prompt.
* ``image_channels = vae.config.in_channels`` and
  ``image_size = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)``.
* Weights are read in float32 and then moved to the requested device and dtype
  (:meth:`~megen.models.ldm.StagedLDM.to`; the VAE stays float32).

Random-weight Stable Diffusion components for tests and benchmarks live in :mod:`megen.testing`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.utils import is_accelerate_available
from transformers import CLIPTextModel, CLIPTokenizer

from megen.devices import resolve_device, resolve_dtype
from megen.errors import MegenError
from megen.models.ldm import StagedLDM
from megen.models.text import CLIPTextEncoderFn

__all__ = [
    "CheckpointNotFoundError",
    "load_stable_diffusion",
    "resolve_checkpoint",
    "staged_from_components",
]

SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
_FP16_WEIGHTS = re.compile(r"\.fp16[.-]")
# diffusers warns on every load when asked for low-memory loading without ``accelerate``: ask only if present.
_LOW_MEM: dict[str, Any] = {"low_cpu_mem_usage": is_accelerate_available()}


class CheckpointNotFoundError(MegenError):
    """No Stable Diffusion checkpoint at the given path, and no such id in the local Hugging Face cache."""


# ---------------------------------------------------------------------------------------------- loading
def resolve_checkpoint(
    path_or_id: str | Path, *, local_files_only: bool = True, cache_dir: str | Path | None = None
) -> Path | str:
    """Find a diffusers Stable Diffusion checkpoint.

    Args:
        path_or_id: A folder with ``model_index.json``, or a Hub id such as ``"org/name"``.
        local_files_only: Only look in the local Hugging Face cache (the default; nothing downloads).
        cache_dir: Hugging Face cache folder (default: the user's, from ``HF_HOME`` / ``HF_HUB_CACHE``).

    Returns:
        The checkpoint folder, or (only with ``local_files_only=False`` and an uncached id) the Hub id,
        to be fetched by ``from_pretrained``.

    Raises:
        CheckpointNotFoundError: Neither a checkpoint folder nor a cached Hub id.
        MegenError: A folder or file that is not a diffusers checkpoint.
    """
    text = str(path_or_id)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return path
        raise MegenError(
            f"{path} is a folder but not a diffusers Stable Diffusion checkpoint (no model_index.json)"
        )
    if path.exists():
        raise MegenError(
            f"{path} is a file; give a diffusers checkpoint folder (single-file .ckpt/.safetensors is not supported)"
        )
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(text, "model_index.json", cache_dir=cache_dir)
    except ValueError:  # not a valid repo id (huggingface_hub's HFValidationError is a ValueError)
        cached = None
    if isinstance(cached, str):
        return Path(cached).parent
    if not local_files_only and text.count("/") == 1:
        return text
    raise CheckpointNotFoundError(
        f"no Stable Diffusion checkpoint at {text} (not a folder with model_index.json, "
        "and not in the local Hugging Face cache)"
    )


def _variant_of(folder: Path | str, subfolder: str) -> str | None:
    """``"fp16"`` when a local sub-folder holds only fp16-variant weights, else ``None`` (the default files)."""
    sub = Path(folder) / subfolder
    if not sub.is_dir():
        return None
    weights = [f.name for f in sub.iterdir() if f.name.endswith((".safetensors", ".bin"))]
    if weights and all(_FP16_WEIGHTS.search(n) for n in weights):
        return "fp16"
    return None


def _load(what: str, loader: Callable[..., Any], source: Path | str, **kwargs: Any) -> Any:
    """Call ``loader(source, **kwargs)`` and turn any failure into a one-line :class:`MegenError`."""
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MegenError(f"could not load the {what} of the checkpoint {source}: {first}") from exc


def _weights_kwargs(source: Path | str, subfolder: str | None, **common: Any) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for one component: sub-folder, fp16 variant if that is all there is."""
    kwargs: dict[str, Any] = dict(common)
    if subfolder is not None:
        kwargs["subfolder"] = subfolder
    variant = _variant_of(source, subfolder or "") if isinstance(source, Path) else None
    if variant is not None:
        kwargs["variant"] = variant
    return kwargs


def _ddim_from(scheduler_config: dict[str, Any]) -> DDIMScheduler:
    """DDIM with the diffusers pipelines' own corrections: ``clip_sample=False``, ``steps_offset=1``."""
    cfg = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
    cfg["clip_sample"] = False
    cfg["steps_offset"] = 1
    return DDIMScheduler.from_config(cfg)


def _image_size(unet: UNet2DConditionModel, vae: AutoencoderKL) -> int:
    sample = unet.config.sample_size
    if isinstance(sample, list | tuple):
        if len(set(sample)) != 1:
            raise MegenError(f"non-square UNet sample_size {tuple(sample)} is not supported")
        sample = sample[0]
    return int(sample) * 2 ** (len(vae.config.block_out_channels) - 1)


def _check_compatible(
    unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, role: str
) -> None:
    """A UNet must predict the VAE's latent channels from CLIP token states (plain text-to-image SD)."""
    c = int(vae.config.latent_channels)
    cfg = unet.config
    if cfg.in_channels != c or cfg.out_channels != c:
        raise MegenError(
            f"the {role} UNet maps {cfg.in_channels} -> {cfg.out_channels} channels but the VAE latent has {c} "
            "(inpainting and depth checkpoints are not supported)"
        )
    if cfg.cross_attention_dim != text_encoder.config.hidden_size:
        raise MegenError(
            f"the {role} UNet attends to {cfg.cross_attention_dim}-d text states but the text encoder gives "
            f"{text_encoder.config.hidden_size}-d"
        )
    if (
        getattr(cfg, "addition_embed_type", None) is not None
        or getattr(cfg, "class_embed_type", None) is not None
    ):
        raise MegenError(
            f"the {role} UNet needs extra conditions (SDXL-style or class embeddings), which this backend does not give"
        )


def staged_from_components(
    components: dict[str, Any],
    *,
    name: str = "stable-diffusion",
    ue_unet: UNet2DConditionModel | None = None,
    sketch_factor: int | None = None,
) -> StagedLDM:
    """Wrap in-memory Stable Diffusion components as a :class:`StagedLDM`.

    Args:
        components: At least ``vae``, ``unet``, ``text_encoder``, ``tokenizer`` and ``scheduler`` (the keys
            of a ``StableDiffusionPipeline``); any scheduler is converted to DDIM.
        name: Model name for reports.
        ue_unet: A separate (smaller) UE denoiser; by default the UE uses the same UNet as the ES.
        sketch_factor: Downsampling of the sketch stage ``K``; default the VAE's factor (a sketch then has the
            latent's spatial size, ``3 x H/8 x W/8`` for Stable Diffusion).

    Returns:
        The staged model, denoisers ``{"es": unet, "ue": ue_unet or unet}``.
    """
    missing = [k for k in SUBFOLDERS if components.get(k) is None]
    if missing:
        raise MegenError(f"Stable Diffusion components missing: {', '.join(missing)}")
    vae: AutoencoderKL = components["vae"]
    unet: UNet2DConditionModel = components["unet"]
    text_encoder: CLIPTextModel = components["text_encoder"].eval()
    for p in text_encoder.parameters():
        p.requires_grad_(False)
    _check_compatible(unet, vae, text_encoder, "ES")
    if ue_unet is not None:
        _check_compatible(ue_unet, vae, text_encoder, "UE")
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return StagedLDM(
        vae,
        {"es": unet, "ue": ue_unet if ue_unet is not None else unet},
        CLIPTextEncoderFn(components["tokenizer"], text_encoder),
        _ddim_from(components["scheduler"].config),
        name=name,
        image_channels=int(vae.config.in_channels),
        image_size=_image_size(unet, vae),
        use_pooled=False,
        sketch_factor=sketch_factor if sketch_factor is not None else vae_factor,
    )


def _load_ue_unet(folder: Path) -> UNet2DConditionModel:
    """A separate UE UNet from a UNet folder (``config.json``) or a checkpoint folder (``unet/``), float32."""
    sub = None if (folder / "config.json").is_file() else "unet"
    if not (folder / (sub or "") / "config.json").is_file():
        raise MegenError(f"no UNet at {folder} (expected config.json or unet/config.json)")
    return _load(
        "UE UNet",
        UNet2DConditionModel.from_pretrained,
        folder,
        **_weights_kwargs(folder, sub, torch_dtype=torch.float32, local_files_only=True, **_LOW_MEM),
    )


def load_stable_diffusion(
    path_or_id: str | Path,
    *,
    local_files_only: bool = True,
    ue_unet_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    sketch_factor: int | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
) -> StagedLDM:
    """Load a diffusers Stable Diffusion checkpoint as a :class:`StagedLDM` on a device.

    Args:
        path_or_id: A checkpoint folder (diffusers layout) or a Hub id already in the local cache.
        local_files_only: Never download (the default). ``False`` lets ``from_pretrained`` fetch an
            uncached Hub id; megen's own commands never do.
        ue_unet_path: Folder of a separate, smaller UE UNet (a UNet folder with ``config.json``, or a
            checkpoint folder with ``unet/``); default: the UE uses the ES UNet.
        cache_dir: Hugging Face cache folder (default: the user's).
        sketch_factor: Sketch downsampling factor (default: the VAE's factor).
        device: Device spec (:func:`megen.devices.resolve_device`), default the CPU.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"`` (accelerators only) for the UNets
            and the text encoder; the VAE stays float32.

    Returns:
        The staged model with denoisers ``"es"`` and ``"ue"``.

    Raises:
        MegenError: One line saying what is missing or wrong (never a traceback for a bad path).

    Example:
        >>> model = load_stable_diffusion("runwayml/stable-diffusion-v1-5")  # doctest: +SKIP
        >>> model.image_shape  # doctest: +SKIP
        (3, 512, 512)
    """
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    source = resolve_checkpoint(path_or_id, local_files_only=local_files_only, cache_dir=cache_dir)
    common: dict[str, Any] = {"local_files_only": local_files_only}
    if cache_dir is not None and isinstance(source, str):
        common["cache_dir"] = str(cache_dir)

    vae = _load(
        "VAE",
        AutoencoderKL.from_pretrained,
        source,
        **_weights_kwargs(source, "vae", torch_dtype=torch.float32, **_LOW_MEM, **common),
    )
    unet = _load(
        "UNet",
        UNet2DConditionModel.from_pretrained,
        source,
        **_weights_kwargs(source, "unet", torch_dtype=torch.float32, **_LOW_MEM, **common),
    )
    text_encoder = _load(
        "text encoder",
        CLIPTextModel.from_pretrained,
        source,
        **_weights_kwargs(source, "text_encoder", dtype=torch.float32, **common),
    )
    tokenizer = _load("tokenizer", CLIPTokenizer.from_pretrained, source, subfolder="tokenizer", **common)
    sched_cfg = _load("scheduler config", DDIMScheduler.load_config, source, subfolder="scheduler", **common)
    ue_unet = _load_ue_unet(Path(ue_unet_path).expanduser()) if ue_unet_path is not None else None
    components = {
        "vae": vae,
        "unet": unet,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": _ddim_from(sched_cfg),
    }
    local = isinstance(source, Path) and Path(str(path_or_id)).expanduser().is_dir()
    name = Path(source).name if local else str(path_or_id)  # a Hub id names itself, not its snapshot hash
    staged = staged_from_components(components, name=name, ue_unet=ue_unet, sketch_factor=sketch_factor)
    return staged.to(dev, torch_dtype)
