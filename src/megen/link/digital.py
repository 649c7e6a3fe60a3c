"""Digital transmission: bits and bytes through CRC + 5G LDPC + M-QAM + channel + soft demapping.

A batch of transport blocks (one per item, sizes may differ) is sent in one go: every code block of the
batch is encoded per 5G code (base graph, lifting) in one call, all symbols go through one
:func:`~megen.link.channels.transmit_symbols` call (item ``i`` is row ``i``; rows are independent
realisations of the channel), and all code blocks that share a code are decoded in one vectorised call.

Failures are honest: a code block whose CRC fails is reported (``block_ok``), and its decoded bits are
delivered as they are (wrong), exactly what an application without retransmission would get.

Devices: the chain (CRC, LDPC, mapping, channel, demapping, decoding) runs on the link's ``device``
(default the CPU; sionna blocks are built for it). The channel draws its randomness from the caller's
generator on the generator's device (a CPU generator gives the same draws on every device), and results
come back on the CPU.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from megen.devices import resolve_device
from megen.errors import MegenError
from megen.link import ldpc
from megen.link.channels import ChannelConfig, channel_uses_for, pilot_symbols_for, transmit_symbols
from megen.link.harq import NO_HARQ, Harq
from megen.link.ldpc import Backend, BlockPlan
from megen.link.modulation import DemapMethod, Mcs, demap_llr, map_bits

LENGTH_HEADER_BITS = 32
"""Every :func:`send_bytes` transport block starts with the payload length (uint32, bytes)."""


@dataclass(frozen=True)
class TransportResult:
    """One transport block after the link.

    Attributes:
        bits: uint8 ``[L]``, the received bits (hard decisions; wrong where blocks failed).
        block_ok: bool ``[C]``, CRC check per code block.
        plan: How the block was segmented and coded.
        channel_uses: Complex channel uses of this transport block (data + pilots), all
            transmissions together.
        pilot_symbols: Pilots among ``channel_uses``.
        effective_snr_db: Post-equalisation SNR averaged over the block's symbols of every
            transmission (``10 log10(1 / mean noise_var)``).
        transmissions: Times the block was sent (HARQ; 1 without retransmission).
    """

    bits: torch.Tensor
    block_ok: torch.Tensor
    plan: BlockPlan
    channel_uses: int
    pilot_symbols: int
    effective_snr_db: float
    transmissions: int = 1

    @property
    def ok(self) -> bool:
        """True if every code block passed its CRC."""
        return bool(self.block_ok.all())

    @property
    def block_errors(self) -> int:
        """Code blocks that failed their CRC."""
        return int((~self.block_ok).sum())

    @property
    def num_blocks(self) -> int:
        """Code blocks in the transport block."""
        return int(self.block_ok.numel())


@dataclass(frozen=True)
class DigitalResult:
    """A byte payload after the link (:func:`send_bytes`).

    Attributes:
        bytes_received: The payload as decoded, same length as sent (corrupted where blocks failed).
        header_received: The caller's extra header bytes as decoded (``b""`` if none).
        ok: True if every code block passed its CRC.
        header_ok: True if the code blocks holding the header (length + extra header) passed their CRC.
        block_errors: Code blocks whose CRC failed.
        blocks: Code blocks sent.
        channel_uses: Complex channel uses (data + pilots).
        pilot_symbols: Pilots among ``channel_uses``.
        info_bits: Payload bits, ``8 * len(payload)``.
        header_bits: Header bits sent in the same transport block: the 32-bit length plus the caller's
            extra header.
        coded_bits: Bits on the air (after coding and rate matching).
        bit_errors: Wrong payload bits (simulation-side count; a real receiver does not know it).
        effective_snr_db: Post-equalisation SNR averaged over the payload's symbols.
        transmissions: Times the transport block was sent (HARQ; 1 without retransmission).
    """

    bytes_received: bytes
    header_received: bytes
    ok: bool
    header_ok: bool
    block_errors: int
    blocks: int
    channel_uses: int
    pilot_symbols: int
    info_bits: int
    header_bits: int
    coded_bits: int
    bit_errors: int
    effective_snr_db: float
    transmissions: int = 1


def transmit_bits(
    payloads: Sequence[torch.Tensor],
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    *,
    harq: Harq = NO_HARQ,
    max_iterations: int = ldpc.DEFAULT_MAX_ITERATIONS,
    decoder: Backend = "nms",
    device: str | torch.device = "cpu",
) -> list[TransportResult]:
    """Send a batch of transport blocks (bit vectors) over a coded or uncoded link, with HARQ.

    Each transmission round sends every transport block still failing (one channel call for the batch);
    the receiver adds the new LLRs to those of earlier transmissions per codeword position and decodes
    again (see :mod:`megen.link.harq`). Every round's channel uses are counted.

    Args:
        payloads: One 1-D tensor of 0/1 values per item (any integer or float dtype), each non-empty.
        mcs: Modulation and code rate (``code_rate=None`` for uncoded; CRC frames still detect errors).
        channel: Channel and receiver settings.
        generator: Source of randomness.
        harq: Retransmission policy (default: one transmission).
        max_iterations: LDPC decoder iterations (early termination per block).
        decoder: ``"nms"`` (layered normalised min-sum, default) or ``"sionna"`` (sionna's BP).
        device: Where the chain runs (:func:`megen.devices.resolve_device`); default the CPU.

    Returns:
        One :class:`TransportResult` per payload, in order (CPU tensors).
    """
    if not isinstance(mcs, Mcs):
        raise MegenError("mcs must be a megen.link.Mcs")
    if not isinstance(harq, Harq):
        raise MegenError("harq must be a megen.link.harq.Harq")
    if len(payloads) == 0:
        raise MegenError("no payloads to send")
    dev = resolve_device(device)
    tbs = [_as_bits(p).to(dev) for p in payloads]
    plans = [ldpc.plan_blocks(int(tb.numel()), mcs.bits_per_symbol, mcs.code_rate) for tb in tbs]
    blocks = [_code_blocks(tb, plan) for tb, plan in zip(tbs, plans, strict=True)]
    words = (
        _encode(blocks, plans, dev)
        if mcs.coded
        else [_frame(b, p) for b, p in zip(blocks, plans, strict=True)]
    )
    state = _HarqState.start(plans)
    active = list(range(len(tbs)))
    for attempt in range(harq.attempts):
        rv = harq.redundancy_version(attempt)
        sent = [_rate_match(words[i], plans[i], rv, mcs.coded, dev) for i in active]
        llrs, noise = _over_the_air([c for c, _ in sent], mcs, channel, generator, dev)
        for j, i in enumerate(active):
            state.receive(i, llrs[j], sent[j][1], noise[j], channel)
        if mcs.coded:
            decoded = _decode(
                [state.llr[i] for i in active], [plans[i] for i in active], mcs, max_iterations, decoder, dev
            )
        else:
            decoded = [(state.llr[i][:, : plans[i].block_bits] > 0).to(torch.uint8) for i in active]
        for i, bits in zip(active, decoded, strict=True):
            state.check(i, bits)
        active = [i for i in active if not bool(state.block_ok[i].all())]
        if not active:
            break
    return [state.result(i) for i in range(len(tbs))]


@dataclass
class _HarqState:
    """Receiver state per transport block across transmissions (combined LLRs and counters)."""

    plans: list[BlockPlan]
    llr: list[torch.Tensor]
    bits: list[torch.Tensor]
    block_ok: list[torch.Tensor]
    uses: list[int]
    pilots: list[int]
    transmissions: list[int]
    noise_sum: list[float]
    symbols: list[int]

    @classmethod
    def start(cls, plans: Sequence[BlockPlan]) -> _HarqState:
        n = len(plans)
        empty = torch.empty(0)
        return cls(
            list(plans), [empty] * n, [empty] * n, [empty] * n, [0] * n, [0] * n, [0] * n, [0.0] * n, [0] * n
        )

    def receive(
        self,
        i: int,
        llr: torch.Tensor,
        positions: torch.Tensor | None,
        noise: tuple[float, int],
        channel: ChannelConfig,
    ) -> None:
        """Combine one transmission's LLRs ``[C, E]`` (sionna sign) of transport block ``i``."""
        plan = self.plans[i]
        llr = ldpc.deinterleave(llr, plan.bits_per_symbol) if positions is not None else llr
        if positions is None:  # uncoded frames: same bits every time
            combined = llr
        else:
            code = ldpc.qc_code(plan.base_graph, plan.lifting, llr.device)
            combined = ldpc.combine_llrs(-llr, positions, code.n_ldpc)  # sionna logits -> log P0/P1
        self.llr[i] = combined if self.llr[i].numel() == 0 else self.llr[i] + combined
        num_symbols = noise[1]
        self.uses[i] += channel_uses_for(num_symbols, channel)
        self.pilots[i] += pilot_symbols_for(num_symbols, channel)
        self.transmissions[i] += 1
        self.noise_sum[i] += noise[0] * num_symbols
        self.symbols[i] += num_symbols

    def check(self, i: int, bits: torch.Tensor) -> None:
        """CRC check of transport block ``i``'s decoded ``[C, k]`` bits."""
        plan = self.plans[i]
        payload_bits = bits[:, : plan.payload_bits]
        crc = ldpc.crc24(payload_bits.to(torch.float32)).to(torch.uint8)
        self.block_ok[i] = (crc == bits[:, plan.payload_bits :]).all(dim=1).cpu()
        self.bits[i] = payload_bits.reshape(-1)[: plan.tb_bits].cpu().clone()

    def result(self, i: int) -> TransportResult:
        mean_var = self.noise_sum[i] / max(self.symbols[i], 1)
        return TransportResult(
            bits=self.bits[i],
            block_ok=self.block_ok[i],
            plan=self.plans[i],
            channel_uses=self.uses[i],
            pilot_symbols=self.pilots[i],
            effective_snr_db=math.inf if mean_var == 0 else -10.0 * math.log10(mean_var),
            transmissions=self.transmissions[i],
        )


def _rate_match(
    word: torch.Tensor, plan: BlockPlan, rv: int, coded: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Interleaved ``[C, E]`` bits of one transmission and the codeword positions sent (``None`` uncoded)."""
    if not coded:
        return word, None
    code = ldpc.qc_code(plan.base_graph, plan.lifting, device)
    positions = code.transmit_positions(plan.block_bits, plan.coded_bits, rv)
    return ldpc.interleave(word[:, positions], plan.bits_per_symbol), positions


def _over_the_air(
    coded: Sequence[torch.Tensor],
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[list[torch.Tensor], list[tuple[float, int]]]:
    """Map, send (one channel call, row ``i`` = item ``i``) and demap; LLRs ``[C, E]`` in sionna's sign.

    Returns:
        ``(llrs, noise)``: per item its LLRs and ``(mean post-equalisation noise variance, data symbols)``.
    """
    m = mcs.bits_per_symbol
    symbols = [map_bits(c.reshape(1, -1), mcs.modulation)[0] for c in coded]
    num_symbols = [int(s.numel()) for s in symbols]
    grid = torch.zeros(len(symbols), max(num_symbols), dtype=torch.complex64, device=device)
    for i, s in enumerate(symbols):
        grid[i, : s.numel()] = s
    rx = transmit_symbols(grid, channel, generator)
    method: DemapMethod = "app" if mcs.coded else "maxlog"
    noise_var = rx.noise_var.expand(grid.shape)
    if channel.noise == "estimated" and channel.kind != "none":
        noise_var = noise_var * _decision_directed_factor(rx.unbiased, noise_var, grid != 0, m)
    llr = demap_llr(rx.unbiased, noise_var, mcs.modulation, method)
    llrs = [llr[i, : n * m].reshape(c.shape) for i, (n, c) in enumerate(zip(num_symbols, coded, strict=True))]
    noise = [(float(noise_var[i, :n].to(torch.float64).mean()), n) for i, n in enumerate(num_symbols)]
    return llrs, noise


DD_RELIABLE_MARGIN = 2.0
"""Decisions count as reliable when the residual's standard deviation per real dimension is below
``1 / DD_RELIABLE_MARGIN`` of the half distance between constellation points (symbol errors ~ 5%)."""


def _decision_directed_factor(
    unbiased: torch.Tensor, noise_var: torch.Tensor, occupied: torch.Tensor, bits_per_symbol: int
) -> torch.Tensor:
    """How much larger the noise is than the receiver's estimate says, from hard decisions; >= 1.

    The receiver slices each unbiased symbol to the nearest constellation point and measures the
    residual, normalised by the estimated post-equalisation variance: ``c = mean |y - x_hat|^2 /
    noise_var`` per item over its occupied symbols. Decisions are reliable at high SNR, where the
    estimate from the received energy (see :mod:`megen.link.channels`) has an error of the order of
    ``sqrt(var|x|^2 / n)`` that can exceed ``N0`` for 64/256-QAM (and is then floored, giving
    saturated LLRs); at low SNR wrong decisions make ``c`` too small and the energy estimate is the
    accurate one. So the receiver trusts the decisions when the noise they show is small against the
    constellation (per real dimension, standard deviation below half the distance to the decision
    boundary: :data:`DD_RELIABLE_MARGIN`) and returns ``c``; otherwise it keeps the larger of the two
    estimates, ``max(c, 1)``. Real ``[B, 1]``.
    """
    y = unbiased.to(torch.complex64)
    half_spacing = 1.0
    if bits_per_symbol == 1:
        x_hat = torch.complex(torch.sign(y.real) + (y.real == 0).to(y.real.dtype), torch.zeros_like(y.real))
    else:
        levels = 2 ** (bits_per_symbol // 2)
        half_spacing = math.sqrt(3.0 / (2.0 * (levels * levels - 1)))

        def slice_axis(v: torch.Tensor) -> torch.Tensor:
            k = torch.round((v / half_spacing + (levels - 1)) / 2).clamp(0, levels - 1)
            return (2 * k - (levels - 1)) * half_spacing

        x_hat = torch.complex(slice_axis(y.real), slice_axis(y.imag))
    residual = (y - x_hat).abs().square()
    occ = occupied.to(residual.dtype)
    count = occ.sum(dim=1, keepdim=True).clamp_min(1.0)
    c = (residual / noise_var.clamp_min(1e-12) * occ).sum(dim=1, keepdim=True) / count
    per_dim_std = ((residual * occ).sum(dim=1, keepdim=True) / count / 2).sqrt()
    reliable = per_dim_std * DD_RELIABLE_MARGIN < half_spacing
    return torch.where(reliable, c.clamp_min(1e-3), c.clamp_min(1.0))


def send_bytes(
    payload: bytes,
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    header: bytes = b"",
    *,
    harq: Harq = NO_HARQ,
    device: str | torch.device = "cpu",
) -> DigitalResult:
    """Send one byte payload; see :func:`send_bytes_batch`."""
    return send_bytes_batch([payload], mcs, channel, generator, headers=[header], harq=harq, device=device)[0]


def send_bytes_batch(
    payloads: Sequence[bytes],
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    headers: Sequence[bytes] | None = None,
    *,
    harq: Harq = NO_HARQ,
    device: str | torch.device = "cpu",
) -> list[DigitalResult]:
    """Send byte payloads, one transport block each: ``[length uint32 | header | payload]``.

    The length field and the optional per-item ``headers`` (e.g. a quantiser's scale and offset) travel
    in the same coded transport block as the payload, so they cost channel uses and can be corrupted
    like the payload; they are reported as ``header_bits``. The receiver is assumed to know the
    transport-block size (as from a 5G scheduling grant), so a corrupted length field cannot
    desynchronise it: the failure shows up as ``ok=False``.

    Args:
        payloads: Non-empty byte strings, one per item.
        mcs: Modulation and coding scheme.
        channel: Channel and receiver settings.
        generator: Source of randomness.
        headers: Optional extra header bytes per item (same length as ``payloads``).
        harq: Retransmission policy (default: one transmission); channel uses count every transmission.
        device: Where the link chain runs (default the CPU); see :func:`transmit_bits`.

    Returns:
        One :class:`DigitalResult` per payload.

    Example:
        >>> import torch
        >>> from megen.link.channels import ChannelConfig
        >>> from megen.link.modulation import Mcs
        >>> from megen.link.digital import send_bytes
        >>> r = send_bytes(b"hello", Mcs("qpsk", 0.5), ChannelConfig(kind="none"), torch.Generator())
        >>> r.bytes_received, r.ok, r.info_bits, r.header_bits
        (b'hello', True, 40, 32)
    """
    if headers is None:
        headers = [b""] * len(payloads)
    if len(headers) != len(payloads):
        raise MegenError("headers must have one entry per payload")
    frames: list[torch.Tensor] = []
    for payload, header in zip(payloads, headers, strict=True):
        if not isinstance(payload, bytes | bytearray) or len(payload) == 0:
            raise MegenError("payload must be non-empty bytes")
        if not isinstance(header, bytes | bytearray):
            raise MegenError("header must be bytes")
        packed = struct.pack(">I", len(payload)) + bytes(header) + bytes(payload)
        frames.append(torch.from_numpy(np.unpackbits(np.frombuffer(packed, dtype=np.uint8))))
    results = transmit_bits(frames, mcs, channel, generator, harq=harq, device=device)
    out = []
    for payload, header, frame, res in zip(payloads, headers, frames, results, strict=True):
        received = np.packbits(res.bits.numpy()).tobytes()
        start = 4 + len(header)
        header_blocks = math.ceil(8 * start / res.plan.payload_bits)
        bit_errors = int((res.bits[8 * start :] != frame[8 * start :]).sum())
        out.append(
            DigitalResult(
                bytes_received=received[start:],
                header_received=received[4:start],
                ok=res.ok,
                header_ok=bool(res.block_ok[:header_blocks].all()),
                block_errors=res.block_errors,
                blocks=res.num_blocks,
                channel_uses=res.channel_uses,
                pilot_symbols=res.pilot_symbols,
                info_bits=8 * len(payload),
                header_bits=8 * start,
                coded_bits=res.plan.total_coded_bits,
                bit_errors=bit_errors,
                effective_snr_db=res.effective_snr_db,
                transmissions=res.transmissions,
            )
        )
    return out


def _as_bits(payload: torch.Tensor) -> torch.Tensor:
    if not isinstance(payload, torch.Tensor) or payload.dim() != 1:
        raise MegenError("each payload must be a 1-D tensor of bits")
    if payload.numel() == 0:
        raise MegenError("payload is empty")
    bits = payload.detach().cpu()
    if bits.is_floating_point() or bits.is_complex():
        if not bool(((bits == 0) | (bits == 1)).all()):
            raise MegenError("payload bits must be 0 or 1")
    elif bool(((bits < 0) | (bits > 1)).any()):
        raise MegenError("payload bits must be 0 or 1")
    return bits.to(torch.uint8)


def _code_blocks(tb: torch.Tensor, plan: BlockPlan) -> torch.Tensor:
    """``[C, k]`` float32: payload (zero-padded) and CRC24A per code block."""
    padded = torch.nn.functional.pad(
        tb.to(torch.float32), (0, plan.num_blocks * plan.payload_bits - plan.tb_bits)
    )
    payload = padded.view(plan.num_blocks, plan.payload_bits)
    return torch.cat([payload, ldpc.crc24(payload)], dim=1)


def _frame(blocks: torch.Tensor, plan: BlockPlan) -> torch.Tensor:
    """Uncoded: each frame zero-padded to ``E`` bits, ``[C, E]``."""
    return torch.nn.functional.pad(blocks, (0, plan.coded_bits - plan.block_bits))


def _families(plans: Sequence[BlockPlan]) -> dict[tuple[str, int], list[int]]:
    groups: dict[tuple[str, int], list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault((plan.base_graph, plan.lifting), []).append(i)
    return groups


def _encode(
    blocks: Sequence[torch.Tensor], plans: Sequence[BlockPlan], device: torch.device
) -> list[torch.Tensor]:
    """Full codewords per transport block, ``[C, n_ldpc]`` float32, one encoder call per code."""
    coded: list[torch.Tensor] = [torch.empty(0)] * len(blocks)
    for (base_graph, z), members in _families(plans).items():
        code = ldpc.qc_code(base_graph, z, device)
        stacked = torch.cat(
            [torch.nn.functional.pad(blocks[i], (0, code.k_enc - plans[i].block_bits)) for i in members]
        )
        full = code.encode(stacked)
        row = 0
        for i in members:
            coded[i] = full[row : row + plans[i].num_blocks]
            row += plans[i].num_blocks
    return coded


def _decode(
    llr_full: Sequence[torch.Tensor],
    plans: Sequence[BlockPlan],
    mcs: Mcs,
    max_iterations: int,
    backend: Backend,
    device: torch.device,
) -> list[torch.Tensor]:
    """Decoded ``[C, k]`` uint8 per transport block from combined ``[C, n_ldpc]`` LLRs; one call per code.

    The decoder only sees the codeword columns up to the last one ever received (so high-rate blocks
    skip the unused extension-parity layers).
    """
    info: list[torch.Tensor] = [torch.empty(0)] * len(llr_full)
    for (base_graph, z), members in _families(plans).items():
        code = ldpc.qc_code(base_graph, z, device)
        stacked = torch.cat([llr_full[i] for i in members])
        received = (stacked != 0).any(dim=0).nonzero()
        width = int(received.max()) + 1 if received.numel() else code.k_ldpc
        k = torch.cat(
            [torch.full((plans[i].num_blocks,), plans[i].block_bits, dtype=torch.int64) for i in members]
        )
        bits, _ = code.decode(
            stacked[:, :width], k, max_iterations, backend, scale=ldpc.nms_scale(float(mcs.code_rate or 1.0))
        )
        row = 0
        for i in members:
            info[i] = bits[row : row + plans[i].num_blocks, : plans[i].block_bits]
            row += plans[i].num_blocks
    return info
