"""Seed codecs: send a latent (a "seed") over a link within a channel-use budget.

A seed ``[B, C, H, W]`` of ``n = C*H*W`` values takes ``ceil(n / 2)`` complex channel uses raw (two
reals per use). A seed codec sends it in ``uses`` data channel uses per item, from 1/8 to 4x the raw
size (:func:`check_budget`):

* ``identity``: the raw seed, power-normalised per item (today's analog seed;
  :func:`~megen.link.analog.transmit_analog`). Its budget is the raw size.
* ``linear``: the KLT of the seed (:mod:`megen.link.seed_prior`), the strongest ``2 uses``
  components (repeated round-robin, strongest first, when ``2 uses > n``), each scaled by the
  MMSE-optimal energy (:func:`~megen.link.seed_power.component_energies`) for the link's SNR; the
  receiver is the linear MMSE estimator (maximum-ratio combining of the copies).
* ``learned``: a learned (deep JSCC) transmitter, the ``linear`` one plus a neural correction fed the
  seed, its signal level and the link SNR, with its jointly trained neural decoder
  (:mod:`megen.link.seed_learned`); budgets: those it has a head for (16, 32, 64, 128, 256, 512 uses
  for the tiny model).
* ``digital``: entropy-coded quantised KLT coefficients over LDPC/QAM (:mod:`megen.link.seed_digital`).

Every analog codec scales each item's symbols to exactly unit average power per channel use; the
scale (and, for ``linear``/``learned``, the seed's signal level) is digital side information of
32 bits each, assumed delivered like the other headers. Every decoder returns the seed estimate and
its residual error variance per value, estimated at the receiver from what it knows (its channel
estimate, the side information and the prior), never from the true noise.

Power over fading blocks (``power="waterfilling"``): the receiver feeds the block gains back and the
transmitter allocates power across blocks (:func:`~megen.link.seed_power.transmit_waterfilled`);
pilots and feedback are counted in channel uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, get_args

import torch

from megen.errors import MegenError
from megen.link.analog import SIDE_INFO_BITS_PER_ITEM, transmit_analog
from megen.link.channels import ChannelConfig, transmit_symbols
from megen.link.harq import NO_HARQ, Harq
from megen.link.modulation import Mcs
from megen.link.seed_learned import SeedDecoderNet, SeedEncoderNet, load_jscc, tile_prefix
from megen.link.seed_power import component_energies, transmit_waterfilled
from megen.link.seed_prior import SeedPrior, load_prior, load_seed_weights, raw_uses

SeedCodecName = Literal["identity", "linear", "learned", "digital"]
SeedPower = Literal["uniform", "waterfilling"]
SEED_CODECS: tuple[str, ...] = get_args(SeedCodecName)
SEED_POWERS: tuple[str, ...] = get_args(SeedPower)
#: Smallest budget as a fraction of the raw seed's uses, and largest as a multiple.
MIN_BUDGET_DIVISOR = 8
MAX_BUDGET_FACTOR = 4
#: Noise variance per real dimension used in place of 0 on the ideal link.
_TINY_NOISE = 1e-18


@dataclass(frozen=True)
class SeedResult:
    """What the receiver of a seed holds.

    Attributes:
        estimate: The seed estimate, shape and dtype of the sent seed ``[B, ...]``.
        noise_var: ``[B]`` float32 residual error variance per value (latent units squared),
            estimated at the receiver; ``None`` on the ideal link for ``identity``.
        channel_uses: Complex channel uses of the batch: data, pilots and CSI feedback.
        pilot_symbols: Pilots among ``channel_uses``.
        payload_bits: Digital bits: side information, or the coded seed's info + header bits.
        effective_snr_db: Mean post-equalisation SNR per unit-power symbol, or the link SNR (digital);
            ``None`` on the ideal link.
        ok: Every digital block decoded (always True for analog codecs).
        failures: Failed code blocks (digital).
        unbiased: For receiver-side denoising: the seed as "sent seed + white noise" (``None``: use
            ``estimate``). ``linear``/``learned``: the linear estimate with each component's MMSE
            shrinkage undone (components not received: the prior mean).
        unbiased_var: ``[B]`` noise variance per value of ``unbiased`` (``None``: ``noise_var``).
        item_ok: Per item, whether its own digital block decoded (``digital``; empty for analog).
        transmissions: Transmissions of the digital blocks, HARQ retransmissions included (0 for analog).
    """

    estimate: torch.Tensor
    noise_var: torch.Tensor | None
    channel_uses: int
    pilot_symbols: int
    payload_bits: int
    effective_snr_db: float | None
    ok: bool = True
    failures: int = 0
    unbiased: torch.Tensor | None = None
    unbiased_var: torch.Tensor | None = None
    item_ok: tuple[bool, ...] = ()
    transmissions: int = 0


def tile_uses(uses: int, numel: int, whole: int) -> int:
    """A tile's share of a whole latent's budget: ``round(uses * numel / whole)`` (halves up)."""
    return int(math.floor(uses * numel / whole + 0.5))


def check_budget(codec: str, numel: int, uses: int | None, whole: int | None = None) -> int:
    """The data channel uses per item of a seed of ``numel`` values (``None``: the raw size).

    ``uses`` is the budget of a *whole* latent of ``whole`` values (default ``numel``). A tile (the
    multi-ES protocols' seeds, ``numel < whole``) gets its share :func:`tile_uses` of it, so a budget
    means the same channel uses per image for every protocol; the share is checked against the tile's
    own ``ceil(raw / 8) .. 4 raw`` too.

    Raises:
        MegenError: an unknown codec, or a budget outside ``ceil(raw / 8) .. 4 raw`` (``identity``:
            other than ``raw``).
    """
    if codec not in SEED_CODECS:
        raise MegenError(f"unknown seed codec {codec!r}; choose one of {', '.join(SEED_CODECS)}")
    whole = numel if whole is None or whole <= numel else whole
    raw = raw_uses(whole)
    if uses is None:
        return raw_uses(numel)
    if codec == "identity" and uses != raw:
        raise MegenError(
            f"seed codec identity sends the raw seed in {raw} channel uses, not {uses}; "
            "use --seed-codec linear, learned or digital for other budgets"
        )
    low, high = math.ceil(raw / MIN_BUDGET_DIVISOR), MAX_BUDGET_FACTOR * raw
    if not low <= uses <= high:
        raise MegenError(f"seed budget must be {low}..{high} channel uses for this seed, got {uses}")
    if whole == numel:
        return int(uses)
    share, raw_tile = tile_uses(uses, numel, whole), raw_uses(numel)
    low, high = math.ceil(raw_tile / MIN_BUDGET_DIVISOR), MAX_BUDGET_FACTOR * raw_tile
    if codec == "identity":
        return raw_tile
    if not low <= share <= high:
        raise MegenError(
            f"seed budget {uses} channel uses per latent gives a tile of {numel} values {share}, "
            f"outside its {low}..{high}"
        )
    return share


def whole_numel(model: str, shape: tuple[int, ...], uses: int | None) -> int | None:
    """Values of the whole latent a seed of ``shape`` is a tile of (``None``: not a tile, or no budget).

    The whole latent is the one the seed-codec weights of ``model`` were fitted to; a seed with its
    ``C, H`` and fewer columns is a tile of it.
    """
    from megen.link.seed_prior import is_tile_shape, stored_shape, weights_path

    if uses is None:
        return None
    try:
        if not weights_path(model).exists():
            return None
    except MegenError:
        return None
    stored = stored_shape(model)
    return math.prod(stored) if is_tile_shape(shape, stored) else None


def send_seed(
    x: torch.Tensor,
    channel: ChannelConfig,
    generator: torch.Generator,
    *,
    codec: str = "identity",
    uses: int | None = None,
    power: str = "uniform",
    model: str = "tiny",
    mcs: Mcs | None = None,
    cols: tuple[int, int] | None = None,
    harq: Harq = NO_HARQ,
) -> SeedResult:
    """Send seeds ``x [B, C, H, W]`` with a seed codec in ``uses`` channel uses per item.

    A seed may be a *tile* of the model's latent (its ``C, H`` and fewer columns: the multi-ES
    protocols' tiles and halo strips). Its KLT prior is the latent's restricted to the tile's columns
    ``cols`` (:func:`~megen.link.seed_prior.tile_prior`; ``None``: averaged over the positions), and
    ``uses`` is the budget of a whole latent, of which a tile gets its share (:func:`check_budget`).

    Args:
        x: Real seeds (scaled latent units), finite.
        channel: The link's channel.
        generator: Source of randomness.
        codec: ``identity``, ``linear``, ``learned`` or ``digital``.
        uses: Data channel uses per item (``None``: the raw size).
        power: ``uniform`` or ``waterfilling`` (analog codecs on fading channels).
        model: The model whose seed-codec weights to use (``tiny`` or a model folder).
        mcs: The digital codec's MCS (required for ``digital``).
        cols: The latent columns ``(lo, hi)`` a tile seed covers (the receiver knows its tile).
        harq: The digital codec's retransmission policy (``uses`` is then the budget of each
            transmission; every retransmission is counted); analog codecs ignore it.

    Returns:
        :class:`SeedResult`.

    Example:
        >>> import torch
        >>> from megen.link.channels import ChannelConfig
        >>> x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> r = send_seed(x, ChannelConfig(kind="none"), torch.Generator(), codec="linear", uses=128)
        >>> bool(torch.allclose(r.estimate, x, atol=1e-4)), r.channel_uses
        (True, 256)
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise MegenError("a seed must be a real floating-point tensor [B, ...]")
    if power not in SEED_POWERS:
        raise MegenError(f"unknown seed power allocation {power!r}; choose uniform or waterfilling")
    numel, shape = x[0].numel(), tuple(x.shape[1:])
    k = check_budget(codec, numel, uses, whole_numel(model, shape, uses))
    if not bool(torch.isfinite(x).all()):
        raise MegenError("seed to transmit contains NaN or infinite values")
    if codec == "identity" and power == "uniform":
        return _identity_analog(x, channel, generator)
    if codec == "digital":
        from megen.link.seed_digital import send_seed_digital

        if mcs is None:
            raise MegenError("the digital seed codec needs the link's MCS")
        return send_seed_digital(x, load_prior(model, shape, cols), k, mcs, channel, generator, harq)
    prior = None if codec == "identity" else load_prior(model, shape, cols)
    jscc = _learned(model, shape, k) if codec == "learned" else None
    return _send_analog_codec(x, prior, jscc, k, power, channel, generator)


def _identity_analog(x: torch.Tensor, channel: ChannelConfig, generator: torch.Generator) -> SeedResult:
    r = transmit_analog(x, channel, generator)
    ideal = channel.kind == "none"
    return SeedResult(
        estimate=r.received,
        noise_var=None if ideal else r.noise_var.expand_as(x).flatten(1).mean(1).float(),
        channel_uses=r.channel_uses,
        pilot_symbols=r.pilot_symbols,
        payload_bits=r.side_info_bits,
        effective_snr_db=None if ideal else float(r.effective_snr_db.mean()),
    )


@lru_cache(maxsize=8)
def _jscc_cached(
    model: str, shape: tuple[int, ...], stamp: int
) -> tuple[SeedEncoderNet, SeedDecoderNet] | None:
    prefix = tile_prefix(shape) if _is_tile(model, shape) else ""
    return load_jscc(load_seed_weights(model), math.prod(shape), prefix)


def _learned(model: str, shape: tuple[int, ...], uses: int) -> tuple[SeedEncoderNet, SeedDecoderNet]:
    """The learned encoder and decoder of ``model`` for seeds of ``shape`` and a budget of ``uses``.

    Raises:
        MegenError: the weights hold no learned encoder (for tiles: none for this tile shape), or
            none for this budget.
    """
    jscc = _jscc_cached(model, shape, id(load_seed_weights(model)))
    if jscc is None:
        what = "" if not _is_tile(model, shape) else f" for tiles {'x'.join(map(str, shape))}"
        raise MegenError(
            f"the seed-codec weights of model {model!r} hold no learned encoder{what}; "
            "train them with megen train --parts seed-codec"
            + (" --seed-codec-tiles-only --seed-codec-tile-layouts ES:HALO" if what else "")
        )
    budgets = jscc[0].budgets
    if uses not in budgets:
        raise MegenError(
            f"seed codec learned has budgets {', '.join(map(str, sorted(budgets)))} channel uses, not {uses}"
        )
    return jscc


def _is_tile(model: str, shape: tuple[int, ...]) -> bool:
    from megen.link.seed_prior import stored_shape

    return shape != stored_shape(model)


@dataclass(frozen=True)
class AnalogEncoding:
    """Transmitter output of an analog seed codec (everything the receiver also knows or gets).

    Attributes:
        symbols: Complex ``[B, K]``, exactly unit average power per item.
        scale: ``[B]`` float64 side information: ``symbols = scale * raw`` (float32-exact).
        alpha: ``[B]`` float64 signal level of each seed (side information; 1 for ``identity``).
        dims: ``[2K]`` component of each real dimension (``identity``: the value's index).
        amplitude: ``[B, 2K]`` float64 gain of each real dimension before ``scale``.
    """

    symbols: torch.Tensor
    scale: torch.Tensor
    alpha: torch.Tensor
    dims: torch.Tensor
    amplitude: torch.Tensor


def encode_analog(x: torch.Tensor, prior: SeedPrior | None, uses: int, noise: float) -> AnalogEncoding:
    """Analog seed encoder: KLT + MMSE energies (``prior``) or the raw values (``None``).

    Args:
        x: Seeds ``[B, ...]``.
        prior: The KLT prior (``linear``/``learned``), or ``None`` for ``identity``.
        uses: Complex channel uses per item ``K``.
        noise: Design noise variance per real dimension (``N0 / 2`` at the link's average SNR).

    Returns:
        :class:`AnalogEncoding`.
    """
    batch = x.shape[0]
    flat = x.reshape(batch, -1).double()
    m = 2 * uses
    if prior is None:
        dims = torch.arange(m) % flat.shape[1]
        alpha = torch.ones(batch, dtype=torch.float64)
        amplitude = torch.ones(batch, m, dtype=torch.float64)
        raw = flat[:, dims]
    else:
        coeffs = prior.coefficients(flat)
        alpha = prior.signal_level(coeffs)
        mean_c, var_c = prior.moments(alpha)
        dims = torch.arange(m) % prior.numel
        copies = torch.bincount(dims, minlength=prior.numel)
        energy = component_energies(var_c, copies, float(uses), max(noise, _TINY_NOISE))
        per_dim = energy / (copies.clamp_min(1) * var_c)
        amplitude = per_dim.sqrt()[:, dims]
        raw = amplitude * (coeffs - mean_c)[:, dims]
    norm = torch.linalg.vector_norm(raw, dim=1)
    scale = torch.where(norm > 0, math.sqrt(uses) / norm.clamp_min(1e-300), torch.ones_like(norm))
    scale = scale.float().double()  # side information travels as float32
    real = raw * scale.unsqueeze(1)
    real = real * (math.sqrt(uses) / torch.linalg.vector_norm(real, dim=1).clamp_min(1e-300)).unsqueeze(1)
    symbols = torch.view_as_complex(real.reshape(batch, uses, 2).contiguous())
    return AnalogEncoding(symbols, scale, alpha, dims, amplitude)


def decode_linear(
    enc: AnalogEncoding, received: torch.Tensor, noise_var: torch.Tensor, var: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear MMSE estimate of the (centred) components from their real dimensions.

    Args:
        enc: The encoding (its ``scale``, ``dims`` and ``amplitude``; the receiver knows them).
        received: ``[B, 2K]`` real, unbiased received values (``symbols + e``; 0 where unsent).
        noise_var: ``[B, 2K]`` variance of ``e`` per real dimension (``inf``: nothing received).
        var: ``[B, n]`` prior variance of each component.

    Returns:
        ``(estimate [B, n], mse [B, n])`` float64.
    """
    scale = enc.scale.unsqueeze(1)
    precision = scale.square() / noise_var.double().clamp_min(_TINY_NOISE)  # of y / scale
    weight = enc.amplitude * precision
    info = torch.zeros_like(var).index_add_(1, enc.dims, enc.amplitude * weight)
    drive = torch.zeros_like(var).index_add_(1, enc.dims, weight * received.double() / scale)
    mse = var / (1.0 + var * info)
    return mse * drive, mse


def learned_symbols(
    enc: AnalogEncoding, x: torch.Tensor, prior: SeedPrior, encoder: SeedEncoderNet, snr_db: float
) -> AnalogEncoding:
    """The learned transmitter: ``enc`` (the ``linear`` one) with the encoder's symbols.

    Args:
        enc: The ``linear`` encoding of ``x``.
        x: The seeds ``[B, ...]``.
        prior: The KLT prior.
        encoder: The learned encoder.
        snr_db: Link SNR (Es/N0, dB; ``inf`` on the ideal link).

    Returns:
        ``enc`` with complex symbols ``[B, K]`` of exactly unit average power per item; the receiver
        still decodes with ``enc``'s side information (``scale``, ``alpha``).
    """
    batch = x.shape[0]
    mean_c, var_c = prior.moments(enc.alpha)
    coeffs = (prior.coefficients(x.reshape(batch, -1).double()) - mean_c) / var_c.sqrt()
    base = torch.view_as_real(enc.symbols).reshape(batch, -1)
    with torch.no_grad():
        real = encoder(coeffs.float(), torch.full((batch,), snr_db), enc.alpha.float(), base.float())
    real = real.double()
    real = real * (math.sqrt(enc.symbols.shape[1]) / torch.linalg.vector_norm(real, dim=1)).unsqueeze(1)
    return replace(enc, symbols=torch.view_as_complex(real.reshape(batch, -1, 2).contiguous()))


def _send_analog_codec(
    x: torch.Tensor,
    prior: SeedPrior | None,
    jscc: tuple[SeedEncoderNet, SeedDecoderNet] | None,
    uses: int,
    power: str,
    channel: ChannelConfig,
    generator: torch.Generator,
) -> SeedResult:
    batch = x.shape[0]
    n0 = channel.noise_variance
    enc = encode_analog(x, prior, uses, n0 / 2.0)
    if jscc is not None and prior is not None:
        enc = learned_symbols(enc, x, prior, jscc[0], -10.0 * math.log10(n0) if n0 > 0 else math.inf)
    if power == "waterfilling" and channel.is_fading:
        wf = transmit_waterfilled(enc.symbols, channel, generator)
        rx, noise_c = wf.unbiased, wf.noise_var
        used, pilots = wf.channel_uses, wf.pilot_symbols
    else:
        tx = transmit_symbols(enc.symbols, channel, generator)
        rx, noise_c = tx.unbiased, tx.noise_var.expand(tx.symbols.shape)
        used, pilots = tx.channel_uses, tx.pilot_symbols
    received = torch.view_as_real(rx).reshape(batch, -1)
    noise_r = (noise_c.double() / 2.0).unsqueeze(-1).expand(batch, uses, 2).reshape(batch, -1)
    if prior is None:
        numel = x[0].numel()
        var = (0.5 / enc.scale.square()).unsqueeze(1).expand(batch, numel).contiguous()
        est, mse = decode_linear(enc, received, noise_r, var)
        flat, resid = est, mse.mean(1)
        unbiased, unbiased_var = None, None
    else:
        mean_c, var_c = prior.moments(enc.alpha)
        est, mse = decode_linear(enc, received, noise_r, var_c)
        # the linear MMSE estimate with its shrinkage undone: "seed + noise", for receiver-side denoising
        shrink = (1.0 - mse / var_c).clamp_min(1e-3)
        got = shrink > 1e-3
        inflate = torch.where(got, 1.0 / shrink - 1.0, torch.zeros_like(est))
        unbiased_var = torch.where(got, mse / shrink, var_c).mean(1).float()
        linear_est = est
        if jscc is not None:
            est, mse = _refine(jscc[1], est, mse, var_c, enc.alpha)
        # learned: its estimate plus the same inflation of the linear one (equal to linear's at init)
        unbiased = prior.latents(torch.where(got, est + inflate * linear_est, torch.zeros_like(est)) + mean_c)
        resid = mse.mean(1)
        flat = prior.latents(est + mean_c)
    finite = noise_c[torch.isfinite(noise_c)].double()
    snr = None if channel.kind == "none" or finite.numel() == 0 else float(-10 * torch.log10(finite.mean()))
    return SeedResult(
        estimate=flat.reshape(x.shape).to(x.dtype),
        noise_var=resid.float(),
        channel_uses=used,
        pilot_symbols=pilots,
        payload_bits=batch * SIDE_INFO_BITS_PER_ITEM * (1 if prior is None else 2),
        effective_snr_db=snr,
        unbiased=None if unbiased is None else unbiased.reshape(x.shape).to(x.dtype),
        unbiased_var=unbiased_var,
    )


@torch.no_grad()
def _refine(
    decoder: SeedDecoderNet, est: torch.Tensor, mse: torch.Tensor, var: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The learned decoder: coefficients ``[B, n]`` and residual MSE per component ``[B, n]``.

    The decoder predicts one residual per item (a ratio to the linear MMSE's); it is spread over the
    components in proportion to the linear MMSE's per-component error, capped at the prior variance.
    """
    std = var.sqrt()
    delta, log_ratio = decoder((est / std).float(), (mse / var).float(), alpha.float())
    ratio = log_ratio.double().exp().unsqueeze(1)
    return est + std * delta.double(), torch.minimum(mse * ratio, var)


def uses_seed_codec(
    codec: str, uses: int | None, power: str, mode: str, numel: int, whole: int | None = None
) -> bool:
    """Whether a seed of ``numel`` values goes through :func:`send_seed` (else the legacy paths).

    ``identity`` with uniform power is today's analog seed (or, with ``mode == "digital"``, the
    ``seed_bits`` quantiser), which does not go through :func:`send_seed`: its budget is checked here
    (``whole``: the values of the whole latent when the seed is a tile of it, :func:`whole_numel`);
    a seed that does is checked by :func:`send_seed`, once.

    Raises:
        MegenError: a bad budget, or an analog codec asked for on a digital seed transmission.
    """
    codec_path = codec == "digital" or (mode == "analog" and (codec != "identity" or power != "uniform"))
    if not codec_path:
        check_budget(codec, numel, uses, whole)  # send_seed checks the others' once, when it runs
    if codec in ("linear", "learned") and mode == "digital":
        raise MegenError(f"seed codec {codec} is analog; use --transmission analog (or --seed-codec digital)")
    return codec_path
