"""Channels: AWGN, block Rayleigh and block Rician fading, with ZF or MMSE equalisation.

Conventions (used everywhere in :mod:`megen.link`):

* A link is counted in **complex channel uses** (symbols). Pilot symbols count too.
* Transmit symbols have unit average energy, ``E|x|^2 = Es = 1``.
* ``snr_db`` is ``Es/N0`` per complex symbol. The noise is circularly symmetric ``CN(0, N0)`` with
  ``N0 = 10 ** (-snr_db / 10)``, i.e. variance ``N0 / 2`` per real dimension.
* Fading coefficients have unit average power, ``E|h|^2 = 1``, so ``snr_db`` is also the average
  received SNR. Rayleigh: ``h ~ CN(0, 1)``. Rician with K factor ``K``:
  ``h = sqrt(K / (K + 1)) + sqrt(1 / (K + 1)) * CN(0, 1)``.
* Block fading: ``h`` is constant over a coherence block of ``coherence_symbols`` channel uses and
  independent between blocks and between batch items.
* CSI: ``"perfect"`` gives the receiver the true ``h`` (no pilots). ``"estimated"`` spends
  ``pilots_per_block`` unit-energy pilot symbols at the start of each coherence block; the receiver
  forms the least-squares estimate ``h_hat = mean(y_pilot)``, whose error is ``CN(0, N0 / P)``. The
  pilots' noise samples are drawn one by one (``P`` per block), so the receiver also has their
  residuals ``y_pilot - h_hat`` for its noise estimate.
* Noise variance: ``noise="estimated"`` (the default) makes the receiver estimate ``N0`` per item
  from what it received and what it knows: the transmit energy (``Es = 1`` per occupied symbol;
  symbols that are exactly 0 are padding of the frame layout, known at both ends, sent with no
  energy) and the channel (1 on AWGN, the CSI on fading links). With ``S = sum |y|^2`` and
  ``H = sum over occupied symbols of |g|^2`` (``g`` the receiver's channel: the estimate, or ``h``
  with perfect CSI), ``E[S - H] = N0 (n - n_occupied / P)`` (``P`` pilots per block for estimated
  CSI, ``1 / P = 0`` otherwise), so ``N0_hat = (S - H) / (n - n_occupied / P)``, floored at
  :data:`MIN_NOISE_ESTIMATE`. Its spread is ``~ sqrt(var|x|^2 + 2 N0) / sqrt(n)``: tiny for
  power-normalised analog payloads (``|x|^2`` averages exactly 1 per item), larger for QAM
  (16-QAM: ``var|x|^2 = 0.32``), where it only matters at high SNR. With estimated CSI and ``P >= 2``
  pilots per block the receiver instead pools the pilot residuals, ``N0_hat = sum |y_pilot -
  h_hat|^2 / (blocks (P - 1))`` (unbiased, independent of the data's modulation and of the channel
  estimate's error; on fading links the data-based estimate above has an error ``~ sqrt(N0)`` through
  ``|h_hat|^2 - |h|^2``, which floors 64/256-QAM at high SNR). Every receiver quantity that
  needs ``N0`` (MMSE weights, the reported ``noise_var`` that soft demapping and SNR-aware
  denoising read) uses ``N0_hat``; ``noise="genie"`` gives the receiver the true ``N0``.
* Equalisation with the channel estimate ``g`` (``g = h`` for perfect CSI):
  ZF ``y_eq = y / g``; MMSE ``y_eq = conj(g) y / (|g|^2 + N0 + sigma_e^2)``. Either way the output
  obeys ``y_eq = gain * (x + e)`` with ``e`` of variance ``noise_var`` (Gaussian approximation for
  estimated CSI: ``noise_var = (N0 + sigma_e^2) / |g|^2``, ``gain = 1`` for ZF and
  ``|g|^2 / (|g|^2 + N0 + sigma_e^2)`` for MMSE). Dividing by ``gain`` gives the unbiased estimate the
  soft demapper uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch

from megen.errors import MegenError
from megen.units import db_to_linear, linear_to_db

ChannelKind = Literal["none", "awgn", "rayleigh", "rician"]
Equalizer = Literal["zf", "mmse"]
Csi = Literal["perfect", "estimated"]
NoiseKnowledge = Literal["estimated", "genie"]

CHANNEL_KINDS: tuple[str, ...] = get_args(ChannelKind)
FADING_KINDS: tuple[str, ...] = ("rayleigh", "rician")
EQUALIZERS: tuple[str, ...] = ("zf", "mmse")
CSI_MODES: tuple[str, ...] = ("perfect", "estimated")
NOISE_MODES: tuple[str, ...] = get_args(NoiseKnowledge)
MIN_NOISE_ESTIMATE = 1e-6
"""Floor of the receiver's noise-variance estimate (an SNR of 60 dB, the largest configurable)."""

_MIN_CHANNEL_POWER = 1e-30


@dataclass(frozen=True)
class ChannelConfig:
    """A wireless channel and its receiver front end (plain data; rebuild with ``ChannelConfig(**d)``).

    Attributes:
        kind: ``"none"`` (ideal link: exact pass-through, zero noise), ``"awgn"``, ``"rayleigh"`` or
            ``"rician"``.
        snr_db: Average Es/N0 per complex symbol in dB. Must be finite unless ``kind == "none"``
            (where it is ignored).
        coherence_symbols: Fading block length in channel uses (pilots included). Fading kinds only.
        k_factor_db: Rician K factor (LOS-to-scatter power ratio) in dB. ``"rician"`` only.
        equalizer: ``"zf"`` or ``"mmse"``.
        csi: ``"perfect"`` or ``"estimated"`` (least squares on pilots). Fading kinds only.
        pilots_per_block: Pilot symbols per coherence block when ``csi == "estimated"``.
        noise: ``"estimated"`` (the receiver estimates ``N0`` from the received signal, see the module
            docstring) or ``"genie"`` (it is told the true ``N0``).
    """

    kind: ChannelKind = "awgn"
    snr_db: float = 10.0
    coherence_symbols: int = 100
    k_factor_db: float = 3.0
    equalizer: Equalizer = "mmse"
    csi: Csi = "perfect"
    pilots_per_block: int = 4
    noise: NoiseKnowledge = "estimated"

    def __post_init__(self) -> None:
        if self.kind not in CHANNEL_KINDS:
            raise MegenError(f"unknown channel kind {self.kind!r}; choose one of {', '.join(CHANNEL_KINDS)}")
        snr = _as_float(self.snr_db, "snr_db")
        if math.isnan(snr):
            raise MegenError("snr_db is NaN")
        if self.kind != "none" and not math.isfinite(snr):
            raise MegenError(
                f"snr_db must be finite for a {self.kind} channel (use kind='none' for an ideal link)"
            )
        object.__setattr__(self, "snr_db", snr)
        if self.equalizer not in EQUALIZERS:
            raise MegenError(f"unknown equalizer {self.equalizer!r}; choose one of {', '.join(EQUALIZERS)}")
        if self.csi not in CSI_MODES:
            raise MegenError(f"unknown csi mode {self.csi!r}; choose one of {', '.join(CSI_MODES)}")
        if self.noise not in NOISE_MODES:
            raise MegenError(f"unknown noise mode {self.noise!r}; choose one of {', '.join(NOISE_MODES)}")
        _check_int(self.coherence_symbols, "coherence_symbols", minimum=1)
        _check_int(self.pilots_per_block, "pilots_per_block", minimum=0)
        k_db = _as_float(self.k_factor_db, "k_factor_db")
        if not math.isfinite(k_db):
            raise MegenError("k_factor_db must be finite")
        object.__setattr__(self, "k_factor_db", k_db)
        if self.uses_pilots:
            if self.pilots_per_block < 1:
                raise MegenError("csi='estimated' needs pilots_per_block >= 1")
            if self.pilots_per_block >= self.coherence_symbols:
                raise MegenError(
                    f"pilots_per_block ({self.pilots_per_block}) must be smaller than "
                    f"coherence_symbols ({self.coherence_symbols})"
                )

    @property
    def is_fading(self) -> bool:
        """True for Rayleigh and Rician channels."""
        return self.kind in FADING_KINDS

    @property
    def uses_pilots(self) -> bool:
        """True when pilot symbols are sent (fading channel with estimated CSI)."""
        return self.is_fading and self.csi == "estimated"

    @property
    def noise_variance(self) -> float:
        """``N0`` per complex symbol (``Es = 1``); 0 for the ideal link."""
        return 0.0 if self.kind == "none" else db_to_linear(-self.snr_db)

    @property
    def data_symbols_per_block(self) -> int:
        """Data symbols per coherence block (``coherence_symbols`` minus pilots)."""
        return self.coherence_symbols - (self.pilots_per_block if self.uses_pilots else 0)

    def with_snr_db(self, snr_db: float) -> ChannelConfig:
        """The same channel at another SNR."""
        return ChannelConfig(**{**asdict(self), "snr_db": snr_db})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, ``ChannelConfig(**cfg.to_dict()) == cfg``."""
        return asdict(self)


@dataclass(frozen=True)
class SymbolTransmission:
    """What the receiver holds after :func:`transmit_symbols`.

    Attributes:
        symbols: Equalised symbols, complex ``[B, n]``: ``symbols = gain * (x + e)``.
        gain: Real, broadcastable to ``[B, n]`` (``[1, 1]`` for the ideal link, ``[B, 1]`` for AWGN,
            ``[B, n]`` for fading): 1 for ZF, the MMSE shrinkage otherwise.
        noise_var: Real, broadcastable to ``[B, n]`` like ``gain``: variance of ``e`` per complex symbol,
            i.e. the post-equalisation noise of the unbiased estimate ``symbols / gain`` (0 for the ideal
            link).
        channel_uses: Complex channel uses spent by the whole batch, pilots included.
        pilot_symbols: How many of ``channel_uses`` were pilots.
    """

    symbols: torch.Tensor
    gain: torch.Tensor
    noise_var: torch.Tensor
    channel_uses: int
    pilot_symbols: int

    @property
    def unbiased(self) -> torch.Tensor:
        """``symbols / gain``: ``x + e``, complex ``[B, n]``."""
        return self.symbols / self.gain

    @property
    def effective_snr_db(self) -> torch.Tensor:
        """Per item ``10 log10(1 / mean_n noise_var)``, float ``[B]`` (``inf`` for the ideal link)."""
        mean_var = self.noise_var.expand(self.symbols.shape).mean(dim=1)
        return 10.0 * torch.log10(1.0 / mean_var)


def ebno_db_to_snr_db(ebno_db: float, bits_per_symbol: int, code_rate: float = 1.0) -> float:
    """Es/N0 from Eb/N0: ``snr_db = ebno_db + 10 log10(bits_per_symbol * code_rate)``.

    Args:
        ebno_db: Energy per information bit over N0, in dB.
        bits_per_symbol: Coded bits per complex symbol (1 for BPSK, 4 for 16-QAM, ...).
        code_rate: Information bits per coded bit, in (0, 1].

    Returns:
        Es/N0 per complex symbol in dB.

    Example:
        >>> round(ebno_db_to_snr_db(4.0, bits_per_symbol=2, code_rate=0.5), 6)
        4.0
    """
    ebno = _as_float(ebno_db, "ebno_db")
    if not math.isfinite(ebno):
        raise MegenError("ebno_db must be finite")
    _check_int(bits_per_symbol, "bits_per_symbol", minimum=1)
    rate = _as_float(code_rate, "code_rate")
    if not 0.0 < rate <= 1.0:
        raise MegenError(f"code_rate must be in (0, 1], got {code_rate}")
    return ebno + linear_to_db(bits_per_symbol * rate)


def snr_db_to_ebno_db(snr_db: float, bits_per_symbol: int, code_rate: float = 1.0) -> float:
    """Inverse of :func:`ebno_db_to_snr_db`."""
    return snr_db - (ebno_db_to_snr_db(0.0, bits_per_symbol, code_rate))


def pilot_symbols_for(num_data_symbols: int, channel: ChannelConfig) -> int:
    """Pilot symbols needed to send ``num_data_symbols`` data symbols of one item."""
    _check_int(num_data_symbols, "num_data_symbols", minimum=0)
    if not channel.uses_pilots or num_data_symbols == 0:
        return 0
    blocks = -(-num_data_symbols // channel.data_symbols_per_block)
    return blocks * channel.pilots_per_block


def channel_uses_for(num_data_symbols: int, channel: ChannelConfig) -> int:
    """Channel uses (data + pilots) to send ``num_data_symbols`` data symbols of one item."""
    return num_data_symbols + pilot_symbols_for(num_data_symbols, channel)


def complex_normal(
    shape: tuple[int, ...], variance: float, generator: torch.Generator, dtype: torch.dtype = torch.complex64
) -> torch.Tensor:
    """Samples of ``CN(0, variance)`` (``variance / 2`` per real dimension), on the generator's device."""
    real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
    z = torch.empty((*shape, 2), dtype=real_dtype, device=generator.device)
    z.normal_(0.0, math.sqrt(variance / 2.0), generator=generator)
    return torch.view_as_complex(z)


def draw_fading(
    channel: ChannelConfig, batch_size: int, num_blocks: int, generator: torch.Generator
) -> torch.Tensor:
    """Fading coefficients per coherence block, complex64 ``[batch_size, num_blocks]``, ``E|h|^2 = 1``."""
    if not channel.is_fading:
        raise MegenError(f"a {channel.kind} channel has no fading")
    h = complex_normal((batch_size, num_blocks), 1.0, generator)
    if channel.kind == "rician":
        k = db_to_linear(channel.k_factor_db)
        h = h * math.sqrt(1.0 / (k + 1.0)) + math.sqrt(k / (k + 1.0))
    return h


def transmit_symbols(
    x: torch.Tensor, channel: ChannelConfig, generator: torch.Generator
) -> SymbolTransmission:
    """Send unit-energy complex symbols over the channel and equalise them.

    Args:
        x: Complex ``[B, n]`` (complex64 or complex128), unit average energy per symbol.
        channel: The channel and receiver settings.
        generator: Source of all randomness (noise, fading, estimation error). Its device is used for
            sampling; results are moved to ``x.device``.

    Returns:
        :class:`SymbolTransmission` with the equalised symbols, their gain and noise variance, and the
        channel uses spent (``B * n`` plus pilots).
    """
    if not isinstance(x, torch.Tensor) or not x.is_complex() or x.dim() != 2:
        raise MegenError("x must be a complex tensor of shape [B, n]")
    batch, n = x.shape
    pilots = batch * pilot_symbols_for(n, channel)
    uses = batch * n + pilots
    real_dtype = torch.float64 if x.dtype == torch.complex128 else torch.float32
    if channel.kind == "none":
        one = torch.ones((1, 1), dtype=real_dtype, device=x.device)
        zero = torch.zeros((1, 1), dtype=real_dtype, device=x.device)
        return SymbolTransmission(x.clone(), one, zero, uses, 0)

    n0 = channel.noise_variance
    y = complex_normal((batch, n), n0, generator, x.dtype).to(x.device)
    if channel.kind == "awgn":
        y.add_(x)
        n0_rx = _noise_at_receiver(channel, y, x, None, 0.0)
        gain = torch.ones_like(n0_rx) if channel.equalizer == "zf" else 1.0 / (1.0 + n0_rx)
        return SymbolTransmission(y * gain.to(y.dtype), gain, n0_rx, uses, 0)

    per_block = channel.data_symbols_per_block
    num_blocks = -(-n // per_block) if n else 0
    h_blocks = draw_fading(channel, batch, num_blocks, generator)
    pilot_share = 0.0
    pilot_n0: torch.Tensor | None = None
    if channel.csi == "estimated":
        pilots_per_block = channel.pilots_per_block
        pilot_share = 1.0 / pilots_per_block
        pilot_noise = complex_normal((batch, num_blocks, pilots_per_block), n0, generator)
        pilot_mean = pilot_noise.mean(dim=2)
        h_est_blocks = h_blocks + pilot_mean
        if pilots_per_block >= 2 and num_blocks:
            residual = pilot_noise - pilot_mean.unsqueeze(-1)
            power_sum = (residual.real.square() + residual.imag.square()).sum(dim=(1, 2))
            pilot_n0 = (power_sum / (num_blocks * (pilots_per_block - 1))).reshape(batch, 1)
    else:
        h_est_blocks = h_blocks
    h = _expand_blocks(h_blocks, per_block, n).to(device=x.device, dtype=x.dtype)
    h_est = _expand_blocks(h_est_blocks, per_block, n).to(device=x.device, dtype=x.dtype)
    y.addcmul_(h, x)
    power = h_est.real.square() + h_est.imag.square()
    if pilot_n0 is not None and channel.noise == "estimated":
        n0_rx = pilot_n0.to(device=x.device, dtype=real_dtype).clamp_min(MIN_NOISE_ESTIMATE)
    else:
        n0_rx = _noise_at_receiver(channel, y, x, power, pilot_share)
    power = power.clamp_min(_MIN_CHANNEL_POWER)
    interference = n0_rx * (1.0 + pilot_share)  # N0 plus the LS estimate's error variance N0 / P
    noise_var = interference / power
    if channel.equalizer == "zf":
        gain = torch.ones((1, 1), dtype=real_dtype, device=x.device)
        symbols = y / h_est
    else:
        gain = power / (power + interference)
        symbols = y * h_est.conj() / (power + interference)
    return SymbolTransmission(symbols, gain, noise_var, uses, pilots)


def estimate_noise_variance(
    y: torch.Tensor,
    occupied: torch.Tensor,
    channel_power: torch.Tensor | None = None,
    pilot_share: float = 0.0,
) -> torch.Tensor:
    """The receiver's estimate of ``N0`` per item from the received symbols (see the module docstring).

    Args:
        y: Received (not yet equalised) symbols, complex ``[B, n]``.
        occupied: bool ``[B, n]``: symbols sent with energy ``Es = 1`` (the rest is padding, sent as 0).
        channel_power: ``|g|^2`` of the receiver's channel per symbol, real ``[B, n]``; ``None``: 1 (AWGN).
        pilot_share: ``1 / P`` when ``g`` is an LS estimate from ``P`` pilots (its power is biased up by
            ``N0 / P``), else 0.

    Returns:
        Real ``[B, 1]`` (the dtype of ``y``'s real part), floored at :data:`MIN_NOISE_ESTIMATE`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.ones(1, 20000, dtype=torch.complex64)
        >>> y = x + complex_normal((1, 20000), 0.5, g)
        >>> round(float(estimate_noise_variance(y, x != 0)), 1)
        0.5
    """
    occ = occupied.to(y.real.dtype)
    expected = occ if channel_power is None else occ * channel_power
    received = (y.real.square() + y.imag.square()).sum(dim=1, keepdim=True)
    excess = received - expected.sum(dim=1, keepdim=True)
    dof = y.shape[1] - occ.sum(dim=1, keepdim=True) * pilot_share
    return (excess / dof.clamp_min(1.0)).clamp_min(MIN_NOISE_ESTIMATE)


def _noise_at_receiver(
    channel: ChannelConfig, y: torch.Tensor, x: torch.Tensor, power: torch.Tensor | None, pilot_share: float
) -> torch.Tensor:
    """``N0`` as the receiver knows it, real ``[B, 1]``: its estimate, or the true value (genie)."""
    if channel.noise == "genie":
        return torch.full((y.shape[0], 1), channel.noise_variance, dtype=y.real.dtype, device=y.device)
    return estimate_noise_variance(y, x != 0, power, pilot_share)


def _expand_blocks(h_blocks: torch.Tensor, per_block: int, n: int) -> torch.Tensor:
    batch, num_blocks = h_blocks.shape
    return h_blocks.unsqueeze(-1).expand(batch, num_blocks, per_block).reshape(batch, -1)[:, :n]


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise MegenError(f"{name} must be a number (got {value!r})")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise MegenError(f"{name} must be a number (got {value!r})") from exc


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MegenError(f"{name} must be an integer (got {value!r})")
    if value < minimum:
        raise MegenError(f"{name} must be >= {minimum}, got {value}")
