"""`megen train` end to end in seconds: a few steps of every part on a small subset."""

from __future__ import annotations

import pytest
import torch

from megen.data import dataset_available
from megen.models.tiny import load_reference_images, load_tiny
from megen.training.train import TrainConfig, train_tiny

pytestmark = pytest.mark.skipif(not dataset_available(), reason="needs apt package dataset-fashion-mnist")


def test_train_smoke_builds_a_loadable_model(tmp_path):
    cfg = TrainConfig(
        classifier_steps=2, vae_steps=2, es_steps=2, ue_steps=2, batch_size=16, vae_batch_size=16,
        denoiser_batch_size=16, subset=256, threads=1,
    )  # fmt: skip
    report = train_tiny(tmp_path, cfg, log=lambda s: None)
    assert report.steps == {"classifier": 2, "vae": 2, "unet_es": 2, "unet_ue": 2}
    assert report.scaling_factor > 0
    model = load_tiny(tmp_path)
    _, img = model.generate(["a photo of a bag"], num_steps=2, seed=0)
    assert img.shape == (1, 1, 32, 32) and torch.isfinite(img).all()
    ref, labels = load_reference_images(tmp_path)
    assert ref.shape == (100, 1, 32, 32) and torch.bincount(labels).tolist() == [10] * 10


def test_training_is_seeded(tmp_path):
    cfg = TrainConfig(
        classifier_steps=0, vae_steps=3, es_steps=0, ue_steps=0, vae_batch_size=8, subset=64, threads=1,
        parts=("vae",),
    )  # fmt: skip
    a = train_tiny(tmp_path / "a", cfg, log=lambda s: None)
    b = train_tiny(tmp_path / "b", cfg, log=lambda s: None)
    assert a.scaling_factor == b.scaling_factor
