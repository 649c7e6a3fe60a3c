"""Link-level Monte-Carlo: BER and BLER of random bits over a configured link (``megen link``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from megen.errors import MegenError
from megen.link.channels import ChannelConfig, snr_db_to_ebno_db
from megen.link.digital import transmit_bits
from megen.link.modulation import Mcs

MAX_SIM_BITS = 50_000_000


@dataclass(frozen=True)
class LinkStats:
    """BER/BLER of one simulated SNR point.

    Attributes:
        snr_db: Es/N0 per complex symbol, dB.
        ebno_db: Eb/N0 per information bit, dB.
        ber: Information-bit error rate.
        bler: Code-block error rate (CRC failures; uncoded links use CRC frames of up to 8448 bits).
        bit_errors: Wrong information bits.
        info_bits: Information bits sent.
        block_errors: Failed code blocks.
        blocks: Code blocks sent.
        channel_uses: Complex channel uses (data + pilots).
        channel: Channel kind.
        modulation: Modulation name.
        code_rate: LDPC code rate, ``None`` if uncoded.
    """

    snr_db: float
    ebno_db: float
    ber: float
    bler: float
    bit_errors: int
    info_bits: int
    block_errors: int
    blocks: int
    channel_uses: int
    channel: str
    modulation: str
    code_rate: float | None

    def to_json(self) -> dict[str, Any]:
        """The ``megen link --json`` record."""
        return {
            "ber": self.ber,
            "bler": self.bler,
            "channel_uses": self.channel_uses,
            "info_bits": self.info_bits,
            "snr_db": self.snr_db,
            "channel": self.channel,
            "ebno_db": self.ebno_db,
            "bit_errors": self.bit_errors,
            "block_errors": self.block_errors,
            "blocks": self.blocks,
            "modulation": self.modulation,
            "code_rate": self.code_rate,
        }


def simulate_link(
    mcs: Mcs,
    channel: ChannelConfig,
    num_bits: int,
    generator: torch.Generator,
    *,
    device: str | torch.device = "cpu",
) -> LinkStats:
    """Send ``num_bits`` uniformly random bits as one transport block and count errors.

    Args:
        mcs: Modulation and coding scheme.
        channel: Channel (its ``snr_db`` is the simulated point).
        num_bits: Information bits, ``1..MAX_SIM_BITS``.
        generator: Source of randomness (payload bits and channel), drawn on its own device.
        device: Where the link chain runs (default the CPU; see :func:`~megen.link.digital.transmit_bits`).

    Returns:
        :class:`LinkStats`.
    """
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or num_bits < 1:
        raise MegenError(f"number of bits must be a positive integer (got {num_bits!r})")
    if num_bits > MAX_SIM_BITS:
        raise MegenError(f"number of bits must be at most {MAX_SIM_BITS}, got {num_bits}")
    bits = torch.randint(0, 2, (num_bits,), generator=generator, dtype=torch.uint8, device=generator.device)
    result = transmit_bits([bits], mcs, channel, generator, device=device)[0]
    bits = bits.cpu()
    bit_errors = int((result.bits != bits).sum())
    rate = mcs.code_rate if mcs.code_rate is not None else 1.0
    return LinkStats(
        snr_db=channel.snr_db,
        ebno_db=snr_db_to_ebno_db(channel.snr_db, mcs.bits_per_symbol, rate),
        ber=bit_errors / num_bits,
        bler=result.block_errors / result.num_blocks,
        bit_errors=bit_errors,
        info_bits=num_bits,
        block_errors=result.block_errors,
        blocks=result.num_blocks,
        channel_uses=result.channel_uses,
        channel=channel.kind,
        modulation=mcs.modulation,
        code_rate=mcs.code_rate,
    )


def plot_sweep(stats: Sequence[LinkStats], path: Path, title: str | None = None) -> None:
    """Write a BER/BLER-vs-SNR figure (PNG, PDF or SVG by extension); overlays the uncoded closed form.

    Zero error rates are drawn at half a count (``0.5 / trials``) with hollow markers, so the y axis
    stays logarithmic.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from megen.link.theory import ber_awgn, ber_bpsk_rayleigh

    if not stats:
        raise MegenError("nothing to plot")
    snr = [s.snr_db for s in stats]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    _plot_rate(ax, snr, [s.ber for s in stats], [s.info_bits for s in stats], "BER", "o-", "C0")
    _plot_rate(ax, snr, [s.bler for s in stats], [s.blocks for s in stats], "BLER", "s--", "C1")
    first = stats[0]
    if len(snr) > 1:
        fine = [snr[0] + i * (snr[-1] - snr[0]) / 200 for i in range(201)]
        theory = None
        if first.channel == "awgn":
            theory = [ber_awgn(first.modulation, s) for s in fine]
            label = f"uncoded {first.modulation} AWGN (theory)"
        elif first.channel == "rayleigh" and first.modulation == "bpsk":
            theory = [ber_bpsk_rayleigh(s) for s in fine]
            label = "uncoded BPSK Rayleigh (theory)"
        if theory is not None:
            ax.semilogy(fine, theory, "k:", label=label)
    rate = "uncoded" if first.code_rate is None else f"LDPC r={first.code_rate:.3g}"
    ax.set_title(title or f"{first.modulation.upper()} {rate}, {first.channel}")
    ax.set_xlabel("SNR Es/N0 per complex symbol [dB]")
    ax.set_ylabel("error rate")
    ax.set_ylim(bottom=max(1e-7, min(0.5 / max(s.info_bits, 1) for s in stats) / 2), top=1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _plot_rate(
    ax: Any, snr: list[float], rates: list[float], trials: list[int], label: str, style: str, color: str
) -> None:
    shown = [r if r > 0 else 0.5 / max(t, 1) for r, t in zip(rates, trials, strict=True)]
    ax.semilogy(snr, shown, style, color=color, label=label, markerfacecolor=color)
    zeros = [(s, v) for s, v, r in zip(snr, shown, rates, strict=True) if r == 0]
    if zeros:
        ax.semilogy(
            [z[0] for z in zeros],
            [z[1] for z in zeros],
            style[0],
            color=color,
            markerfacecolor="white",
            label=f"{label}: no errors (drawn at 0.5/N)",
        )
