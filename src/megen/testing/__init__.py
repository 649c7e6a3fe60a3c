"""Test fixtures shipped with megen: small seeded models that need no training and no downloads.

They live here, not in :mod:`megen.models`, so that the library proper holds only what users run.
Tests, benchmarks and downstream projects import them from ``megen.testing``:

* :func:`build_random_tiny`: the tiny model's architecture with random weights (plumbing tests);
* :func:`build_tiny_sd_components` / :func:`save_tiny_sd_checkpoint`: a toy Stable Diffusion;
* :func:`build_sd15_components` / :func:`save_sd_checkpoint`: the real SD v1.5 architecture, random
  weights (benchmarks on an accelerator);
* :func:`write_tiny_clip_vocab`: a small CLIP BPE vocabulary.
"""

from megen.models.tiny import build_random_tiny
from megen.testing.sd import (
    SD15_CONFIGS,
    TINY_SD_CONFIGS,
    TINY_WORDS,
    build_sd15_components,
    build_tiny_sd_components,
    save_sd_checkpoint,
    save_tiny_sd_checkpoint,
    write_tiny_clip_vocab,
)

__all__ = [
    "SD15_CONFIGS",
    "TINY_SD_CONFIGS",
    "TINY_WORDS",
    "build_random_tiny",
    "build_sd15_components",
    "build_tiny_sd_components",
    "save_sd_checkpoint",
    "save_tiny_sd_checkpoint",
    "write_tiny_clip_vocab",
]
