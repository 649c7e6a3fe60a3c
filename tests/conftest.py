"""Shared fixtures: small seeded models that need no training and no downloads."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def random_tiny():
    """The tiny model's architecture with random weights (plumbing tests)."""
    from megen.models.tiny import build_random_tiny

    return build_random_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny():
    """The embedded tiny model with its shipped weights."""
    from megen.models.tiny import load_tiny

    return load_tiny()
