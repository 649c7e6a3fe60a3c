"""``megen link``: link-level BER/BLER of random bits over a configured wireless link."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from megen.cli.common import echo, handle_errors, print_json
from megen.errors import MegenError

MAX_SEED = 2**63 - 1
MAX_ABS_SNR_DB = 200.0
"""Largest |Es/N0| in dB simulated (10^(snr/10) overflows a float near 3080 dB; 200 dB is ideal already)."""
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def register(app: typer.Typer) -> None:
    """Add the ``link`` command to the root app."""
    app.command(
        "link",
        help=(
            "Simulate BER/BLER of random bits over a coded (5G LDPC) or uncoded M-QAM link. "
            "SNR is Es/N0 per complex symbol; --snr-db takes a value, a comma list or start:stop[:step] "
            "(inclusive stop; write --snr-db=-5:20:2.5 for negative starts). "
            "The link-adaptation MCS table is `megen mcs`."
        ),
    )(link)


@handle_errors
def link(
    modulation: str = typer.Option("qpsk", "--modulation", help="bpsk, qpsk, 16qam, 64qam or 256qam."),
    code_rate: float | None = typer.Option(None, "--code-rate", help="5G LDPC code rate (default 0.5)."),
    uncoded: bool = typer.Option(False, "--uncoded", help="No channel code (CRC frames only)."),
    channel: str = typer.Option("awgn", "--channel", help="awgn, rayleigh or rician."),
    snr_db: str = typer.Option("10", "--snr-db", help="Es/N0 in dB: X, X1,X2,... or start:stop[:step]."),
    bits: int = typer.Option(100_000, "--bits", help="Information bits per SNR point."),
    seed: int = typer.Option(0, "--seed", help="Random seed (each SNR point restarts from it)."),
    coherence_symbols: int = typer.Option(100, "--coherence-symbols", help="Fading block length."),
    k_factor_db: float = typer.Option(3.0, "--k-factor-db", help="Rician K factor in dB."),
    equalizer: str = typer.Option("mmse", "--equalizer", help="zf or mmse."),
    csi: str = typer.Option("perfect", "--csi", help="perfect or estimated (LS on pilots)."),
    pilots: int = typer.Option(4, "--pilots", help="Pilots per coherence block with --csi estimated."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per SNR point."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a BER/BLER-vs-SNR figure here."),
) -> None:
    """Parse options, run :func:`megen.link.simulate.simulate_link` per SNR point, print results."""
    import torch

    from megen.grid import parse_grid
    from megen.link.channels import ChannelConfig
    from megen.link.modulation import Mcs
    from megen.link.simulate import plot_sweep, simulate_link

    if channel not in ("awgn", "rayleigh", "rician"):
        raise MegenError(f"unknown channel {channel!r}; choose awgn, rayleigh or rician")
    if uncoded and code_rate is not None:
        raise MegenError("give either --code-rate or --uncoded, not both")
    if bits < 1:
        raise MegenError(f"--bits must be positive, got {bits}")
    if not 0 <= seed <= MAX_SEED:
        raise MegenError(f"--seed must be in 0..2**63-1, got {seed}")
    if plot is not None:
        _check_plot_path(plot)
    mcs = Mcs(modulation, None if uncoded else (0.5 if code_rate is None else code_rate))
    points = parse_grid(snr_db, "--snr-db")
    if any(abs(p) > MAX_ABS_SNR_DB for p in points):
        raise MegenError(f"--snr-db values must lie within +-{MAX_ABS_SNR_DB:g} dB")
    base = ChannelConfig(
        kind=channel,  # type: ignore[arg-type]
        snr_db=points[0],
        coherence_symbols=coherence_symbols,
        k_factor_db=k_factor_db,
        equalizer=equalizer,  # type: ignore[arg-type]
        csi=csi,  # type: ignore[arg-type]
        pilots_per_block=pilots,
    )
    results = []
    for point in points:
        stats = simulate_link(mcs, base.with_snr_db(point), bits, torch.Generator().manual_seed(seed))
        results.append(stats)
        if json_output:
            print_json(stats.to_json())
        else:
            echo(
                f"snr_db={stats.snr_db:7.2f}  ber={stats.ber:.3e}  bler={stats.bler:.3e} "
                f"({stats.block_errors}/{stats.blocks})  channel_uses={stats.channel_uses}  "
                f"info_bits={stats.info_bits}  {mcs.label} {channel}"
            )
    if plot is not None:
        plot_sweep(results, plot)
        if not json_output:
            echo(f"wrote {plot}")


def _check_plot_path(plot: Path) -> None:
    """Refuse a ``--plot`` target that cannot be written, before any simulation runs."""
    if plot.is_dir():
        raise MegenError(f"--plot {plot} is a folder; give a file name such as ber.png")
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise MegenError(f"--plot {plot}: give a file ending in {', '.join(PLOT_SUFFIXES)}")
    folder = plot.parent
    if not folder.is_dir():
        raise MegenError(f"--plot {plot}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (plot.exists() and not os.access(plot, os.W_OK)):
        raise MegenError(f"--plot {plot}: permission denied")
