"""Classifier-feature FID of a sweep's images against the Fashion-MNIST test set."""

from __future__ import annotations

import torch

from megen.errors import MegenError
from megen.metrics import FID_MIN_SAMPLES


class FidScorer:
    """Classifier-feature FID against a fixed reference set, whose features are computed once.

    Same statistic as :func:`megen.metrics.classifier_fid` (torchmetrics FID on the evaluation
    classifier's features), but the reference statistics are kept across calls.

    Args:
        classifier: The evaluation classifier (with ``features``).
        reference: Reference images ``[N, C, H, W]`` in ``[0, 1]`` (the Fashion-MNIST test set).
    """

    def __init__(self, classifier: torch.nn.Module, reference: torch.Tensor, *, batch: int = 500) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        from megen.metrics import ClassifierFeatures

        self.batch = batch
        self.fid = FrechetInceptionDistance(
            feature=ClassifierFeatures(classifier), normalize=True, reset_real_features=False
        )
        with torch.no_grad():
            for i in range(0, len(reference), batch):
                self.fid.update(reference[i : i + batch], real=True)
        self.reference_n = int(len(reference))

    def __call__(self, generated: torch.Tensor) -> float:
        """FID of ``generated`` ``[N, C, H, W]`` against the reference.

        Raises:
            MegenError: fewer than 100 samples.
        """
        n = int(generated.shape[0])
        if n < FID_MIN_SAMPLES:
            raise MegenError(f"FID needs at least {FID_MIN_SAMPLES} samples, got {n}")
        self.fid.reset()
        with torch.no_grad():
            for i in range(0, n, self.batch):
                self.fid.update(generated[i : i + self.batch], real=False)
            return float(self.fid.compute())


def make_fid_scorer(model_name: str) -> tuple[FidScorer | None, str]:
    """A scorer for a sweep's model, or ``None`` and the reason (no classifier, no dataset)."""
    from megen.data import dataset_available, load_fashion_mnist
    from megen.experiments.sweep import load_sweep_model

    if not dataset_available():
        return (
            None,
            "FID skipped: the Fashion-MNIST test set is not installed (apt-get install dataset-fashion-mnist)",
        )
    model = load_sweep_model(model_name)
    if getattr(model, "classifier", None) is None:
        return None, f"FID skipped: model {model_name!r} has no evaluation classifier"
    images, _ = load_fashion_mnist("test")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        return (
            None,
            f"FID skipped: the classifier expects {model.image_shape}, the test set is {tuple(images.shape[1:])}",
        )
    return FidScorer(
        model.classifier, images
    ), "FID on the evaluation classifier's features vs the Fashion-MNIST test set"
