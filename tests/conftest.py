"""Shared fixtures: small seeded models that need no training and no downloads."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where a CUDA GPU is present; elsewhere they are skipped."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def random_tiny():
    """The tiny model's architecture with random weights (plumbing tests)."""
    from megen.testing import build_random_tiny

    return build_random_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny():
    """The embedded tiny model with its shipped weights."""
    from megen.models.tiny import load_tiny

    return load_tiny()


@pytest.fixture(scope="session")
def tiny_reference_png(tmp_path_factory):
    """A shipped reference image written as an RGB PNG of another size (the CLI converts it)."""

    from megen.images import to_pil
    from megen.models.tiny import load_reference_images

    images, _ = load_reference_images()
    path = tmp_path_factory.mktemp("ref") / "dress.png"
    to_pil(images[30]).convert("RGB").resize((64, 48)).save(path)
    return path
