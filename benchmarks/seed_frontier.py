"""The MEG frontier figure and table of the seed codecs (docs/seed_codecs.md).

Reads results databases made by ``megen sweep --config benchmarks/seed_frontier.toml`` and draws
fidelity PSNR (UIEG against the unsplit ES pipeline) against channel uses per image, one panel per
SNR, the seed codecs as curves (their budgets as points), the centralized baseline's points beside and
the ``local`` level as a line. Prints a Markdown table of the means with 95% confidence half-widths.

Usage:
    python benchmarks/seed_frontier.py --db runs/seed_frontier.sqlite --out docs/images/seed_frontier.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from megen.store import ResultsStore

CODEC_STYLE = {"identity": "o", "linear": "s", "learned": "^", "digital": "D"}


def summary(dbs: list[Path]):
    """Mean fidelity PSNR, its 95% half-width and mean uses per (protocol, codec, uses, snr, quality)."""
    import pandas as pd

    frames = []
    for db in dbs:
        with ResultsStore.open(db) as store:
            frames.append(store.frame())
    df = pd.concat(frames, ignore_index=True)
    df["codec"] = df["cfg_seed_codec"].fillna("identity")
    df["budget"] = df["cfg_seed_uses"].fillna(128)
    keys = ["protocol", "codec", "budget", "snr_db", "cfg_image_quality"]
    g = df.groupby(keys, dropna=False)
    out = g.agg(
        psnr=("psnr_fidelity_db", "mean"),
        sd=("psnr_fidelity_db", "std"),
        n=("psnr_fidelity_db", "count"),
        uses=("uses_total", "mean"),
    ).reset_index()
    out["ci95"] = 1.96 * out["sd"] / out["n"].map(math.sqrt)
    return out


def plot(table, out: Path) -> None:
    """The frontier figure: a panel per SNR, codecs as curves, central points, the local line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = sorted(s for s in table["snr_db"].dropna().unique() if math.isfinite(s))
    local = table[table["protocol"] == "local"]["psnr"]
    fig, axes = plt.subplots(1, len(snrs), figsize=(3.2 * len(snrs), 3.4), sharey=True)
    for ax, snr in zip(axes, snrs, strict=True):
        at = table[table["snr_db"] == snr]
        for codec, marker in CODEC_STYLE.items():
            pts = at[(at["protocol"] == "UIEG") & (at["codec"] == codec)].sort_values("uses")
            if len(pts):
                ax.errorbar(pts["uses"], pts["psnr"], yerr=pts["ci95"], marker=marker, label=f"UIEG {codec}")
        cen = at[at["protocol"] == "central"]
        if len(cen):
            ax.errorbar(cen["uses"], cen["psnr"], yerr=cen["ci95"], fmt="kx", label="central (JPEG)")
        if len(local):
            ax.axhline(float(local.iloc[0]), color="grey", ls="--", label="local")
        ax.set_xscale("log")
        ax.set_title(f"AWGN {snr:g} dB")
        ax.set_xlabel("channel uses per image")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fidelity PSNR (dB)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def markdown(table) -> str:
    """The table of UIEG means per codec and budget (columns: SNRs)."""
    snrs = sorted(s for s in table["snr_db"].dropna().unique() if math.isfinite(s))
    lines = ["| protocol | codec | uses | " + " | ".join(f"{s:g} dB" for s in snrs) + " |"]
    lines.append("|---" * (3 + len(snrs)) + "|")
    rows = table[table["protocol"].isin(["UIEG", "central"])]
    for (proto, codec, budget, q), grp in rows.groupby(
        ["protocol", "codec", "budget", "cfg_image_quality"], dropna=False
    ):
        label = f"q{int(q)}" if proto == "central" else codec
        uses = "-" if proto == "central" else str(int(budget))
        cells = []
        for s in snrs:
            hit = grp[grp["snr_db"] == s]
            cells.append("" if hit.empty else f"{hit['psnr'].iloc[0]:.1f} ± {hit['ci95'].iloc[0]:.1f}")
        lines.append(f"| {proto} | {label} | {uses} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, nargs="+", required=True, help="one or more results databases")
    parser.add_argument("--out", type=Path, default=Path("docs/images/seed_frontier.png"))
    args = parser.parse_args()
    table = summary(args.db)
    plot(table, args.out)
    print(markdown(table))
    local = table[table["protocol"] == "local"]
    if len(local):
        print(
            f"\nlocal: {local['psnr'].iloc[0]:.1f} ± {local['ci95'].iloc[0]:.1f} dB (n={int(local['n'].iloc[0])})"
        )


if __name__ == "__main__":
    main()
