"""``megen mcs``: print the link-adaptation MCS table, or re-measure its BLER curves."""

from __future__ import annotations

from pathlib import Path

import typer

from megen.cli.common import console, echo, handle_errors, print_json
from megen.errors import MegenError


def register(app: typer.Typer) -> None:
    """Add the ``mcs`` command to the root app."""
    app.command(
        "mcs",
        help=(
            "Print the 5G NR MCS tables (38.214 qam64, qam256, qam64lowse): each entry's spectral "
            "efficiency and the SNR (Es/N0 per complex symbol) from which its first-transmission BLER "
            "stays at or below 10% on AWGN and block Rayleigh (perfect and estimated CSI), next to the "
            "Shannon SNR. --rebuild re-measures the BLER curves (tens of minutes)."
        ),
    )(mcs)


@handle_errors
def mcs(
    table: Path | None = typer.Option(None, "--table", help="BLER table JSON to read (default: packaged)."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per MCS table entry."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Re-measure the BLER curves first (minutes)."),
    blocks: int = typer.Option(40, "--blocks", help="With --rebuild: most transport blocks per SNR point."),
    seed: int = typer.Option(0, "--seed", help="With --rebuild: random seed of the measurement."),
    out: Path | None = typer.Option(
        None, "--out", help="With --rebuild: where to write (default: the packaged table)."
    ),
) -> None:
    """Print the MCS table (after re-measuring it with ``--rebuild``)."""
    from megen.link.mcs import MAX_TABLE_SEED, check_table_target, load_bler_table, table_rows

    if not rebuild and (out is not None or blocks != 40 or seed != 0):
        raise MegenError("--blocks, --seed and --out only apply with --rebuild")
    if rebuild:
        if table is not None:
            raise MegenError("give --out (where to write) with --rebuild, not --table")
        if not 1 <= blocks <= 100_000:
            raise MegenError(f"--blocks must be in 1..100000, got {blocks}")
        if not 0 <= seed <= MAX_TABLE_SEED:
            raise MegenError(f"--seed must be in 0..{MAX_TABLE_SEED}, got {seed}")
        written = _rebuild(check_table_target(out), blocks, seed)
        rows = table_rows(load_bler_table(str(written)))
    else:
        rows = table_rows(load_bler_table(None if table is None else str(table)))
    if json_output:
        for row in rows:
            print_json(row)
        return
    channels = list(rows[0]["snr_db_at_10pct_bler"])
    echo(
        f"{'entry':13s} {'modulation':10s} {'R x1024':>7s} {'bit/sym':>7s}  "
        + " ".join(f"{ch + ' [dB]':>13s}" for ch in channels)
        + f"  {'Shannon [dB]':>12s}"
    )
    for r in rows:
        thresholds = " ".join(_db(r["snr_db_at_10pct_bler"][ch]) for ch in channels)
        entry = f"{r['table']}:{r['index']}"
        echo(
            f"{entry:13s} {r['modulation']:10s} {r['code_rate_x1024']:7.1f} {r['spectral_efficiency']:7.3f}  "
            f"{thresholds}  {r['shannon_snr_db']:12.2f}"
        )


def _rebuild(target: Path, blocks: int, seed: int) -> Path:
    """Measure the BLER table single-threaded (as the stored one was) and write it to ``target``."""
    import torch

    from megen.link.mcs import build_bler_table, write_bler_table

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = build_bler_table(num_blocks=blocks, seed=seed, progress=console.print)
    finally:
        torch.set_num_threads(threads)
    written = write_bler_table(table, target)
    console.print(f"wrote {written} in {table.meta['seconds']} s")
    return written


def _db(value: float | None) -> str:
    return f"{value:13.2f}" if value is not None else f"{'n/a':>13s}"
