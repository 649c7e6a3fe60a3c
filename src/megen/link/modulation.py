"""Modulation and coding scheme (:class:`Mcs`), Gray QAM mapping and soft demapping (sionna).

Constellations are sionna's 5G ones (38.211 Sec. 5.1), normalised to unit average energy: BPSK is
sionna's 1-bit PAM (``+-1``), QPSK..256-QAM are its Gray-labelled square QAMs. Bit ``2i`` of a QAM
label sits on the real axis and bit ``2i + 1`` on the imaginary axis, so demapping is done exactly per
real dimension (a ``sqrt(M)``-PAM each), which is much cheaper than over all ``M`` points.

LLRs follow sionna's convention: ``llr = log(P(b = 1 | y) / P(b = 0 | y))``.

Devices: mapping and demapping run on the input's device, with sionna blocks built for that device
(one cached block per modulation and device).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from sionna.phy.mapping import Demapper, Mapper

from megen.errors import MegenError

MODULATIONS: dict[str, int] = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6, "256qam": 8}
"""Modulation name -> bits per complex symbol."""

CODE_RATE_MIN = 30 / 1024
"""Lowest 5G LDPC code rate supported (38.214 Table 5.1.3.1-3, index 0). Rates below the BG2 mother
rate 1/5 repeat the circular buffer in rate matching (:mod:`megen.link.ldpc`)."""
CODE_RATE_MAX = 948 / 1024
"""Highest 5G LDPC code rate (38.214 MCS tables)."""

LLR_CLIP = 50.0
"""Channel LLRs are clipped to +-LLR_CLIP."""

_MIN_NOISE_VAR = 1e-10
_DEMAP_CHUNK_SYMBOLS = 1 << 16

DemapMethod = Literal["app", "maxlog"]


@dataclass(frozen=True)
class Mcs:
    """A modulation and coding scheme.

    Attributes:
        modulation: One of ``bpsk, qpsk, 16qam, 64qam, 256qam``.
        code_rate: 5G LDPC code rate in ``[30/1024, 948/1024]``, or ``None`` for uncoded transmission
            (every code block still carries a CRC so errors are detected).
    """

    modulation: str = "qpsk"
    code_rate: float | None = 0.5

    def __post_init__(self) -> None:
        if self.modulation not in MODULATIONS:
            raise MegenError(
                f"unknown modulation {self.modulation!r}; choose one of {', '.join(MODULATIONS)}"
            )
        if self.code_rate is not None:
            if isinstance(self.code_rate, bool):
                raise MegenError(f"code rate must be a number (got {self.code_rate!r})")
            rate = float(self.code_rate)
            if not 0.0 < rate < 1.0:
                raise MegenError(f"code rate must be in (0, 1), got {self.code_rate}")
            if not CODE_RATE_MIN - 1e-12 <= rate <= CODE_RATE_MAX + 1e-12:
                raise MegenError(
                    f"code rate {rate:g} is outside the 5G LDPC range [{CODE_RATE_MIN:g}, {CODE_RATE_MAX:.4f}]"
                )
            object.__setattr__(self, "code_rate", rate)

    @property
    def bits_per_symbol(self) -> int:
        """Coded bits per complex symbol."""
        return MODULATIONS[self.modulation]

    @property
    def coded(self) -> bool:
        """True when LDPC coding is used."""
        return self.code_rate is not None

    @property
    def spectral_efficiency(self) -> float:
        """Nominal information bits per channel use, ``bits_per_symbol * code_rate``."""
        return self.bits_per_symbol * (self.code_rate if self.code_rate is not None else 1.0)

    @property
    def label(self) -> str:
        """Short name, e.g. ``16qam-r0.48`` or ``qpsk-uncoded``."""
        rate = "uncoded" if self.code_rate is None else f"r{self.code_rate:.3g}"
        return f"{self.modulation}-{rate}"


def bits_per_symbol(modulation: str) -> int:
    """Bits per complex symbol of a modulation name (raises :class:`MegenError` if unknown)."""
    if modulation not in MODULATIONS:
        raise MegenError(f"unknown modulation {modulation!r}; choose one of {', '.join(MODULATIONS)}")
    return MODULATIONS[modulation]


def map_bits(bits: torch.Tensor, modulation: str) -> torch.Tensor:
    """Map bits to unit-energy constellation symbols.

    Args:
        bits: Integer or float tensor of 0/1, ``[..., n]`` with ``n`` a multiple of the bits per symbol.
        modulation: Modulation name.

    Returns:
        complex64 ``[..., n / bits_per_symbol]`` on the bits' device.
    """
    m = bits_per_symbol(modulation)
    if bits.shape[-1] % m:
        raise MegenError(f"number of bits ({bits.shape[-1]}) is not a multiple of {m} for {modulation}")
    return _mapper(modulation, str(bits.device))(bits)


def demap_llr(
    y: torch.Tensor, noise_var: torch.Tensor, modulation: str, method: DemapMethod = "app"
) -> torch.Tensor:
    """Bit LLRs from unbiased received symbols ``y = x + e``, ``e ~ CN(0, noise_var)``.

    Args:
        y: complex64 ``[B, n]``.
        noise_var: Real, broadcastable to ``[B, n]``: noise variance per complex symbol.
        modulation: Modulation name.
        method: ``"app"`` (exact) or ``"maxlog"`` (its sign is the nearest-point decision).

    Returns:
        float32 ``[B, n * bits_per_symbol]`` on ``y``'s device, ``log P(b=1)/P(b=0)``, clipped to
        ``+-LLR_CLIP``.
    """
    m = bits_per_symbol(modulation)
    y = y.to(torch.complex64)
    noise_var = (
        torch.as_tensor(noise_var, dtype=torch.float32, device=y.device)
        .expand(y.shape)
        .clamp_min(_MIN_NOISE_VAR)
    )
    batch, n = y.shape
    y_flat = y.reshape(-1)
    nv_flat = noise_var.reshape(-1)
    out = torch.empty(batch * n * m, dtype=torch.float32, device=y.device)
    for start in range(0, batch * n, _DEMAP_CHUNK_SYMBOLS):
        stop = min(start + _DEMAP_CHUNK_SYMBOLS, batch * n)
        out[start * m : stop * m] = _demap_chunk(y_flat[start:stop], nv_flat[start:stop], m, method)
    return out.clamp_(-LLR_CLIP, LLR_CLIP).view(batch, n * m)


def _demap_chunk(y: torch.Tensor, noise_var: torch.Tensor, m: int, method: str) -> torch.Tensor:
    device = str(y.device)
    if m == 1:
        return _pam_demapper(1, method, device)(y, noise_var)
    half = m // 2
    # Real and imaginary parts are sqrt(M)-PAMs scaled by 1/sqrt(2); rescale to sionna's unit-energy PAM.
    # Per real dimension the rescaled noise has variance N0, i.e. exp(-d^2 / (2 N0)): sionna's ``no`` = 2 N0.
    scale = math.sqrt(2.0)
    no = 2.0 * noise_var
    demapper = _pam_demapper(half, method, device)
    zeros = torch.zeros_like(y.real)
    llr_re = demapper(torch.complex(y.real * scale, zeros), no).view(-1, half)
    llr_im = demapper(torch.complex(y.imag * scale, zeros), no).view(-1, half)
    return torch.stack([llr_re, llr_im], dim=-1).reshape(-1)


@functools.cache
def _mapper(modulation: str, device: str) -> Mapper:
    m = MODULATIONS[modulation]
    kind = "pam" if m == 1 else "qam"
    return Mapper(kind, m, device=device)


@functools.cache
def _pam_demapper(bits: int, method: str, device: str) -> Demapper:
    return Demapper(method, "pam", bits, device=device)
