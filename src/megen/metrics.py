"""Image quality metrics, all offline: quality against the error-free run and against the reference.

* Per image: PSNR (dB), SSIM, MS-SSIM from torchmetrics, on images in ``[0, 1]`` (data range 1).
  MS-SSIM needs images larger than ``(kernel - 1) * 2**(scales - 1)``; for small images (the tiny
  model's 32x32) it uses a 3x3 Gaussian window and 3 scales with the first three standard weights
  renormalised, and says so in :data:`MS_SSIM_NOTE`.
* Prompt accuracy: the evaluation classifier's agreement with the prompt's class.
* FID on the evaluation classifier's 128-d features (torchmetrics ``FrechetInceptionDistance`` with a
  custom feature network), with the sample count recorded; refused below 100 samples.
* LPIPS, Inception-FID and CLIP score need pretrained weights that cannot be fetched offline:
  :func:`optional_metrics_status` says which are available.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from megen.errors import MegenError

MS_SSIM_NOTE = (
    "MS-SSIM on images < 161 px: 3x3 Gaussian window, 3 scales, weights (0.0448, 0.2856, 0.3001) renormalised"
)
_MS_BETAS_SMALL = tuple(b / (0.0448 + 0.2856 + 0.3001) for b in (0.0448, 0.2856, 0.3001))

FID_MIN_SAMPLES = 100
FID_WARN_SAMPLES = 1000


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise MegenError(
            f"metric inputs must both be [B, C, H, W] of equal shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if not (torch.isfinite(pred).all() and torch.isfinite(target).all()):
        raise MegenError("metric inputs contain NaN or infinite values")


def psnr_db(pred: torch.Tensor, target: torch.Tensor, *, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB for images in ``[0, 1]``, ``[B]``; identical images give ``max_db``."""
    _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    out = 10.0 * torch.log10(1.0 / mse.clamp(min=1e-30))
    return out.clamp(max=max_db).float()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11 or the image side if smaller, data range 1), ``[B]``."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(pred, target)
    k = 11 if min(pred.shape[-2:]) >= 11 else 7
    vals = structural_similarity_index_measure(pred, target, data_range=1.0, kernel_size=k, reduction="none")
    return torch.as_tensor(vals).reshape(-1).float()


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM (see :data:`MS_SSIM_NOTE` for small images), ``[B]``."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim

    _check_pair(pred, target)
    side = min(pred.shape[-2:])
    if side > 160:
        vals = msssim(pred, target, data_range=1.0, reduction="none")
    else:
        vals = msssim(pred, target, data_range=1.0, kernel_size=3, betas=_MS_BETAS_SMALL, reduction="none")
    vals = torch.as_tensor(vals).reshape(-1).float()
    return torch.nan_to_num(vals, nan=0.0)


@dataclass(frozen=True)
class PairQuality:
    """Per-image quality of ``pred`` against one target: tensors of shape ``[B]``."""

    psnr_db: torch.Tensor
    ssim: torch.Tensor
    ms_ssim: torch.Tensor


def pair_quality(pred: torch.Tensor, target: torch.Tensor) -> PairQuality:
    return PairQuality(psnr_db(pred, target), ssim(pred, target), ms_ssim(pred, target))


def prompt_accuracy(predicted: torch.Tensor, wanted: Sequence[int | None]) -> torch.Tensor:
    """1.0 where the classifier's class equals the prompt's class, NaN where the prompt names none."""
    out = torch.full((len(wanted),), float("nan"))
    for i, w in enumerate(wanted):
        if w is not None:
            out[i] = float(int(predicted[i]) == int(w))
    return out


class ClassifierFeatures(nn.Module):
    """Wraps the evaluation classifier as a torchmetrics FID feature network (128-d)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = int(getattr(classifier, "feature_dim", 128))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats: torch.Tensor = self.classifier.features(images.float())  # type: ignore[operator]
        return feats.double()


def classifier_fid(
    classifier: nn.Module,
    generated: torch.Tensor,
    reference: torch.Tensor,
    *,
    batch: int = 500,
) -> float:
    """FID between two image sets on the classifier's features (images ``[N, 1, H, W]`` in ``[0, 1]``).

    Raises:
        MegenError: fewer than 100 generated samples (an FID of a handful of images is meaningless).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    n = int(generated.shape[0])
    if n < FID_MIN_SAMPLES:
        raise MegenError(f"FID needs at least {FID_MIN_SAMPLES} samples, got {n}")
    if n < FID_WARN_SAMPLES:
        warnings.warn(f"FID on only {n} samples (< {FID_WARN_SAMPLES}) is biased upwards", stacklevel=2)
    fid = FrechetInceptionDistance(feature=ClassifierFeatures(classifier), normalize=True)
    for i in range(0, len(reference), batch):
        fid.update(reference[i : i + batch], real=True)
    for i in range(0, n, batch):
        fid.update(generated[i : i + batch], real=False)
    return float(fid.compute())


def mean_ci95(values: Sequence[float] | torch.Tensor) -> tuple[float, float, int]:
    """Mean and half-width of a normal 95% confidence interval (NaNs ignored): ``(mean, half, n)``."""
    t = torch.as_tensor(values, dtype=torch.float64)
    t = t[torch.isfinite(t)]
    n = int(t.numel())
    if n == 0:
        return (math.nan, math.nan, 0)
    mean = float(t.mean())
    if n == 1:
        return (mean, math.nan, 1)
    return (mean, 1.96 * float(t.std(unbiased=True)) / math.sqrt(n), n)


def optional_metrics_status() -> dict[str, str]:
    """Which weight-hungry metrics run here: ``"available"`` or a one-line reason each.

    * ``clip_score`` runs when a CLIP model loads offline (:mod:`megen.clip_score`);
    * ``lpips`` is not supported: torchmetrics' LPIPS needs torchvision, which megen does not depend on;
    * ``inception_fid`` is not supported: its Inception weights are downloaded at first use; megen
      reports FID on the tiny model's classifier features instead.
    """
    from megen.clip_score import clip_status

    return {
        "clip_score": clip_status(),
        "lpips": "not supported: torchmetrics' LPIPS needs torchvision, which megen does not depend on",
        "inception_fid": "not supported offline: its Inception weights are downloaded at first use "
        "(megen reports FID on the classifier's features)",
    }
