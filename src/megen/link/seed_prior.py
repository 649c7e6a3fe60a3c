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
    return _klt(mean, torch.cov((flat - mean).T), tuple(latents.shape[1:]))


def _klt(mean: torch.Tensor, cov: torch.Tensor, shape: tuple[int, ...]) -> SeedPrior:
    """The prior with mean ``mean`` and symmetric covariance ``cov``: its eigenvectors, strongest first."""
    eigvals, basis = torch.linalg.eigh(cov)
    order = torch.argsort(eigvals, descending=True)
    return SeedPrior(mean, basis[:, order].contiguous(), eigvals[order].clamp_min(0.0), shape)


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


def stored_shape(model: str) -> tuple[int, ...]:
    """The latent shape ``(C, H, W)`` the seed-codec weights of ``model`` were fitted to."""
    return tuple(int(v) for v in load_seed_weights(model)["shape"].tolist())


def load_prior(model: str, shape: tuple[int, ...], cols: tuple[int, int] | None = None) -> SeedPrior:
    """The KLT prior of ``model`` for a seed of ``shape`` ``(C, H, W)``: the whole latent or a tile.

    A *tile* (the multi-ES protocols' seeds, :mod:`megen.protocols.tiles`) has the latent's ``C`` and
    ``H`` and fewer columns; its prior is the whole latent's restricted to the tile's columns
    ``cols = (lo, hi)`` (:func:`tile_prior`; ``None``: averaged over every position of a tile of
    that width). Cached per model, weights version, shape and columns.

    Raises:
        MegenError: weights for another latent shape, or columns that do not fit the shape.
    """
    stored, shape = stored_shape(model), tuple(int(v) for v in shape)
    whole = cols is None or tuple(cols) == (0, stored[-1])
    if shape == stored and whole:
        return prior_from_tensors(load_seed_weights(model))
    if not is_tile_shape(shape, stored):
        raise MegenError(
            f"the seed-codec weights of model {model!r} are for latents {stored}, not {shape} "
            f"(nor a tile of them); train them for this model with `megen train --parts seed-codec`"
        )
    if cols is not None:
        lo, hi = int(cols[0]), int(cols[1])
        if hi - lo != shape[2] or lo < 0 or hi > stored[2]:
            raise MegenError(
                f"tile columns {lo}..{hi} do not fit a seed of shape {shape} in latents {stored}"
            )
        cols = (lo, hi)
    path = weights_path(model)
    return _tile_prior_cached(model, path.stat().st_mtime, shape[2], cols)


@lru_cache(maxsize=32)
def _tile_prior_cached(model: str, mtime: float, width: int, cols: tuple[int, int] | None) -> SeedPrior:
    return tile_prior(load_prior(model, stored_shape(model)), width, cols)


def window_indices(shape: tuple[int, ...], lo: int, hi: int) -> torch.Tensor:
    """Flat indices (``C*H*W`` order) of the columns ``lo..hi-1`` of a latent of ``shape`` ``(C, H, W)``."""
    idx = torch.arange(math.prod(shape)).reshape(shape)
    return idx[..., lo:hi].reshape(-1)


def tile_prior(prior: SeedPrior, width: int, cols: tuple[int, int] | None = None) -> SeedPrior:
    """The KLT prior of a tile of ``width`` columns of latents with prior ``prior``.

    The whole latent's covariance ``U diag(lam) U^T`` (full rank as stored) restricted to the tile's
    entries is the tile's covariance, and its mean the restricted mean: exact for a known position
    ``cols = (lo, hi)``. For ``cols = None`` the tile's position is unknown: the prior is the mixture
    over every position ``0..W - width`` with equal weights (mean of the means; covariance the mean of
    the second moments minus the mean's outer product).

    Args:
        prior: The whole latent's prior, shape ``(C, H, W)``.
        width: Columns of the tile, ``1..W``.
        cols: Its columns ``(lo, lo + width)``, or ``None``.

    Returns:
        :class:`SeedPrior` of shape ``(C, H, width)`` (float64, eigenvalues descending).
    """
    c, h, w = prior.shape
    cov = (prior.basis * prior.eigvals.clamp_min(0.0)) @ prior.basis.T
    starts = [cols[0]] if cols is not None else list(range(w - width + 1))
    mean = torch.zeros(c * h * width, dtype=torch.float64)
    second = torch.zeros(c * h * width, c * h * width, dtype=torch.float64)
    for lo in starts:
        idx = window_indices(prior.shape, lo, lo + width)
        m = prior.mean.double()[idx]
        mean += m / len(starts)
        second += (cov[idx][:, idx] + torch.outer(m, m)) / len(starts)
    sub = second - torch.outer(mean, mean)
    return _klt(mean, (sub + sub.T) / 2, (c, h, width))


def is_tile_shape(shape: tuple[int, ...], stored: tuple[int, ...]) -> bool:
    """Whether a seed of ``shape`` is a tile of latents of ``stored`` ``(C, H, W)``: same ``C, H``, fewer columns."""
    return len(shape) == 3 and tuple(shape[:2]) == tuple(stored[:2]) and 0 < shape[2] < stored[2]


def prior_from_tensors(tensors: dict[str, torch.Tensor]) -> SeedPrior:
    """The prior stored in ``tensors`` (:func:`prior_tensors`' inverse; values in float64)."""
    shape = tuple(int(v) for v in tensors["shape"].tolist())
    return SeedPrior(tensors["mean"].double(), tensors["basis"].double(), tensors["eigvals"].double(), shape)


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
