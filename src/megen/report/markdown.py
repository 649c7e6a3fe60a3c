"""The case study's report: ``report.md`` with figures, tables and the data files beside it.

:func:`write_report` reads ``results.sqlite`` in a report folder, writes ``rows.csv`` /
``rows.parquet`` (every image's row), ``summary.csv`` (per configuration), the figures, and
``report.md``. The markdown is built by small section functions, each taking one
:class:`ReportContext` and returning its lines.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megen.experiments.spec import SweepSpec

#: Names of the threshold metrics in the report's prose.
METRIC_NAMES = {"prompt_match": "prompt accuracy", "ssim_fidelity": "SSIM fidelity"}
#: Captions of the figures, in report order.
CAPTIONS = {
    "quality_vs_snr": "Quality against SNR (95% CI bands).",
    "channel_uses": "Channel uses per image (UL/DL/BH; [where the image lands]) next to the matched baseline "
    "at equal fidelity PSNR (hatched), its file's capacity bound (tick) and the digital-latent point (grey).",
    "costs": "Latency and energy per image by node and link.",
    "image_grid": "Images: rows protocols, columns SNRs.",
    "frontier": "Image at the UE: fidelity against channel uses, MEG protocols vs every variant of central and "
    "central-fallback, and each variant's file at capacity.",
    "frontier_es": "Image at the ES: fidelity against channel uses, MEG protocols vs every variant of central-es "
    "and local-upload, and each variant's file at capacity.",
}


@dataclass(frozen=True)
class ReportContext:
    """Everything the report's sections read.

    Attributes:
        spec: The sweep stored in the database.
        meta: The database's meta table.
        agg: One line per cell (:func:`megen.analysis.aggregate`).
        frame: Every row with cell keys (:func:`megen.analysis.add_keys`).
        thresholds: :func:`megen.analysis.threshold_snr` of the swept cells.
        equal: :func:`megen.analysis.equal_quality` of the cells.
        figures: Files of the figures written.
        preset: Name of the preset.
        workers: Worker processes of the sweep.
        sweep_s: Sweep wall time in seconds (None: not measured, report from stored rows).
        notes: One-line notes gathered while writing (partial sweep, FID refused ...).
    """

    spec: SweepSpec
    meta: dict[str, str]
    agg: Any
    frame: Any
    thresholds: Any
    equal: Any
    figures: list[Path]
    preset: str
    workers: int
    sweep_s: float | None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- writing
def write_report(
    out: Path, *, preset: str, workers: int, sweep_s: float | None, log: Callable[[str], None]
) -> Path:
    """Figures, CSV and ``report.md`` from ``out/results.sqlite`` (``sweep_s``: None = not measured).

    Raises:
        MegenError: a database without rows, an output that is the database (a symlink), or a write
            that fails; every check runs before the first file is written.
    """
    from megen.analysis import add_keys, aggregate, equal_quality, threshold_snr
    from megen.experiments.spec import expand
    from megen.files import atomic_output
    from megen.report.plots import plot_all
    from megen.store import ResultsStore, check_outputs, export

    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        log(msg)

    outputs: list[Path | None] = [out / f for f in ("rows.csv", "rows.parquet", "summary.csv", "report.md")]
    with ResultsStore.open(out / "results.sqlite") as store:
        check_outputs(store, outputs, need_rows=True)
        spec = store.spec
        meta = dict(store.meta)
        points = expand(spec)
        expected = sum(p.samples for p in points)
        stored = store.count()
        if stored < expected:
            note(
                f"PARTIAL: {stored} of {expected} rows stored, {store.count_points_with_rows()} of "
                f"{len(points)} configurations with rows (the sweep was stopped; it runs batch by batch "
                "across all points, so the stored points hold about the same number of images); rerun "
                "without --report-only to continue"
            )
        export(store, csv=out / "rows.csv", parquet=out / "rows.parquet")
        agg = aggregate(store, fid=True, log=note)
        with atomic_output(out / "summary.csv") as tmp:
            agg.to_csv(tmp, index=False)
        figures = plot_all(store, out / "figures", agg=agg, log=note)
        frame = add_keys(store.frame())
    swept = agg[
        has_tag(agg, "main") | has_tag(agg, "snr_aware") | has_tag(agg, "error_free") | has_tag(agg, "genie")
    ]
    ctx = ReportContext(
        spec=spec,
        meta=meta,
        agg=agg,
        frame=frame,
        thresholds=threshold_snr(swept, metric=threshold_metric(agg), fraction=0.9),
        equal=equal_quality(agg, metric="psnr_fidelity_db"),
        figures=figures,
        preset=preset,
        workers=workers,
        sweep_s=sweep_s,
        notes=notes,
    )
    with atomic_output(out / "report.md") as tmp:
        tmp.write_text(report_markdown(ctx), encoding="utf-8")
    return out / "report.md"


def report_markdown(ctx: ReportContext) -> str:
    """The whole ``report.md``: every section in order."""
    from megen.report.glance import glance

    sections = (
        _header,
        _notes,
        glance,
        _figures,
        _main_table,
        _local_baseline,
        _thresholds,
        _equal_quality,
        _snr_aware,
        _genie,
        _sync,
        _data,
    )
    return "\n".join(line for section in sections for line in section(ctx))


# ---------------------------------------------------------------------------------------------- formatting
def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: ``None`` -> empty, NaN -> ``n/a``, floats to ``digits`` significant places.

    Example:
        >>> fmt(0.12345), fmt(123456.0), fmt(float("nan")), fmt(None)
        ('0.123', '1.23e+05', 'n/a', '')
    """
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}" if abs(v) >= 100 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def pm(mean: float, half: float, digits: int = 3) -> str:
    """``"mean ± half"`` (``n/a`` for a NaN mean).

    Example:
        >>> pm(1.5, 0.25)
        '1.5 ± 0.25'
    """
    if isinstance(mean, float) and math.isnan(mean):
        return "n/a"
    return f"{fmt(mean, digits)} ± {fmt(half, 2)}"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table.

    Example:
        >>> print(md_table(["a", "b"], [[1.0, "x"]]))
        | a | b |
        |---|---|
        | 1 | x |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines)


def has_tag(agg, tag: str):
    """Boolean mask of the cells carrying ``tag``."""
    return agg["tags"].str.split(",").apply(lambda t: tag in t)


def threshold_metric(agg) -> str:
    """Prompt accuracy where the model has a classifier (tiny); otherwise SSIM against the error-free output."""
    col = agg.get("prompt_match_mean")
    return "prompt_match" if col is not None and col.notna().any() else "ssim_fidelity"


def lands_at(r) -> str:
    """Where a cell's image lands: ``"UE"`` or the ES node (``"ES1"``), from ``delivered_to``."""
    v = r.get("delivered_to") if hasattr(r, "get") else None
    return str(v) if isinstance(v, str) and v else "UE"


def outage_cell(r) -> str:
    """``"0.04 [0.01, 0.2]"``: outage probability and its 95% Wilson interval (``n/a`` without outage data).

    Example:
        >>> outage_cell({"outage_mean": 0.04, "outage_lo": 0.0071, "outage_hi": 0.1954})
        '0.04 [0.01, 0.2]'
    """
    mean = r.get("outage_mean", math.nan)
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{fmt(float(mean), 2)} [{fmt(float(r['outage_lo']), 2)}, {fmt(float(r['outage_hi']), 2)}]"


# ---------------------------------------------------------------------------------------------- sections
def _header(ctx: ReportContext) -> list[str]:
    agg, spec = ctx.agg, ctx.spec
    timing = (
        f"Sweep wall time {ctx.sweep_s:.0f} s on {ctx.workers} worker(s); "
        if ctx.sweep_s is not None
        else "Report written from the stored rows (sweep wall time not measured here); "
    )
    return [
        f"# megen case study: {spec.name}",
        "",
        f"Model `{spec.model}` (weights fingerprint `{ctx.meta.get('model_fingerprint')}`), "
        f"{agg['cfg_steps'].iloc[0]} DDIM steps, strength {agg['cfg_strength'].iloc[0]}, guidance "
        f"{agg['cfg_guidance'].iloc[0]}, batch {spec.batch_size}, seeds {spec.seeds}. {len(agg)} configurations, "
        f"{int(agg['rows'].sum())} images. "
        + timing
        + f"compute time {float(ctx.frame['wall_s'].sum()):.0f} worker-seconds summed over images "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}).",
        "",
        "Metrics: *fidelity* compares each received image with the error-free unsplit ES pipeline's output "
        "for the same prompt, reference and seed; *prompt accuracy* is the evaluation classifier's agreement "
        "with the prompt's class (our stand-in for CLIP score); ± is the half width of the normal 95% "
        "confidence interval over images. FID is on the evaluation classifier's 128-d features against "
        "the 10 000 Fashion-MNIST test images (refused below 100 samples, biased upwards below 1000). "
        "Costs are per image (batch totals / batch size). Every comparison is made against the baselines of "
        "the protocol's destination (where its image lands): image at the UE against `central`, "
        "`central-fallback` and `local`; image at an ES against `central-es` and `local-upload`.",
        "",
    ]


def _notes(ctx: ReportContext) -> list[str]:
    if not ctx.notes:
        return []
    return ["Notes from this run:", "", *[f"* {n}" for n in dict.fromkeys(ctx.notes)], ""]


def _figures(ctx: ReportContext) -> list[str]:
    names = {p.stem for p in ctx.figures}
    lines = ["## Figures", ""]
    for name, cap in CAPTIONS.items():
        if name in names:
            lines += [f"![{cap}](figures/{name}.png)", "", f"*{cap}* ([PDF](figures/{name}.pdf))", ""]
    return lines


def _main_table(ctx: ReportContext) -> list[str]:
    main = ctx.agg[has_tag(ctx.agg, "main")]
    clip = "clip_score_mean" in main and bool(main["clip_score_mean"].notna().any())
    rows = [
        [
            r["label"],
            lands_at(r),
            r["channel"],
            "" if r["channel"] == "none" else fmt(float(r["snr_db"])),
            outage_cell(r),
            pm(r["psnr_fidelity_db_mean"], r["psnr_fidelity_db_ci95"]),
            pm(r["ssim_fidelity_mean"], r["ssim_fidelity_ci95"]),
            pm(r["prompt_match_mean"], r["prompt_match_ci95"]),
            *([pm(r["clip_score_mean"], r["clip_score_ci95"])] if clip else []),
            f"{fmt(r['fid'])} (n={int(r['fid_n'])})",
            *(fmt(r[c]) for c in ("uses_uplink", "uses_downlink", "uses_backhaul")),
            *(fmt(r[c]) for c in ("latency_s", "energy_j", "link_failures")),
        ]
        for _, r in main.iterrows()
    ]
    header = [
        "protocol",
        "image lands at",
        "channel",
        "SNR dB",
        "outage [95% CI]",
        "PSNR fid. dB",
        "SSIM fid.",
    ]
    header += ["prompt acc.", *(["CLIP score"] if clip else []), "FID", "UL uses", "DL uses", "BH uses"]
    header += ["latency s", "energy J", "failed blocks"]
    return [
        "## Quality and costs per configuration (tag `main`)",
        "",
        "Quality is averaged over the delivered images (an image in outage has no fidelity); the outage "
        "probability stands beside it with its 95% Wilson interval.",
        "",
        md_table(header, rows),
        "",
    ]


def _local_baseline(ctx: ReportContext) -> list[str]:
    metric = threshold_metric(ctx.agg)
    what = METRIC_NAMES[metric]
    from megen.analysis.cells import NO_LINK

    lines = []
    for name, source in NO_LINK.items():
        alone = ctx.agg[ctx.agg["protocol"] == name]
        if alone.empty:
            continue
        first = alone.iloc[0]
        fidelity = ""
        if "psnr_fidelity_db_mean" in alone and not math.isnan(float(first["psnr_fidelity_db_mean"])):
            fidelity = f", fidelity PSNR {pm(float(first['psnr_fidelity_db_mean']), float(first['psnr_fidelity_db_ci95']))} dB"
        lines.append(
            f"Baseline `{name}` (the UE alone, {source}, no link; image at the UE): {what} "
            f"{pm(float(first[f'{metric}_mean']), float(first[f'{metric}_ci95']))}{fidelity}."
        )
    if lines:
        lines += [f"{what.capitalize()} or fidelity at or below these is not a gain of the link.", ""]
    return lines


def _thresholds(ctx: ReportContext) -> list[str]:
    what = METRIC_NAMES[threshold_metric(ctx.agg)]
    lines = [
        f"## Where each protocol falls below 90% of its error-free {what}",
        "",
        "Bracketed between two swept SNRs, never interpolated: a bracket wider than 1 dB is marked "
        '"grid too coarse" (the cliff lies somewhere inside it). *above all*: it never falls below '
        "at the SNRs swept; *below all*: not even at the highest. The outage cliff is where the outage "
        "probability rises above 10%.",
        "",
    ]
    thr = ctx.thresholds
    if thr.empty:
        return lines
    header = ["protocol", "image lands at", "channel", f"error-free {what}", "from", "90% threshold"]
    header += ["falls below it", "outage > 10%"]
    rows = [
        [
            t["label"],
            t.get("destination", "UE"),
            t["channel"],
            t["error_free"],
            t["reference_from"],
            t["threshold"],
            str(t["snr_db_below"]),
            str(t.get("outage_below", "")) or "n/a",
        ]
        for _, t in thr.iterrows()
    ]
    return [*lines, md_table(header, rows), ""]


#: What each destination's comparison is against, in the report's words.
DESTINATION_TITLES = {
    "UE": "image at the UE: against `central` (up and down) and `central-fallback`",
    "ES": "image at the ES: against `central-es` (up only, nothing comes down) and `local-upload`",
}


def _equal_quality(ctx: ReportContext) -> list[str]:
    lines = [
        "## Channel uses against the matched baselines at equal fidelity, and their fidelity at equal uses",
        "",
        "Each protocol is compared only with the baselines of its destination (where its image lands). "
        "For every configuration: the fewest channel uses of any matched baseline variant (codec, quality "
        "and MCS, png included; same channel and SNR) reaching at least its fidelity PSNR with no more "
        "outage; the capacity bound `bits / log2(1 + SNR)` (ergodic capacity for fading): the fewest "
        "channel uses any code needs for that variant's file; the digital-latent point (the same protocol "
        "with its seed quantised and sent over LDPC); and the best fidelity any matched variant reaches "
        "with at most the configuration's channel uses. n/a: no variant qualifies.",
        "",
    ]
    agg, eq = ctx.agg, ctx.equal
    keep = set(agg[has_tag(agg, "main") | has_tag(agg, "frontier")]["label"])
    eq = eq[eq["label"].isin(keep)] if not eq.empty else eq
    if eq.empty:
        return lines
    eq = eq[eq["channel"] != "none"]
    dests = eq["destination"] if "destination" in eq else eq["channel"].map(lambda _c: "UE")
    for dest in sorted(set(dests), key=lambda d: (d != "UE", d)):  # the UE first
        lines += [f"### {DESTINATION_TITLES.get(str(dest), f'image at {dest}')}", ""]
        lines += [_equal_quality_table(eq[dests == dest]), ""]
    return lines


def _equal_quality_table(eq) -> str:
    rows = [
        [
            e["label"],
            e["channel"],
            fmt(e["snr_db"]),
            e["psnr_fidelity_db"],
            fmt(float(e.get("outage", 0.0)), 2),
            e["uses_total"],
            e["baseline_label"] if isinstance(e["baseline_label"], str) else "none reaches it",
            e["baseline_uses_equal_quality"],
            e["baseline_failures_equal_quality"],
            e["capacity_uses"],
            _digital(e),
            e["baseline_quality_equal_uses"],
        ]
        for _, e in eq.iterrows()
    ]
    header = ["protocol", "channel", "SNR dB", "PSNR fid. dB", "outage", "uses", "baseline at equal quality"]
    header += ["its uses", "its failed blocks", "capacity bound uses (its file)", "digital latent"]
    header.append("baseline PSNR at equal uses")
    return md_table(header, rows)


def _digital(e) -> str:
    """``"1.7e+03 uses, 27 dB"``: the digital-latent point of an analog cell (empty when none)."""
    label = e.get("digital_label")
    if not isinstance(label, str):
        return ""
    return f"{fmt(float(e['digital_uses']))} uses, {fmt(float(e['digital_quality']))} dB ({label})"


def _pair_off(agg, field: str, values: tuple, *, also: tuple[str, ...] = ()) -> list[tuple[Any, Any]]:
    """Cells that differ only in ``field`` (one value each of ``values``) and the fields ``also``."""
    skip = (f"cfg_{field}", "cfg_seed", *(f"cfg_{a}" for a in also))
    if f"cfg_{field}" not in agg:
        return []
    cfg_cols = [c for c in agg.columns if c.startswith("cfg_") and c not in skip]
    keys = agg[cfg_cols + ["task"]].astype(str).apply(lambda r: json.dumps(list(r)), axis=1)
    pairs = []
    for _, grp in agg.groupby(keys, sort=False):
        found = {v: grp[grp[f"cfg_{field}"] == v] for v in values}
        if all(not f.empty for f in found.values()):
            pairs.append(tuple(found[v].iloc[0] for v in values))
    return pairs


def _snr_aware(ctx: ReportContext) -> list[str]:
    from megen.analysis import paired_difference

    pairs = _pair_off(ctx.agg, "snr_aware", (True, False))
    if not pairs:
        return []
    lines = []
    for on, off in pairs:
        if on["channel"] == "none":
            continue
        cells = [fmt(float(on["snr_db"]))]
        for metric in ("psnr_fidelity_db", "prompt_match"):
            d = paired_difference(ctx.frame, on["cell"], off["cell"], metric)
            cells += [fmt(d["mean_a"]), fmt(d["mean_b"]), pm(d["diff"], d["diff_ci95"])]
        lines.append([on["protocol"], on["channel"], *cells, str(int(d["n"]))])
    header = ["protocol", "channel", "SNR dB", "PSNR fid. on", "off", "difference dB"]
    header += ["prompt acc. on", "off", "difference", "n"]
    return [
        "## What receiver-side (SNR-aware) denoising buys",
        "",
        "Paired over the samples both variants ran (same prompts, references and noise); the difference is "
        "on minus off with its 95% interval.",
        "",
        md_table(header, lines),
        "",
    ]


def _genie(ctx: ReportContext) -> list[str]:
    """Genie receiver (true noise variance, perfect CSI) against the estimated default, paired per image."""
    from megen.analysis import paired_difference

    rows = []
    for genie, est in _pair_off(ctx.agg, "noise", ("genie", "estimated"), also=("csi",)):
        if genie["channel"] == "none":
            continue
        d = paired_difference(ctx.frame, genie["cell"], est["cell"], "psnr_fidelity_db")
        rows.append(
            [
                genie["protocol"],
                lands_at(genie),
                genie["channel"],
                fmt(float(genie["snr_db"])),
                fmt(d["mean_a"]),
                fmt(d["mean_b"]),
                pm(d["diff"], d["diff_ci95"]),
                outage_cell(genie),
                outage_cell(est),
                str(int(d["n"])),
            ]
        )
    if not rows:
        return []
    header = ["protocol", "image lands at", "channel", "SNR dB", "PSNR fid. genie", "estimated"]
    header += ["difference dB", "outage genie", "outage estimated", "n"]
    return [
        "## What the genie receiver hides (true noise variance and CSI against estimated)",
        "",
        "Paired over the images both ran; the difference is genie minus estimated with its 95% interval "
        "(PSNR over the images both delivered).",
        "",
        md_table(header, rows),
        "",
    ]


def _sync(ctx: ReportContext) -> list[str]:
    sync = ctx.agg[has_tag(ctx.agg, "sync")].sort_values(["protocol", "cfg_sync_every"])
    if sync.empty:
        return []
    rows = [
        [
            r["protocol"],
            int(r["cfg_sync_every"]),
            fmt(float(r["snr_db"])),
            r["uses_backhaul"],
            r["bits_backhaul"],
            pm(r["psnr_fidelity_db_mean"], r["psnr_fidelity_db_ci95"]),
            pm(r["ssim_fidelity_mean"], r["ssim_fidelity_ci95"]),
        ]
        for _, r in sync.iterrows()
    ]
    header = ["protocol", "sync_every", "SNR dB", "backhaul uses", "backhaul bits", "PSNR fid.", "SSIM fid."]
    return [
        "## Parallel multi-ES protocols: quality against halo exchange (`sync_every`, 0 = never)",
        "",
        md_table(header, rows),
        "",
    ]


def _data(ctx: ReportContext) -> list[str]:
    return [
        "## Data",
        "",
        "* `results.sqlite`: the sweep (one row per image, images as PNG); `megen plot results.sqlite` redraws the figures.",
        "* `rows.csv`, `rows.parquet`: every row without images; `summary.csv`: one line per configuration.",
        "",
    ]
