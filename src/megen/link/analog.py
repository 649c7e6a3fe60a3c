"""Analog transmission of real tensors: per-item power normalisation, 2 reals per channel use.

Each batch item (e.g. one image or one latent) is flattened, zero-padded to an even length, paired into
complex symbols (element ``2i`` is the real part of symbol ``i``, element ``2i + 1`` its imaginary part)
and scaled to unit average power per complex symbol. The per-item scale is side information that the
receiver needs to undo the normalisation; it is counted as :data:`SIDE_INFO_BITS_PER_ITEM` bits (one
float32) per item and assumed to arrive intact, like the other digital header bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from megen.errors import MegenError
from megen.link.channels import ChannelConfig, transmit_symbols

SIDE_INFO_BITS_PER_ITEM = 32
"""Digital side information per item: the float32 power-normalisation scale."""


@dataclass(frozen=True)
class AnalogResult:
    """Outcome of :func:`transmit_analog`.

    Attributes:
        received: The receiver's estimate, same shape and dtype as the input ``[B, ...]``. With MMSE
            equalisation this is the (shrunk) MMSE estimate; with ZF it is unbiased.
        gain: Broadcastable to ``received.shape``: ``received = gain * (x + e)`` (1 for ZF and the ideal
            link). Shape ``[1 or B, 1, ..., 1]`` when it is the same for every element of an item
            (AWGN), else ``[B, ...]`` (fading).
        noise_var: Broadcastable to ``received.shape`` like ``gain``: variance of ``e`` per real
            element, in the tensor's own units. 0 for the ideal link.
        channel_uses: Complex channel uses of the batch: ``B * ceil(numel_per_item / 2)`` plus pilots.
        pilot_symbols: How many of ``channel_uses`` were pilots.
        side_info_bits: Digital side information (the scales), ``32 * B`` bits, not in ``channel_uses``.
        effective_snr_db: Float ``[B]``: per item ``10 log10(1 / mean noise variance per unit-power
            symbol)``; equals the channel SNR for AWGN, ``inf`` for the ideal link.
    """

    received: torch.Tensor
    gain: torch.Tensor
    noise_var: torch.Tensor
    channel_uses: int
    pilot_symbols: int
    side_info_bits: int
    effective_snr_db: torch.Tensor


def analog_channel_uses(numel_per_item: int, batch_size: int = 1) -> int:
    """Data channel uses for analog transmission: ``batch_size * ceil(numel_per_item / 2)`` (no pilots)."""
    return batch_size * math.ceil(numel_per_item / 2)


def transmit_analog(x: torch.Tensor, channel: ChannelConfig, generator: torch.Generator) -> AnalogResult:
    """Send a real tensor over the channel, one power-normalised item per batch entry.

    Args:
        x: Real floating-point tensor ``[B, ...]``, finite values. Each ``x[b]`` is normalised on its own.
        channel: Channel and receiver settings (see :mod:`megen.link.channels` for conventions).
        generator: Source of randomness.

    Returns:
        :class:`AnalogResult`.

    Example:
        >>> import torch
        >>> from megen.link.channels import ChannelConfig
        >>> from megen.link.analog import transmit_analog
        >>> x = torch.arange(6.0).reshape(2, 3)
        >>> out = transmit_analog(x, ChannelConfig(kind="none"), torch.Generator().manual_seed(0))
        >>> bool(torch.equal(out.received, x)), out.channel_uses, out.side_info_bits
        (True, 4, 64)
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise MegenError("analog transmission needs a real floating-point tensor")
    if x.dim() < 1 or x.shape[0] < 1 or x[0].numel() < 1:
        raise MegenError(f"analog transmission needs a non-empty tensor [B, ...], got shape {tuple(x.shape)}")
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    batch = x.shape[0]
    flat = x.reshape(batch, -1).to(work_dtype)
    numel = flat.shape[1]
    num_symbols = math.ceil(numel / 2)
    # sum of squares doubles as the finiteness check (NaN/inf anywhere makes it non-finite)
    scale = torch.linalg.vector_norm(flat, dim=1) / math.sqrt(num_symbols)
    if not bool(torch.isfinite(scale).all()):
        raise MegenError("tensor to transmit contains NaN or infinite (or overflowing) values")
    if numel % 2:
        flat = torch.nn.functional.pad(flat, (0, 1))
    flat = flat.contiguous()
    # An all-zero item is sent as zeros; its side information (scale 0) makes the receiver output zeros.
    inv_scale = torch.where(scale > 0, 1.0 / scale, torch.ones_like(scale))
    symbols = torch.view_as_complex((flat * inv_scale.unsqueeze(1)).view(batch, num_symbols, 2))

    tx = transmit_symbols(symbols, channel, generator)
    if channel.kind == "none":
        received = x.clone()  # the ideal link is an exact pass-through (no rounding from the scaling)
    else:
        out = tx.symbols.mul_(scale.unsqueeze(1))
        received = torch.view_as_real(out).reshape(batch, -1)[:, :numel].reshape(x.shape).to(x.dtype)

    scale_sq = scale.square().unsqueeze(1)
    return AnalogResult(
        received=received,
        gain=_per_element(tx.gain, numel, x.shape),
        noise_var=_per_element(tx.noise_var * (scale_sq / 2.0), numel, x.shape),
        channel_uses=tx.channel_uses,
        pilot_symbols=tx.pilot_symbols,
        side_info_bits=SIDE_INFO_BITS_PER_ITEM * batch,
        effective_snr_db=tx.effective_snr_db.to(torch.float32),
    )


def _per_element(per_symbol: torch.Tensor, numel: int, shape: torch.Size) -> torch.Tensor:
    """Spread a per-symbol quantity over both real values of each symbol.

    ``[B or 1, 1]`` (the same for every symbol of an item) becomes ``[B or 1, 1, ..., 1]``; ``[B, n]``
    becomes the full input shape.
    """
    rows, n_sym = per_symbol.shape
    if n_sym == 1:
        return per_symbol.reshape(rows, *([1] * (len(shape) - 1)))
    out = per_symbol.unsqueeze(-1).expand(rows, n_sym, 2).reshape(rows, 2 * n_sym)[:, :numel]
    return out.reshape(shape)
