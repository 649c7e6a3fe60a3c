"""The digital seed codec with and without HARQ (docs/seed_codecs.md, "Digital seeds and HARQ").

Reads a database made by ``megen sweep --config benchmarks/seed_frontier_digital.toml`` and prints, per
protocol, noise placement, budget and SNR, for ``harq = ir`` (4 transmissions, the default) and
``harq = off`` (every transport block of the link, control data included, sent once): the outage
rate, the mean channel uses per image (every transmission counted) and the mean fidelity PSNR over
the images that arrived (95% half-width).

Usage:
    python benchmarks/seed_harq.py --db runs/seed_frontier_digital.sqlite [--snrs 0,10,20] [--budgets 128,512]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from seed_frontier import load  # benchmarks/ is on sys.path when this script runs

from megen.grid import parse_grid


def harq_table(df) -> str:
    """One Markdown row per (protocol, noise at, seed uses, SNR): outage, uses, PSNR with ir and off."""
    keys = ["protocol", "noise_at", "budget", "snr_db"]
    lines = [
        "| protocol | noise at | seed uses | SNR (dB) | outage ir / off | uses per image ir / off "
        "| PSNR ir / off (dB, images that arrived) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, group in df.groupby(keys):
        cells = {}
        for mode in ("ir", "off"):
            g = group[group["cfg_harq"].fillna("ir") == mode]
            if g.empty:
                cells[mode] = ("-", "-", "-")
                continue
            arrived = g.loc[g["outage"] == 0, "psnr_fidelity_db"].dropna()
            if len(arrived) > 1:
                half = 1.96 * float(arrived.std()) / math.sqrt(len(arrived))
                psnr = f"{arrived.mean():.1f} ± {half:.1f}"
            else:
                psnr = "-" if arrived.empty else f"{arrived.mean():.1f}"
            cells[mode] = (f"{g['outage'].mean():.0%}", f"{g['uses_total'].mean():.0f}", psnr)
        protocol, noise_at, budget, snr = key
        lines.append(
            f"| {protocol} | {noise_at} | {int(budget)} | {snr:g} | {cells['ir'][0]} / {cells['off'][0]} "
            f"| {cells['ir'][1]} / {cells['off'][1]} | {cells['ir'][2]} / {cells['off'][2]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, nargs="+", required=True, help="one or more results databases")
    parser.add_argument("--snrs", default="", help="comma list of SNRs (dB) to keep (default: all)")
    parser.add_argument(
        "--budgets", default="", help="comma list of seed budgets (uses) to keep (default: all)"
    )
    args = parser.parse_args()
    df = load(args.db, harq_off=True)
    df = df[df["codec"] == "digital"]
    if args.snrs:
        df = df[df["snr_db"].isin(parse_grid(args.snrs, "--snrs"))]
    if args.budgets:
        df = df[df["budget"].isin(parse_grid(args.budgets, "--budgets"))]
    print(harq_table(df))


if __name__ == "__main__":
    main()
