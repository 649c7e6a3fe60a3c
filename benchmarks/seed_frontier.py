"""The MEG frontier figure and table of the seed codecs (docs/seed_codecs.md).

Reads results databases made by ``megen sweep --config benchmarks/seed_*.toml`` and draws fidelity
PSNR (against the unsplit ES pipeline) against channel uses per image, a row of panels per MEG
protocol and a panel per SNR, the seed codecs as curves (their budgets as points; solid: the
diffusion noise added at the receiver, dashed: at the sender), the centralized baseline's points
beside and the ``local`` level as a line. Prints a Markdown table of the means with 95% confidence
half-widths, the paired comparisons (same samples: same references, prompts and seeds) and the
issue's targets. Rows of the same point and sample in several databases count once.

Usage:
    python benchmarks/seed_frontier.py --db runs/seed_frontier.sqlite --out docs/images/seed_frontier.png
    python benchmarks/seed_frontier.py --db runs/seed_frontier_meg.sqlite runs/seed_paired.sqlite \
        runs/seed_targets.sqlite --out docs/images/seed_frontier_meg.png
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

from megen.grid import parse_grid
from megen.store import ResultsStore

CODEC_STYLE = {"identity": "o", "linear": "s", "learned": "^", "digital": "D"}
#: MEG protocols whose latent crosses a wireless link through a seed codec (the figure's rows).
SEED_PROTOCOLS = ("UIEG", "EIUG", "CIAG", "UIDCG", "UIDG", "DIUG")
NOISE_STYLE = {"receiver": "-", "sender": "--"}
CODEC_COLOR = {"identity": "tab:blue", "linear": "tab:orange", "learned": "tab:green", "digital": "tab:red"}


def load(dbs: list[Path], *, harq_off: bool = False):
    """The rows of the databases, with ``codec``, ``budget`` (seed uses) and ``noise_at`` columns.

    ``harq_off``: keep the rows run with ``harq = off`` (``benchmarks/seed_harq.py``'s comparison);
    the frontier leaves them out.
    """
    import pandas as pd

    frames = []
    for db in dbs:
        with ResultsStore.open(db) as store:
            frames.append(store.frame())
    df = pd.concat(frames, ignore_index=True)
    if "config_hash" in df:
        df = df.drop_duplicates(["config_hash", "sample"])
    if "cfg_harq" in df and not harq_off:
        df = df[df["cfg_harq"].fillna("ir") != "off"].copy()
    df["codec"] = df["cfg_seed_codec"].fillna("identity")
    df["budget"] = df["cfg_seed_uses"].fillna(128)
    df["noise_at"] = df["cfg_noise_at"].fillna("sender") if "cfg_noise_at" in df else "sender"
    return df


def summary(df):
    """Mean fidelity PSNR, its 95% half-width and mean uses per (protocol, codec, uses, noise, snr, quality)."""
    keys = ["protocol", "codec", "budget", "noise_at", "snr_db", "cfg_image_quality"]
    g = df.groupby(keys, dropna=False)
    out = g.agg(
        psnr=("psnr_fidelity_db", "mean"),
        sd=("psnr_fidelity_db", "std"),
        n=("psnr_fidelity_db", "count"),
        uses=("uses_total", "mean"),
        outage=("outage", "mean"),
    ).reset_index()
    out["ci95"] = 1.96 * out["sd"] / out["n"].map(math.sqrt)
    return out


def plot(table, out: Path) -> None:
    """The frontier figure: a panel per SNR, codecs as curves, central points, the local line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    snrs = sorted(s for s in table["snr_db"].dropna().unique() if math.isfinite(s))
    protos = [p for p in SEED_PROTOCOLS if (table["protocol"] == p).any()]
    local = table[table["protocol"] == "local"]["psnr"]
    fig, grid = plt.subplots(
        len(protos), len(snrs), figsize=(3.2 * len(snrs), 3.6 * len(protos) + 0.8), sharey=True, squeeze=False
    )
    for row, proto in zip(grid, protos, strict=True):
        for ax, snr in zip(row, snrs, strict=True):
            at = table[table["snr_db"] == snr]
            for (codec, marker), (noise, ls) in itertools.product(CODEC_STYLE.items(), NOISE_STYLE.items()):
                sel = (at["protocol"] == proto) & (at["codec"] == codec) & (at["noise_at"] == noise)
                pts = at[sel].sort_values("uses")
                if len(pts):
                    label = f"{codec} ({noise})"
                    ax.errorbar(
                        pts["uses"], pts["psnr"], yerr=pts["ci95"], marker=marker, ls=ls, label=label,
                        color=CODEC_COLOR[codec], alpha=0.8,
                    )  # fmt: skip
            cen = at[at["protocol"] == "central"]
            if len(cen):
                ax.errorbar(cen["uses"], cen["psnr"], yerr=cen["ci95"], fmt="kx", label="central (JPEG)")
            if len(local):
                ax.axhline(float(local.iloc[0]), color="grey", ls="--", label="local")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{proto}, AWGN {snr:g} dB")
            ax.set_xlabel("channel uses per image")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("fidelity PSNR (dB)")
    labels: dict[str, object] = {}
    for ax in grid.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labels.setdefault(label, handle)
    fig.legend(list(labels.values()), list(labels), fontsize=7, loc="lower center", ncol=5)
    fig.tight_layout(rect=(0, 0.6 / (3.6 * len(protos) + 0.8), 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def markdown(table) -> str:
    """The table of the MEG protocols' and central's means per codec and budget (columns: SNRs)."""
    snrs = sorted(s for s in table["snr_db"].dropna().unique() if math.isfinite(s))
    lines = ["| protocol | codec | noise at | seed uses | " + " | ".join(f"{s:g} dB" for s in snrs) + " |"]
    lines.append("|---" * (4 + len(snrs)) + "|")
    rows = table[table["protocol"].isin([*SEED_PROTOCOLS, "central"])]
    for (proto, codec, noise, budget, q), grp in rows.groupby(
        ["protocol", "codec", "noise_at", "budget", "cfg_image_quality"], dropna=False
    ):
        label = f"JPEG q{int(q)}" if proto == "central" else codec
        uses = "-" if proto == "central" else str(int(budget))
        noise = "-" if proto == "central" else noise
        cells = []
        for s in snrs:
            hit = grp[grp["snr_db"] == s]
            cells.append(_cell(hit))
        lines.append(f"| {proto} | {label} | {noise} | {uses} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(hit) -> str:
    """``mean ± half-width``, ``outage`` where no image arrived, with the outage rate where some did."""
    if hit.empty:
        return ""
    row = hit.iloc[0]
    if row["n"] == 0:
        return "outage"
    text = f"{row['psnr']:.1f} ± {row['ci95']:.1f}"
    return text if row["outage"] == 0 else f"{text} ({row['outage']:.0%} outage)"


def paired(df, a: dict, b: dict, by: list[str]) -> list[tuple]:
    """Paired differences ``a - b`` of fidelity PSNR (same sample index) per ``by`` group.

    ``a`` and ``b`` select rows of one MEG protocol by column values; returns
    ``(group, mean, 95% half-width, n)`` per group (the protocol first).
    """
    uieg = df[df["protocol"].isin(SEED_PROTOCOLS)]
    by = ["protocol", *by]

    def pick(sel: dict):
        rows = uieg
        for k, v in sel.items():
            rows = rows[rows[k] == v]
        return rows.set_index([*by, "sample"])["psnr_fidelity_db"]

    diff = (pick(a) - pick(b)).dropna()
    out = []
    for key, d in diff.groupby(level=list(range(len(by)))):
        half = 1.96 * float(d.std()) / math.sqrt(len(d)) if len(d) > 1 else math.nan
        out.append((key, float(d.mean()), half, len(d)))
    return out


def comparisons(df) -> str:
    """The paired comparisons the issue asks for, as Markdown lines (mean ± 95% half-width, dB)."""
    lines = []
    tests = [
        (
            "receiver - sender",
            {"noise_at": "receiver"},
            {"noise_at": "sender"},
            ["codec", "budget", "snr_db"],
        ),
        ("learned - linear", {"codec": "learned"}, {"codec": "linear"}, ["noise_at", "budget", "snr_db"]),
        ("linear - identity", {"codec": "linear"}, {"codec": "identity"}, ["noise_at", "budget", "snr_db"]),
    ]
    for name, a, b, by in tests:
        lines.append(f"\n{name} (paired, dB):")
        for key, mean, half, n in paired(df, a, b, by):
            verdict = "higher" if mean - half > 0 else "lower" if mean + half < 0 else "tie"
            lines.append(f"  {key}: {mean:+.2f} ± {half:.2f} (n={n}, {verdict})")
    return "\n".join(lines)


def paired_markdown(df) -> str:
    """The paired comparisons as a Markdown table: a row per (comparison, protocol, noise, uses), SNRs as columns."""
    snrs = sorted(s for s in df["snr_db"].dropna().unique() if math.isfinite(s))
    lines = ["| comparison | seed uses | " + " | ".join(f"{s:g} dB" for s in snrs) + " |"]
    lines.append("|---" * (2 + len(snrs)) + "|")
    tests = [
        ("learned - linear", {"codec": "learned"}, {"codec": "linear"}, ["noise_at", "budget"]),
        ("linear - identity", {"codec": "linear"}, {"codec": "identity"}, ["noise_at", "budget"]),
        ("receiver - sender", {"noise_at": "receiver"}, {"noise_at": "sender"}, ["codec", "budget"]),
    ]
    for name, a, b, by in tests:
        rows: dict[tuple, dict[float, str]] = {}
        for key, mean, half, n in paired(df, a, b, [*by, "snr_db"]):
            rows.setdefault(tuple(key[:-1]), {})[key[-1]] = f"{mean:+.2f} ± {half:.2f} (n={n})"
        for key, cells in rows.items():
            proto, which, budget = key
            label = f"{proto} {name}, {which}"
            lines.append(f"| {label} | {int(budget)} | " + " | ".join(cells.get(s, "") for s in snrs) + " |")
    return "\n".join(lines)


def targets(table) -> str:
    """Issue 13's fidelity targets: the best UIEG point within the budget, per noise placement."""
    lines = ["\ntargets:"]
    for snr, limit, goal in ((-5.0, 512, 22.0), (20.0, 64, 38.0)):
        for noise in NOISE_STYLE:
            sel = table[
                (table["protocol"] == "UIEG")
                & (table["snr_db"] == snr)
                & (table["budget"] <= limit)
                & (table["noise_at"] == noise)
            ]
            if sel.empty:
                continue
            best = sel.loc[sel["psnr"].idxmax()]
            met = "met" if best["psnr"] - best["ci95"] >= goal else "not met"
            if met == "not met" and best["psnr"] >= goal:
                met = "mean above, CI not"
            lines.append(
                f"  {snr:g} dB, >= {goal:g} dB within {limit} uses, noise at {noise}: {best['codec']} "
                f"{int(best['budget'])} uses {best['psnr']:.1f} ± {best['ci95']:.1f} dB ({met})"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, nargs="+", required=True, help="one or more results databases")
    parser.add_argument("--out", type=Path, default=Path("docs/images/seed_frontier.png"))
    parser.add_argument(
        "--samples", type=int, default=0, help="keep samples 0..N-1 of every point (0: all; a stopped sweep)"
    )
    parser.add_argument("--snrs", default="", help="comma list of SNRs (dB) to keep (default: all)")
    args = parser.parse_args()
    df = load(args.db)
    if args.snrs:
        keep = parse_grid(args.snrs, "--snrs")
        df = df[df["snr_db"].isin(keep) | ~df["protocol"].isin([*SEED_PROTOCOLS, "central"])]
    if args.samples:
        df = df[df["sample"] < args.samples]
    table = summary(df)
    plot(table, args.out)
    print(markdown(table))
    print(comparisons(df))
    print()
    print(paired_markdown(df))
    print(targets(table))
    local = table[table["protocol"] == "local"]
    if len(local):
        print(
            f"\nlocal: {local['psnr'].iloc[0]:.1f} ± {local['ci95'].iloc[0]:.1f} dB (n={int(local['n'].iloc[0])})"
        )


if __name__ == "__main__":
    main()
