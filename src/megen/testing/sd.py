"""Stable Diffusion test fixtures: random-weight components with the SD architecture, no downloads.

* :func:`build_tiny_sd_components`: toy sizes (32x32 RGB images, 4x8x8 latents) for fast offline tests.
* :func:`build_sd15_components`: the real Stable Diffusion v1.5 architecture (512x512 images, 4x64x64
  latents, an 860M-parameter UNet, the ViT-L/14 CLIP text tower) with random weights, built from config
  dicts, for throughput benchmarks on an accelerator.
* :func:`save_sd_checkpoint`: write components as a diffusers checkpoint folder that megen's loader and
  diffusers' ``StableDiffusionPipeline.from_pretrained`` both read.

The tokenizer is a small byte-level CLIP BPE vocabulary (:func:`write_tiny_clip_vocab`): every string
tokenises, 77 tokens per prompt as in Stable Diffusion.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from megen.models.tiny import SCHEDULER_CONFIG
from megen.models.tiny import VAE_CONFIG as TINY_VAE_CONFIG

__all__ = [
    "SD15_CONFIGS",
    "TINY_SD_CONFIGS",
    "TINY_WORDS",
    "build_sd15_components",
    "build_tiny_sd_components",
    "save_sd_checkpoint",
    "save_tiny_sd_checkpoint",
    "write_tiny_clip_vocab",
]

TINY_WORDS = ("photo", "of", "the", "cat", "dog", "sneaker", "painting", "red", "blue", "house")


def _bytes_to_unicode() -> list[str]:
    """The 256 printable characters that byte-level BPE (GPT-2, CLIP) uses for the bytes 0..255."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tiny_clip_vocab(folder: Path | str, words: tuple[str, ...] = TINY_WORDS) -> tuple[Path, Path]:
    """Write a small CLIP BPE vocabulary (``vocab.json``, ``merges.txt``) to ``folder``.

    The vocabulary holds the two special tokens, every byte symbol with and without the end-of-word mark
    ``</w>``, and the merges that spell each of ``words`` as one token (so every string tokenises, and the
    listed words to single tokens as in a real CLIP vocabulary).

    Returns:
        The paths ``(vocab.json, merges.txt)``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]:
        vocab[token] = len(vocab)
    merges: list[str] = []
    for word in words:
        current = word[0]
        for i, ch in enumerate(word[1:]):
            nxt = ch + ("</w>" if i == len(word) - 2 else "")
            merge = f"{current} {nxt}"
            current += nxt
            if current not in vocab:
                merges.append(merge)
                vocab[current] = len(vocab)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


# Every fixture uses the Stable Diffusion schedule of the tiny model (megen.models.tiny.SCHEDULER_CONFIG).
# The tiny model's VAE (megen.models.tiny) for RGB images, narrower.
TINY_SD_CONFIGS: dict[str, dict[str, Any]] = {
    "vae": {
        **TINY_VAE_CONFIG,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (8, 16, 16),
        "norm_num_groups": 4,
    },
    "text_encoder": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
    "unet": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ),
}
"""Toy Stable Diffusion: 32x32 RGB images, VAE factor 4, 4x8x8 latents, 32-d 2-layer CLIP text tower."""

SD15_CONFIGS: dict[str, dict[str, Any]] = {
    "vae": {
        **TINY_SD_CONFIGS["vae"],
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    },
    "text_encoder": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        hidden_act="quick_gelu",
        projection_dim=768,
    ),
    "unet": dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
}
"""Stable Diffusion v1.5 (``runwayml/stable-diffusion-v1-5``): 512x512 images, 4x64x64 latents, 860M UNet."""


def _tiny_tokenizer() -> CLIPTokenizer:
    with tempfile.TemporaryDirectory(prefix="megen-tiny-clip-") as tmp:
        write_tiny_clip_vocab(tmp)
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=77)


def _build_components(
    configs: dict[str, dict[str, Any]], seed: int, vocab_size: int | None
) -> dict[str, Any]:
    """Random-weight SD components from config dicts (global torch RNG left as it was)."""
    tokenizer = _tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**configs["vae"])
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocab_size if vocab_size is not None else len(tokenizer),
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **configs["text_encoder"],
            )
        )
        unet = UNet2DConditionModel(**configs["unet"])
    return {
        "vae": vae.eval(),
        "unet": unet.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


def build_tiny_sd_components(seed: int = 0) -> dict[str, Any]:
    """Tiny random-weight components with the Stable Diffusion architecture (for offline tests).

    32x32 RGB images, a 3-level ``AutoencoderKL`` (factor 4, latent ``4 x 8 x 8``), a 2-level
    ``UNet2DConditionModel`` with cross-attention on a 2-layer, 32-d ``CLIPTextModel``, a ``CLIPTokenizer``
    built from a small BPE vocabulary (written to a temporary folder, 77 tokens per prompt), and the
    Stable Diffusion DDIM schedule (:data:`TINY_SD_CONFIGS`). The same ``seed`` gives the same weights;
    the global torch RNG is left as it was.

    Args:
        seed: Seed of the weight initialisation.

    Returns:
        ``{"vae", "unet", "text_encoder", "tokenizer", "scheduler"}``, ready for
        ``StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)`` or :func:`megen.models.sd.staged_from_components`.
    """
    return _build_components(TINY_SD_CONFIGS, seed, vocab_size=None)


def build_sd15_components(seed: int = 0) -> dict[str, Any]:
    """Random-weight components with the real Stable Diffusion v1.5 architecture (:data:`SD15_CONFIGS`).

    Real sizes (about 1.07 billion parameters, 4.3 GB in float32), so building takes tens of seconds on
    the CPU; meant for throughput benchmarks, not for tests. The text encoder has CLIP ViT-L/14's
    49408-token embedding table; the tokenizer is the small test vocabulary (ids stay in range).

    Args:
        seed: Seed of the weight initialisation.

    Returns:
        The five components, as :func:`build_tiny_sd_components`.
    """
    return _build_components(SD15_CONFIGS, seed, vocab_size=49408)


def save_sd_checkpoint(folder: Path | str, components: dict[str, Any]) -> Path:
    """Write Stable Diffusion components as a diffusers checkpoint folder (safetensors weights).

    The folder (``model_index.json``, ``vae/``, ``unet/``, ``text_encoder/``, ``tokenizer/``,
    ``scheduler/``) loads offline with :func:`megen.models.registry.load_model` or diffusers'
    ``StableDiffusionPipeline.from_pretrained``.

    Returns:
        The folder.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    pipe = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_sd_checkpoint(folder: Path | str, seed: int = 0) -> Path:
    """Write the components of :func:`build_tiny_sd_components` as a checkpoint folder (:func:`save_sd_checkpoint`)."""
    return save_sd_checkpoint(folder, build_tiny_sd_components(seed))
