"""Closed-form link performance, for tests and plots (``snr_db`` is Es/N0 per complex symbol).

Bit error rates of uncoded modulations, and capacities: :func:`capacity_awgn`, :func:`ergodic_capacity`
(fading with CSI at the receiver) and :func:`capacity_channel_uses`, the fewest channel uses any digital
scheme needs for a payload (the bound the results report draws next to centralized generation).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from sionna.phy.mapping import pam

from megen.errors import MegenError
from megen.link.modulation import bits_per_symbol
from megen.units import db_to_linear


def q_function(x: float) -> float:
    """Gaussian tail probability ``Q(x) = P(N(0, 1) > x)``."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def ber_awgn(modulation: str, snr_db: float) -> float:
    """Exact uncoded bit error rate over AWGN with nearest-point detection and Gray labels.

    Square QAM is two independent Gray ``sqrt(M)``-PAMs (each with half the energy), so the BER is the
    per-dimension PAM BER, computed exactly by summing interval probabilities over all transmitted points
    and decision regions. Special cases: BPSK ``Q(sqrt(2 snr))``, QPSK ``Q(sqrt(snr))``, 16-QAM
    ``(3 Q(sqrt(snr/5)) + 2 Q(3 sqrt(snr/5)) - Q(5 sqrt(snr/5))) / 4``.

    Args:
        modulation: ``bpsk``, ``qpsk``, ``16qam``, ``64qam`` or ``256qam``.
        snr_db: Es/N0 per complex symbol in dB.

    Returns:
        Bit error probability.

    Example:
        >>> abs(ber_awgn("bpsk", 0.0) - q_function(math.sqrt(2.0))) < 1e-12
        True
    """
    m = bits_per_symbol(modulation)
    snr = db_to_linear(snr_db)
    sigma = math.sqrt(1.0 / snr / 2.0)  # noise std per real dimension, N0 / 2
    if m == 1:
        points, labels = _pam_points(1)
        return _pam_ber(points, labels, 1, sigma)
    half = m // 2
    points, labels = _pam_points(half)
    return _pam_ber(points / math.sqrt(2.0), labels, half, sigma)


def ber_bpsk_rayleigh(snr_db: float) -> float:
    """BPSK over Rayleigh fading with coherent detection: ``(1 - sqrt(snr / (1 + snr))) / 2``."""
    snr = db_to_linear(snr_db)
    return 0.5 * (1.0 - math.sqrt(snr / (1.0 + snr)))


def capacity_awgn(snr_db: float) -> float:
    """Shannon capacity ``log2(1 + snr)`` in bits per complex channel use."""
    return math.log2(1.0 + db_to_linear(snr_db))


def ergodic_capacity(snr_db: float, channel: str, *, k_factor_db: float = 3.0) -> float:
    """Capacity in bit per complex channel use: AWGN ``log2(1+snr)``; fading: ``E[log2(1+|h|^2 snr)]``.

    Rayleigh uses the closed form ``exp(1/snr) E1(1/snr) / ln 2``; Rician a fixed-seed Monte-Carlo
    average over 2^18 draws (unit mean power, K-factor ``k_factor_db``).

    Example:
        >>> round(ergodic_capacity(0.0, "awgn"), 6)
        1.0
    """
    if channel in ("awgn", "none"):
        return capacity_awgn(snr_db)
    snr = db_to_linear(snr_db)
    if channel == "rayleigh":
        from scipy.special import exp1

        return float(math.exp(1.0 / snr) * exp1(1.0 / snr) / math.log(2.0))
    if channel == "rician":
        k = db_to_linear(k_factor_db)
        rng = np.random.default_rng(0)
        n = 1 << 18
        los = math.sqrt(k / (k + 1))
        scat = math.sqrt(1 / (2 * (k + 1)))
        h = los + scat * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
        return float(np.mean(np.log2(1.0 + np.abs(h) ** 2 * snr)))
    raise MegenError(f"no capacity for channel {channel!r}")


def capacity_channel_uses(bits: float, snr_db: float, channel: str = "awgn") -> float:
    """Fewest channel uses any digital scheme needs for ``bits`` at ``snr_db``: ``bits / C``.

    Example:
        >>> capacity_channel_uses(100.0, 0.0)
        100.0
    """
    return bits / ergodic_capacity(snr_db, channel)


def shannon_snr_db(spectral_efficiency: float) -> float:
    """Smallest SNR (dB) at which ``log2(1 + snr)`` reaches ``spectral_efficiency``."""
    if spectral_efficiency <= 0:
        raise MegenError("spectral efficiency must be positive")
    return 10.0 * math.log10(2.0**spectral_efficiency - 1.0)


@functools.cache
def _pam_points(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unit-energy Gray PAM points and their integer labels (sionna's 5G labelling)."""
    values = np.real(pam(bits, normalize=True)).astype(np.float64)
    order = np.argsort(values)
    return values[order], order.astype(np.int64)


def _pam_ber(points: np.ndarray, labels: np.ndarray, bits: int, sigma: float) -> float:
    edges = np.concatenate([[-np.inf], (points[1:] + points[:-1]) / 2.0, [np.inf]])
    errors = 0.0
    for a, label_a in zip(points, labels, strict=True):
        upper = np.array([q_function((lo - a) / sigma) for lo in edges[:-1]])
        lower = np.array([q_function((hi - a) / sigma) for hi in edges[1:]])
        prob = upper - lower
        hamming = np.array([bin(int(label_a) ^ int(lb)).count("1") for lb in labels])
        errors += float(np.sum(prob * hamming))
    return errors / (len(points) * bits)
