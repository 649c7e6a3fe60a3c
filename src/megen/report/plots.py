"""``megen plot``: the case study's figures from a results database (matplotlib, Agg, PNG and PDF).

Figures (each written as ``<name>.png`` and ``<name>.pdf``):

* ``quality_vs_snr``: fidelity PSNR/SSIM and prompt accuracy against SNR, one line per protocol
  (series, ``[UE]`` or ``[ES1]``: where its image lands), one column per channel (AWGN, Rayleigh
  ...), shaded 95% confidence bands; ``local`` (no link) as a dashed horizontal line.
* ``channel_uses``: channel uses per image of each protocol at one SNR, stacked uplink / downlink /
  backhaul, next to the baseline variant of its destination (codec, quality, MCS) that reaches the
  same fidelity PSNR with the fewest channel uses (hatched; "n/r" when none does), the capacity bound
  for that variant's file (tick) and the digital-latent point (grey).
* ``costs``: busy time and energy per image of each protocol, stacked by node and link, with the
  end-to-end (critical path) latency as a marker.
* ``image_grid``: rows protocols, columns SNRs (one channel), for the first samples, like the paper's
  figure; the reference image and the prompt head the grid.
* ``frontier`` / ``frontier_es``: fidelity PSNR against channel uses per SNR for the protocols whose
  image lands at the UE / at an ES (markers) against every variant of that destination's baselines
  (line through their Pareto front) and each variant's file at capacity.

Figures use the cells tagged ``main`` (all cells when no tag is ``main``), except ``frontier`` which
uses every cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from megen.analysis import aggregate, equal_quality
from megen.analysis.cells import BASELINE_PROTOCOLS, BASELINES, NO_LINK
from megen.errors import MegenError
from megen.files import WriteError, writable_folder, write_errors
from megen.link.theory import capacity_channel_uses
from megen.report.markdown import lands_at
from megen.store import ResultsStore

QUALITY_PANELS = (
    ("psnr_fidelity_db", "fidelity PSNR (dB)"),
    ("ssim_fidelity", "fidelity SSIM"),
    ("prompt_match", "prompt accuracy"),
)
CHANNEL_ORDER = ("awgn", "rayleigh", "rician")
FIGURES = ("quality_vs_snr", "channel_uses", "costs", "image_grid", "frontier", "frontier_es")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        with write_errors(p, "figure"):
            fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(p)
    _plt().close(fig)
    return paths


def main_cells(agg):
    """Cells tagged ``main`` (all cells when none is)."""
    tagged = agg[agg["tags"].str.split(",").apply(lambda t: "main" in t)]
    return tagged if not tagged.empty else agg


def _styles(labels: Sequence[str]) -> dict[str, tuple[tuple, str]]:
    """A distinct (colour, marker) per label: 10 colours x 7 markers."""
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    markers = "osD^vPX"
    return {lab: (cmap(i % 10), markers[(i // 10) % len(markers)]) for i, lab in enumerate(labels)}


def _save_with_legend(fig, axes, out: Path, name: str, *, fontsize: int):
    """One legend below all panels (entries gathered from every axis), then save as PNG and PDF."""
    handles, names = _legend_entries(axes)
    fig.legend(
        handles,
        names,
        loc="upper center",
        ncol=min(4, len(names)),
        fontsize=fontsize,
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.tight_layout()
    return _save(fig, out, name)


def _legend_entries(axes) -> tuple[list, list[str]]:
    """Handles and labels of every axis, each label once."""
    seen: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(name, h)
    return list(seen.values()), list(seen)


def _colors(labels: Sequence[str]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _channels(agg) -> list[str]:
    present = [c for c in agg["channel"].unique() if c != "none"]
    return sorted(present, key=lambda c: CHANNEL_ORDER.index(c) if c in CHANNEL_ORDER else 99)


def _pick_snr(agg, snr_db: float | None) -> float:
    snrs = sorted(float(s) for s in agg["snr_db"].dropna().unique())
    if not snrs:
        raise MegenError("no SNR values in the results (only channel none)")
    want = 10.0 if snr_db is None else snr_db
    return min(snrs, key=lambda s: abs(s - want))


# ---------------------------------------------------------------------------------------------- figures
def plot_quality_vs_snr(agg, out: Path) -> list[Path]:
    """Quality against SNR per series, one column per channel, with 95% CI bands."""
    plt = _plt()
    cells = main_cells(agg)
    channels = _channels(cells)
    if not channels:
        raise MegenError("quality vs SNR needs at least one noisy channel in the results")
    panels = [(m, t) for m, t in QUALITY_PANELS if cells[f"{m}_n"].sum() > 0]
    labels = list(dict.fromkeys(cells["label"]))
    colors = _colors(labels)
    where = {r["label"]: lands_at(r) for _, r in cells.iterrows()}  # legend: where each image lands
    fig, axes = plt.subplots(
        len(panels),
        len(channels),
        figsize=(4.2 * len(channels), 2.8 * len(panels)),
        squeeze=False,
        sharex=True,
    )
    for j, ch in enumerate(channels):
        for i, (m, title) in enumerate(panels):
            ax = axes[i][j]
            for lab in labels:
                sub = cells[(cells["label"] == lab) & (cells["channel"] == ch)].sort_values("snr_db")
                flat = cells[(cells["label"] == lab) & (cells["channel"] == "none")]
                if not sub.empty:
                    x = sub["snr_db"].to_numpy(float)
                    y = sub[f"{m}_mean"].to_numpy(float)
                    ci = np.nan_to_num(sub[f"{m}_ci95"].to_numpy(float))
                    ax.plot(x, y, marker="o", ms=3, color=colors[lab], label=f"{lab} [{where[lab]}]")
                    ax.fill_between(x, y - ci, y + ci, color=colors[lab], alpha=0.18, linewidth=0)
                elif not flat.empty and np.isfinite(flat[f"{m}_mean"].iloc[0]):
                    ax.axhline(
                        float(flat[f"{m}_mean"].iloc[0]),
                        color=colors[lab],
                        ls="--",
                        lw=1,
                        label=f"{lab} [{where[lab]}] (no link)",
                    )
            if i == 0:
                ax.set_title(ch.upper() if ch == "awgn" else ch.capitalize())
            if j == 0:
                ax.set_ylabel(title)
            if i == len(panels) - 1:
                ax.set_xlabel("SNR (dB)")
            ax.grid(alpha=0.3)
    return _save_with_legend(fig, axes, out, "quality_vs_snr", fontsize=8)


def plot_channel_uses(agg, out: Path, *, snr_db: float | None = None) -> list[Path]:
    """Stacked channel uses per image (UL/DL/BH) per protocol next to its matched baseline at equal fidelity.

    Beside each protocol: the cheapest baseline variant of its destination reaching its fidelity PSNR
    (hatched; "n/r" when none does), a black tick at the capacity bound for that variant's file, and
    the protocol's digital-latent point (quantised seed over LDPC, grey bar) where swept.
    """
    plt = _plt()
    snr = _pick_snr(agg, snr_db)
    cells = main_cells(agg)
    channels = _channels(cells)
    eq = equal_quality(agg, metric="psnr_fidelity_db")
    fig, axes = plt.subplots(
        1,
        len(channels),
        figsize=(max(5.0, 1.4 * len(cells["label"].unique())) * len(channels) / 1.4, 4.4),
        squeeze=False,
    )
    for j, ch in enumerate(channels):
        ax = axes[0][j]
        sel = cells[(cells["channel"] == ch) & np.isclose(cells["snr_db"].astype(float).fillna(-999), snr)]
        sel = sel[sel["protocol"] != "local"]
        names: list[str] = []
        ticks: list[float] = []
        for k, (_, r) in enumerate(sel.iterrows()):
            x = 1.4 * k
            _stack(ax, x, r, legend=k == 0)
            names.append(f"{r['label']} [{lands_at(r)}]")
            ticks.append(x)
            if r["protocol"] not in BASELINE_PROTOCOLS:
                m = eq[
                    (eq["label"] == r["label"])
                    & (eq["channel"] == ch)
                    & np.isclose(eq["snr_db"].astype(float), snr)
                ]
                _matched_bars(ax, x, agg, m.iloc[0] if not m.empty else None, ch, snr)
        ax.set_xticks(ticks, names, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("channel uses per image")
        ax.margins(y=0.18)  # room for the variant labels above the bars
        ax.set_title(
            f"{ch} at {snr:g} dB (hatched: matched baseline of the same destination at equal fidelity)",
            fontsize=8,
        )
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "channel_uses")


_USE_PARTS = (
    ("uses_uplink", "uplink", "#4c72b0"),
    ("uses_downlink", "downlink", "#dd8452"),
    ("uses_backhaul", "backhaul", "#55a868"),
)


def _stack(ax, x: float, r, *, legend: bool = False, hatch: str | None = None) -> float:
    """One stacked UL/DL/BH bar of a cell at ``x``; returns its height (channel uses)."""
    bottom = 0.0
    for col, name, color in _USE_PARTS:
        kw = {"hatch": hatch, "edgecolor": "white"} if hatch else {}
        ax.bar(x, r[col], 0.38, bottom=bottom, color=color, label=name if legend else None, **kw)
        bottom += r[col]
    return bottom


def _matched_bars(ax, x: float, agg, e, ch: str, snr: float) -> None:
    """The matched baseline (hatched), its capacity bound (tick) and the digital-latent point (grey)."""
    label = None if e is None else e["baseline_label"]
    base = None
    if isinstance(label, str) and label:  # NaN/None: no matched variant reaches it
        base = agg[
            (agg["label"] == label) & (agg["channel"] == ch) & np.isclose(agg["snr_db"].astype(float), snr)
        ]
    if isinstance(label, str) and base is not None and not base.empty:
        top = _stack(ax, x + 0.4, base.iloc[0], hatch="//")
        ax.text(x + 0.4, top, _variant(label), fontsize=6, rotation=90, ha="center", va="bottom")
        cap = "capacity bound (its file)"
        ax.plot([x + 0.22, x + 0.58], [e["capacity_uses"]] * 2, "k-", lw=2, label=_once(ax, cap))
    else:
        ax.text(x + 0.4, 0, "n/r", fontsize=7, ha="center", va="bottom")
    if e is not None and isinstance(e.get("digital_label"), str):
        digital = "digital latent (LDPC)"
        ax.bar(x + 0.8, e["digital_uses"], 0.3, color="0.6", label=_once(ax, digital))


def _once(ax, label: str) -> str | None:
    """``label`` the first time it is used on ``ax``, then None (one legend entry each)."""
    return None if label in ax.get_legend_handles_labels()[1] else label


def plot_costs(agg, out: Path, *, snr_db: float | None = None, channel: str | None = None) -> list[Path]:
    """Busy time and energy per image per protocol, stacked by node and link; critical path as a marker."""
    plt = _plt()
    cells = main_cells(agg)
    channels = _channels(cells)
    ch = channel or (channels[0] if channels else "none")
    snr = _pick_snr(agg, snr_db) if channels else None
    sel = cells[
        (cells["channel"] == ch)
        & (np.isclose(cells["snr_db"].astype(float).fillna(-999), snr) if snr is not None else True)
    ]
    sel = _concat(sel, cells[cells["protocol"].isin(NO_LINK)])
    parts = ("ue", "es", "uplink", "downlink", "backhaul")
    colors = dict(zip(parts, ("#8172b3", "#c44e52", "#4c72b0", "#dd8452", "#55a868"), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * len(sel)), 4.0))
    x = np.arange(len(sel))
    for ax, prefix, unit, total, title in (
        (axes[0], "busy", "s", "latency_s", "time per image (s)"),
        (axes[1], "energy", "j", "energy_j", "energy per image (J)"),
    ):
        bottom = np.zeros(len(sel))
        for p in parts:
            vals = sel[f"{prefix}_{p}_{unit}"].to_numpy(float)
            ax.bar(x, vals, 0.6, bottom=bottom, color=colors[p], label=p.upper() if p in ("ue", "es") else p)
            bottom += vals
        if prefix == "busy":
            ax.plot(x, sel[total].to_numpy(float), "k_", ms=18, mew=2, label="end-to-end latency")
        ax.set_xticks(x, sel["label"].tolist(), rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(title)
        if bottom.min() > 0 and bottom.max() / bottom.min() > 100:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    handles, names = _legend_entries(axes)
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"costs per image, {ch}" + (f" at {snr:g} dB" if snr is not None else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "costs")


def plot_image_grid(
    store: ResultsStore, agg, out: Path, *, channel: str | None = None, samples: Sequence[int] = (0, 1, 2)
) -> list[Path]:
    """Rows protocols, columns SNRs; each cell shows the given samples side by side."""
    plt = _plt()
    cells = main_cells(agg)
    channels = _channels(cells)
    ch = channel or (channels[0] if channels else "none")
    snrs = sorted(float(s) for s in cells[cells["channel"] == ch]["snr_db"].dropna().unique())
    labels = [
        lab for lab in dict.fromkeys(cells["label"]) if lab in set(cells[cells["channel"] == ch]["label"])
    ]
    if not labels:
        raise MegenError(f"no results on channel {ch!r} for the image grid")
    first = cells[cells["label"] == labels[0]].iloc[0]
    pics = _images_of(store, first, samples)
    if not pics:
        raise MegenError("no stored images for the image grid")
    samples = sorted(pics)
    refs = _reference_strip(store, first, samples)
    rows: list[str | None] = ([None] if refs is not None else []) + labels  # None = the reference row
    fig, axes = plt.subplots(
        len(rows), len(snrs), figsize=(1.0 * len(samples) * len(snrs) + 1.5, 0.95 * len(rows)), squeeze=False
    )
    for i, lab in enumerate(rows):
        for j, snr in enumerate(snrs):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j == 0:
                ax.set_ylabel(
                    "reference" if lab is None else lab, fontsize=7, rotation=0, ha="right", va="center"
                )
            if i == 0:
                ax.set_title(f"{snr:g} dB", fontsize=8)
            if lab is None:
                if j == 0 and refs is not None:
                    ax.imshow(refs, cmap="gray", vmin=0, vmax=1)
                continue
            c = cells[
                (cells["label"] == lab)
                & (cells["channel"] == ch)
                & np.isclose(cells["snr_db"].astype(float).fillna(-999), snr)
            ]
            if not c.empty:
                ax.imshow(_strip(_images_of(store, c.iloc[0], samples), samples), cmap="gray", vmin=0, vmax=1)
    prompt = store.frame(
        where="r.config_hash = ? AND r.sample = ?", params=(first["config_hashes"].split(",")[0], samples[0])
    )
    if not prompt.empty:
        fig.suptitle(f"{ch}; sample {samples[0]}: {prompt['prompt'].iloc[0]!r}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out, "image_grid")


def plot_frontier(agg, out: Path, *, channel: str | None = None, destination: str = "UE") -> list[Path]:
    """Fidelity PSNR against channel uses per image, one panel per SNR, for one destination.

    The protocols whose image lands at ``destination`` (``"UE"`` or ``"ES"``) against the matched
    baselines' variants (every codec, quality and MCS), their Pareto front and each variant's file at
    capacity. Written as ``frontier`` (UE) or ``frontier_es`` (ES).
    """
    plt = _plt()
    from matplotlib.ticker import NullFormatter

    channels = _channels(agg)
    ch = channel or (channels[0] if channels else None)
    if ch is None:
        raise MegenError("the frontier needs a noisy channel in the results")
    dest = agg.get("destination", "UE")
    sel = agg[(agg["channel"] == ch) & (dest == destination)]
    baselines = [b for b in BASELINES[destination] if b not in NO_LINK and (sel["protocol"] == b).any()]
    if sel.empty or not baselines:
        raise MegenError(f"no baseline with an image at the {destination} on channel {ch!r}")
    baseline = " / ".join(baselines)
    sel = sel.assign(protocol=sel["protocol"].where(~sel["protocol"].isin(baselines), baseline))
    snrs = sorted(float(s) for s in sel["snr_db"].dropna().unique())
    base_all = sel[sel["protocol"] == baseline]
    rich = [s for s in snrs if (np.isclose(base_all["snr_db"].astype(float), s)).sum() >= 2]
    snrs = rich or snrs  # the SNRs where the baseline has variants (codec qualities, MCSs)
    ncol = min(3, len(snrs))
    nrow = math.ceil(len(snrs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.4 * nrow), squeeze=False)
    here_all = sel[np.isclose(sel["snr_db"].astype(float).fillna(-999).to_numpy()[:, None], snrs).any(axis=1)]
    meg_labels = list(dict.fromkeys(here_all[here_all["protocol"] != baseline]["label"]))
    styles = _styles(meg_labels)
    for k, snr in enumerate(snrs):
        ax = axes[k // ncol][k % ncol]
        here = sel[np.isclose(sel["snr_db"].astype(float), snr)]
        base = here[here["protocol"] == baseline].sort_values("uses_total")
        if not base.empty:
            front = _pareto(base["uses_total"].to_numpy(float), base["psnr_fidelity_db_mean"].to_numpy(float))
            ax.plot(
                base["uses_total"],
                base["psnr_fidelity_db_mean"],
                "s",
                color="0.55",
                ms=4,
                label=f"{baseline} variants",
            )
            ax.plot(*front, "-", color="0.3", lw=1.2, label=f"{baseline} Pareto front")
            cap = [capacity_channel_uses(float(b), snr, ch) for b in base["bits_total"]]
            ax.plot(
                cap,
                base["psnr_fidelity_db_mean"],
                "o",
                mfc="none",
                color="0.3",
                ms=4,
                label=f"{baseline} bits at capacity",
            )
        for lab in meg_labels:
            m = here[here["label"] == lab]
            if not m.empty:
                color, marker = styles[lab]
                ax.plot(m["uses_total"], m["psnr_fidelity_db_mean"], marker, color=color, ms=6, label=lab)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{ch}, {snr:g} dB, image at the {destination}", fontsize=9)
        ax.set_xlabel("channel uses per image")
        ax.set_ylabel("fidelity PSNR (dB)")
        ax.grid(alpha=0.3, which="both")
    for k in range(len(snrs), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    return _save_with_legend(fig, axes, out, "frontier" if destination == "UE" else "frontier_es", fontsize=7)


# ---------------------------------------------------------------------------------------------- all
def plot_all(
    store: ResultsStore,
    out: Path | str,
    *,
    agg=None,
    snr_db: float | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Every figure that the results allow; returns the files written.

    Raises:
        MegenError: an unwritable output folder or a database without rows.
    """
    out = writable_folder(out)
    say = log or (lambda _m: None)
    agg = aggregate(store, fid=False, log=say) if agg is None else agg
    written: list[Path] = []
    jobs: list[tuple[str, Callable[[], list[Path]]]] = [
        ("quality_vs_snr", lambda: plot_quality_vs_snr(agg, out)),
        ("channel_uses", lambda: plot_channel_uses(agg, out, snr_db=snr_db)),
        ("costs", lambda: plot_costs(agg, out, snr_db=snr_db)),
        ("image_grid", lambda: plot_image_grid(store, agg, out)),
        ("frontier", lambda: plot_frontier(agg, out)),
        ("frontier_es", lambda: plot_frontier(agg, out, destination="ES")),
    ]
    for name, job in jobs:
        try:
            written.extend(job())
        except WriteError:
            raise
        except MegenError as exc:
            say(f"{name}: skipped ({exc})")
    return written


# ---------------------------------------------------------------------------------------------- helpers
def _concat(a, b):
    import pandas as pd

    return pd.concat([a, b[~b.index.isin(a.index)]])


def _variant(label: str) -> str:
    """``"central (q=10, mcs=auto)"`` -> ``"q=10, mcs=auto"`` (bar annotations)."""
    return label.split("(", 1)[1].rstrip(")") if "(" in label else "default"


def _pareto(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    fx, fy, best = [], [], -np.inf
    for i in order:
        if y[i] > best:
            fx.append(x[i])
            fy.append(y[i])
            best = y[i]
    return np.array(fx), np.array(fy)


def _images_of(store: ResultsStore, cell_row, samples: Sequence[int]) -> dict[int, np.ndarray]:
    key = str(cell_row["config_hashes"]).split(",")[0]
    return {k: v.numpy().mean(0) for k, v in store.images(key, samples).items()}


def _strip(pics: dict[int, np.ndarray], samples: Sequence[int]) -> np.ndarray:
    tiles = [pics.get(s) for s in samples]
    h, w = next(t for t in tiles if t is not None).shape
    gap = np.ones((h, 1))
    row: list[np.ndarray] = []
    for t in tiles:
        row.extend([t if t is not None else np.ones((h, w)), gap])
    return np.concatenate(row[:-1], axis=1)


def _reference_strip(store: ResultsStore, cell_row, samples: Sequence[int]) -> np.ndarray | None:
    if cell_row["task"] != "i2i":
        return None
    from megen.experiments.references import fit_to_model, load_references, resolve_references

    df = store.frame(
        where=f"r.config_hash = ? AND r.sample IN ({', '.join('?' * len(samples))})",
        params=(str(cell_row["config_hashes"]).split(",")[0], *samples),
    )
    generated = _images_of(store, cell_row, samples)
    if not generated:
        return None
    h, w = next(iter(generated.values())).shape
    try:
        refset = load_references(resolve_references(store.spec.references, store.spec.model))
    except MegenError:
        return None
    images = refset.images
    pics = {
        int(s): fit_to_model(images[int(r)][None], (images.shape[1], h, w))[0].numpy().mean(0)
        for s, r in zip(df["sample"], df["ref_index"], strict=True)
        if r == r
    }
    return _strip(pics, samples) if pics else None
