"""The ``digital`` seed codec: quantised KLT coefficients, entropy-coded with the learned prior.

Each item's centred KLT coefficients (:mod:`megen.link.seed_prior`) are quantised with a uniform
step ``Delta_k = BASE_STEP * 2 ** (-k / 4)`` and range-coded (``constriction``) with a quantised
Gaussian per component whose standard deviation is the prior's, at the seed's signal level. The
finest step whose transport block fits the budget (``uses`` data symbols at the link's MCS, with
LDPC and CRC overheads) is chosen per item, so the codec fills the budget as far as its steps allow.
The transport block (:func:`~megen.link.digital.send_bytes_batch`) carries a 5-byte header: ``k``
(uint8) and the signal level (float32). It goes with the link's HARQ like every other transport block:
the budget is its first transmission's, and each retransmission (only while its CRC fails, up to
``max_transmissions``) costs the same uses again, counted. A block that fails every transmission
leaves the receiver with the prior mean (a per-item outage).

The receiver's residual error per value is estimated as ``mean_i min(Delta^2 / 12, var_i)`` after a
decoded block, the prior variance after a failed one.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from megen.link import ldpc
from megen.link.channels import ChannelConfig
from megen.link.digital import send_bytes_batch
from megen.link.harq import NO_HARQ, Harq
from megen.link.modulation import Mcs
from megen.link.seed_prior import SeedPrior

BASE_STEP = 4.0
STEP_LEVELS = 64
HEADER_BYTES = 5
_LENGTH_BYTES = 4
_RANGE = 1 << 17
_MIN_STD = 0.1


def _model():
    import constriction

    return constriction.stream.model.QuantizedGaussian(-_RANGE, _RANGE)


def step_size(level: int) -> float:
    """Quantiser step of level ``k`` (latent units)."""
    return BASE_STEP * 2.0 ** (-level / 4.0)


def encode_coefficients(centred: np.ndarray, std: np.ndarray, level: int) -> bytes:
    """Range-code centred coefficients ``[n]`` at step level ``level`` with Gaussian priors ``std [n]``."""
    import constriction

    step = step_size(level)
    q = np.clip(np.rint(centred / step), -_RANGE, _RANGE).astype(np.int32)
    coder = constriction.stream.queue.RangeEncoder()
    coder.encode(q, _model(), np.zeros_like(std), np.maximum(std / step, _MIN_STD))
    return coder.get_compressed().astype("<u4").tobytes()


def decode_coefficients(payload: bytes, std: np.ndarray, level: int) -> np.ndarray:
    """Inverse of :func:`encode_coefficients`: the dequantised centred coefficients ``[n]``."""
    import constriction

    step = step_size(level)
    words = np.frombuffer(payload[: len(payload) // 4 * 4], dtype="<u4").astype(np.uint32)
    coder = constriction.stream.queue.RangeDecoder(words)
    q = coder.decode(_model(), np.zeros_like(std), np.maximum(std / step, _MIN_STD))
    return np.asarray(q, dtype=np.float64) * step


def payload_capacity(uses: int, mcs: Mcs) -> int:
    """Largest payload (bytes) whose transport block takes at most ``uses`` data symbols (0: none)."""

    def symbols(payload: int) -> int:
        bits = 8 * (_LENGTH_BYTES + HEADER_BYTES + payload)
        return ldpc.plan_blocks(bits, mcs.bits_per_symbol, mcs.code_rate).num_symbols

    if symbols(1) > uses:
        return 0
    lo, hi = 1, max(2, uses * mcs.bits_per_symbol // 8 + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if symbols(mid) <= uses else (lo, mid - 1)
    return lo


def _best_level(centred: np.ndarray, std: np.ndarray, capacity: int) -> tuple[int, bytes] | None:
    """The finest step level whose code fits ``capacity`` bytes, with its code (``None``: none fits)."""
    best = None
    lo, hi = 0, STEP_LEVELS - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        code = encode_coefficients(centred, std, mid)
        if 0 < len(code) <= capacity:
            best, lo = (mid, code), mid + 1
        else:
            hi = mid - 1
    return best


def send_seed_digital(
    x: torch.Tensor,
    prior: SeedPrior,
    uses: int,
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    harq: Harq = NO_HARQ,
):
    """Send seeds ``x [B, ...]`` digitally in at most ``uses`` data symbols per item and transmission.

    ``harq``: the link's retransmission policy (default one transmission); channel uses count every
    transmission.

    Returns:
        :class:`~megen.link.seed_codecs.SeedResult`.
    """
    from megen.link.seed_codecs import SeedResult

    batch = x.shape[0]
    coeffs = prior.coefficients(x.reshape(batch, -1))
    alpha = prior.signal_level(coeffs)
    mean_c, var_c = prior.moments(alpha)
    std = var_c.sqrt().numpy()
    capacity = payload_capacity(uses, mcs)
    chosen = [
        _best_level((coeffs - mean_c)[b].numpy(), std[b], capacity) if capacity else None
        for b in range(batch)
    ]
    sent = [b for b in range(batch) if chosen[b] is not None]
    est, resid = prior.moments(torch.ones(batch, dtype=torch.float64))  # what a lost block leaves
    resid = resid.mean(1)
    uses_total = pilots = bits = failures = transmissions = 0
    item_ok = [True] * batch
    if sent:
        payloads = [chosen[b][1] for b in sent]  # type: ignore[index]
        headers = [struct.pack(">Bf", chosen[b][0], float(alpha[b])) for b in sent]  # type: ignore[index]
        results = send_bytes_batch(payloads, mcs, channel, generator, headers=headers, harq=harq)
        for b, r in zip(sent, results, strict=True):
            uses_total += r.channel_uses
            pilots += r.pilot_symbols
            bits += r.info_bits + r.header_bits
            failures += r.block_errors
            transmissions += r.transmissions
            item_ok[b] = bool(r.ok)
            level, a = struct.unpack(">Bf", r.header_received)
            if not r.header_ok or not 0.0 <= a <= 1.0 or level >= STEP_LEVELS:
                continue
            m_b, v_b = prior.moments(torch.tensor([a], dtype=torch.float64))
            est[b], resid[b] = m_b[0], v_b[0].mean()
            if not r.ok:
                continue
            values = decode_coefficients(r.bytes_received, v_b[0].sqrt().numpy(), level)
            est[b] = m_b[0] + torch.from_numpy(values)
            resid[b] = v_b[0].clamp_max(step_size(level) ** 2 / 12.0).mean()
    return SeedResult(
        estimate=prior.latents(est).reshape(x.shape).to(x.dtype),
        noise_var=resid.float(),
        channel_uses=uses_total,
        pilot_symbols=pilots,
        payload_bits=bits,
        effective_snr_db=None if channel.kind == "none" else channel.snr_db,
        ok=all(item_ok),
        failures=failures,
        item_ok=tuple(item_ok),
        transmissions=transmissions,
    )


__all__ = ["decode_coefficients", "encode_coefficients", "payload_capacity", "send_seed_digital", "step_size"]
