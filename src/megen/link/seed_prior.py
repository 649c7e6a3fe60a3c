"""The statistics of seeds (latents) that the seed codecs share: a KLT prior with a noise level.

A seed sent by a protocol is a diffusion state ``z = sqrt(a) x0 + sqrt(1 - a) eps`` (``a = 1`` for a
clean latent, ``a = 0`` for the initial noise ``Z``), with ``x0`` a clean latent of the model's VAE
(scaled latent units). The prior learned from training latents is the mean ``mu`` and covariance
``U diag(lam) U^T`` of ``x0`` (``U`` orthonormal, ``lam`` descending: the KLT). Because the
covariance of ``z`` is ``a U diag(lam) U^T + (1 - a) I``, the same basis ``U`` decorrelates every
diffusion state, with component variances ``a lam + 1 - a`` and means ``sqrt(a) U^T mu``.

The transmitter estimates ``a`` of each item from the energy of its weakest KLT components (where
the clean latents have almost none) and sends it as 32 bits of side information.

Weights live in ``seed_codec.safetensors`` in the model folder (the tiny model ships one); keys
``mean`` ``[n]``, ``basis`` ``[n, n]`` (columns are components), ``eigvals`` ``[n]``, ``shape``
``[3]`` (the latent's ``C, H, W``) and, for the learned codec, ``decoder.*``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import torch

from megen.errors import MegenError
from megen.models.fingerprint import SEED_CODEC_FILE as WEIGHTS_FILE

#: Fraction of the weakest components used to estimate the noise level ``1 - a`` of a seed.
TAIL_FRACTION = 0.5


@dataclass(frozen=True)
class SeedPrior:
    """KLT prior of clean latents.

    Attributes:
        mean: ``[n]`` float64, mean clean latent (flattened ``C*H*W``).
        basis: ``[n, n]`` float64, orthonormal, column ``i`` is component ``i``.
        eigvals: ``[n]`` float64, descending component variances (latent units squared).
        shape: The latent's ``(C, H, W)``.
    """

    mean: torch.Tensor
    basis: torch.Tensor
    eigvals: torch.Tensor
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        """Values per latent ``n``."""
        return int(self.mean.numel())

    @cached_property
    def mean_coefficients(self) -> torch.Tensor:
        """``U^T mu`` ``[n]`` float64."""
        return self.mean.double() @ self.basis

    def coefficients(self, flat: torch.Tensor) -> torch.Tensor:
        """KLT coefficients ``U^T z`` of flattened seeds ``[B, n]`` (no centring), float64."""
        return flat.double() @ self.basis

    def latents(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`coefficients`: ``U c``, ``[B, n]`` float64."""
        return coeffs @ self.basis.T

    def moments(self, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance ``[B, n]`` of the KLT coefficients of seeds with signal level ``alpha [B]``."""
        a = alpha.double().clamp(0.0, 1.0).unsqueeze(1)
        mean_c = a.sqrt() * self.mean_coefficients.unsqueeze(0)
        var_c = a * self.eigvals.double().clamp_min(0.0).unsqueeze(0) + (1.0 - a)
        return mean_c, var_c.clamp_min(1e-12)

    def signal_level(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Estimate ``a`` ``[B]`` of seeds from their coefficients ``[B, n]`` (float32-exact values).

        ``E[c_i^2] = a (lam_i + m_i^2) + (1 - a)`` on the weakest components ``T``; solved for ``a``
        from their mean square, clipped to ``[0, 1]`` and rounded to float32 (it is side information).
        """
        n = self.numel
        tail = slice(n - max(1, int(n * TAIL_FRACTION)), n)
        m = self.mean_coefficients
        tau = float((self.eigvals[tail].double() + m[tail].square()).mean())
        raw = coeffs[:, tail].square().mean(dim=1)
        noise = ((raw - tau) / max(1.0 - tau, 1e-6)).clamp(0.0, 1.0)
        return (1.0 - noise).float().double()


def prior_from_latents(latents: torch.Tensor) -> SeedPrior:
    """Fit the KLT prior to clean latents ``[N, C, H, W]`` (scaled latent units)."""
    if latents.dim() != 4 or latents.shape[0] < 2:
        raise MegenError(f"need a batch of latents [N, C, H, W], got shape {tuple(latents.shape)}")
    flat = latents.reshape(latents.shape[0], -1).double()
    mean = flat.mean(dim=0)
    cov = torch.cov((flat - mean).T)
    eigvals, basis = torch.linalg.eigh(cov)
    order = torch.argsort(eigvals, descending=True)
    return SeedPrior(
        mean, basis[:, order].contiguous(), eigvals[order].clamp_min(0.0), tuple(latents.shape[1:])
    )


def weights_path(model: str) -> Path:
    """Where the seed-codec weights of ``model`` live (``tiny``, ``tiny-random``: the packaged tiny's)."""
    from megen.models.fingerprint import RANDOM_MODEL
    from megen.models.tiny import packaged_weights_dir

    if model in ("tiny", RANDOM_MODEL):
        return packaged_weights_dir() / WEIGHTS_FILE
    folder = Path(model)
    if folder.is_dir():
        return folder / WEIGHTS_FILE
    raise MegenError(
        f"no seed-codec weights for model {model!r}: train them with `megen train --parts seed-codec` "
        "into a model folder (see docs/seed_codecs.md)"
    )


@lru_cache(maxsize=8)
def _load(path: Path, mtime: float) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (OSError, ValueError, RuntimeError) as exc:
        raise MegenError(f"corrupt seed-codec weights {path}: {exc}") from None


def load_seed_weights(model: str) -> dict[str, torch.Tensor]:
    """The tensors of the seed-codec weights of ``model`` (cached per file version)."""
    path = weights_path(model)
    if not path.exists():
        raise MegenError(
            f"no seed-codec weights for model {model!r} ({path} is missing); "
            "run `megen train --parts seed-codec`"
        )
    return _load(path, path.stat().st_mtime)


def load_prior(model: str, shape: tuple[int, ...]) -> SeedPrior:
    """The KLT prior of ``model``, checked against the seed's shape ``(C, H, W)``."""
    tensors = load_seed_weights(model)
    stored = tuple(int(v) for v in tensors["shape"].tolist())
    if stored != tuple(shape):
        raise MegenError(
            f"the seed-codec weights of model {model!r} are for latents {stored}, not {tuple(shape)}; "
            "train them for this model with `megen train --parts seed-codec`"
        )
    return SeedPrior(tensors["mean"].double(), tensors["basis"].double(), tensors["eigvals"].double(), stored)


def prior_tensors(prior: SeedPrior) -> dict[str, torch.Tensor]:
    """The tensors that store ``prior`` (float32, plus its shape)."""
    return {
        "mean": prior.mean.float().contiguous(),
        "basis": prior.basis.float().contiguous(),
        "eigvals": prior.eigvals.float().contiguous(),
        "shape": torch.tensor(prior.shape, dtype=torch.int64),
    }


def raw_uses(numel: int) -> int:
    """Channel uses of a raw seed of ``numel`` values: ``ceil(numel / 2)`` (two reals per use)."""
    return math.ceil(numel / 2)
