"""``megen reproduce``: the whole case study in one command, written to ``report/``.

Three presets of one experiment (:func:`preset_spec`):

* ``demo`` (a few minutes on 2 cores; the main job of ``make demo``): the single-ES protocols and
  ``local`` on AWGN at 4 SNRs, 25 samples per point (FID is refused: fewer than 100 samples);
* ``default`` (<= 15 minutes on 2 cores): single-ES protocols on AWGN and Rayleigh at 5 SNRs with 100
  samples per point on AWGN (25 elsewhere), the multi-ES protocols on AWGN, receiver-side denoising
  on/off, ``sync_every`` for the parallel protocols, and the centralized baseline with JPEG and WebP
  at several qualities and MCSs;
* ``full`` (``--full``, about 1.5-2 hours on 2 cores): every point at 1000 samples, a finer AWGN grid
  (7 SNRs), ESUC with analog sketches (denoising on and off); see :data:`PRESETS` for the grids.

Grids (tags): ``main`` (quality vs SNR, costs, image grid), ``error_free`` (channel ``none``: the
reference for the 90% prompt-accuracy threshold), ``snr_aware`` (receiver-side denoising off for
CIAG's analog seed; ``full`` also ESUC with analog sketches, on and off: a digital sketch arrives
clean, so there is nothing to denoise),
``sync`` (parallel protocols' halo exchange period), ``frontier`` (centralized with every codec
quality and MCS, MEG protocols with digital seeds).

The report (``report.md``) holds the figures, the tables below, and the data: ``rows.csv`` /
``rows.parquet`` (every image's row), ``summary.csv`` (per configuration), ``results.sqlite``.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megen.errors import MegenError
from megen.experiments.spec import SweepSpec, make_spec

SINGLE_ES = ("central", "EIUG", "UIEG", "CIAG", "ESUC")
MULTI_ES = ("UIDG", "DIUG", "DSUC", "UIDCG", "DCSUC")
PARALLEL = ("UIDG", "DIUG", "DSUC")
#: Fixed MCSs of the frontier's centralized variants (besides link adaptation, ``mcs = None``).
FRONTIER_MCS = ("qpsk-r0.5", "16qam-r0.5", "64qam-r0.75")


@dataclass(frozen=True)
class PresetSize:
    """Sizes of one preset: samples per point (batches of 25), SNR grids in dB, option lists."""

    single: tuple[str, ...]
    samples: int
    snrs: tuple[float, ...]
    channels: tuple[str, ...]
    fading_samples: int
    fading_snrs: tuple[float, ...]
    error_free_samples: int
    multi: tuple[str, ...]
    multi_samples: int
    multi_snrs: tuple[float, ...]
    multi_channels: tuple[str, ...]
    aware_samples: int
    aware_snrs: tuple[float, ...]
    analog_sketch_snrs: tuple[float, ...]
    sync_every: tuple[int, ...]
    sync_snr_db: float
    sync_samples: int
    frontier_samples: int
    frontier_snrs: tuple[float, ...]
    codecs: tuple[str, ...]
    qualities: tuple[int, ...]
    mcs: tuple[str, ...]
    seed_bits: tuple[int, ...]


# Budget of ``default``: measured on the project's 2-core CPU (25 DDIM steps, 1 thread per worker), a
# batch of 25 images takes ~2-4 s for a single-ES protocol and ~4-7 s for a multi-ES one. Only the
# main AWGN grid has the 100 samples FID needs; every other grid has 25 (one batch). The centralized
# frontier variants are cheap: the stage memo (megen.protocols.memo) reuses the ES generation whenever
# the uplink delivered the same reference bytes, so they cost little more than coding and decoding.
#
# ``full`` keeps every point at 1000 samples (40 batches) and chooses its grids to finish in about
# 1.5-2 hours on 2 idle cores: 7 AWGN SNRs, 4 Rayleigh SNRs, receiver-side denoising off only where
# it matters (<= 0 dB), the multi-ES protocols at 2 SNRs.
PRESETS: dict[str, PresetSize] = {
    "demo": PresetSize(
        single=("central", "EIUG", "CIAG", "ESUC"),
        samples=25,
        snrs=(-10.0, 0.0, 10.0, 20.0),
        channels=("awgn",),
        fading_samples=25,
        fading_snrs=(),
        error_free_samples=25,
        multi=(),
        multi_samples=0,
        multi_snrs=(),
        multi_channels=(),
        aware_samples=25,
        aware_snrs=(-10.0, 0.0, 10.0, 20.0),
        analog_sketch_snrs=(),
        sync_every=(),
        sync_snr_db=10.0,
        sync_samples=0,
        frontier_samples=25,
        frontier_snrs=(10.0,),
        codecs=("jpeg", "webp"),
        qualities=(1, 10, 50, 90),
        mcs=(),
        seed_bits=(),
    ),
    "default": PresetSize(
        single=SINGLE_ES,
        samples=100,
        snrs=(-10.0, -5.0, 0.0, 10.0, 20.0),
        channels=("awgn", "rayleigh"),
        fading_samples=25,
        fading_snrs=(-10.0, -5.0, 0.0, 10.0, 20.0),
        error_free_samples=25,
        multi=MULTI_ES,
        multi_samples=25,
        multi_snrs=(-5.0, 10.0, 20.0),
        multi_channels=("awgn",),
        aware_samples=25,
        aware_snrs=(-10.0, -5.0, 0.0, 10.0, 20.0),
        analog_sketch_snrs=(),
        sync_every=(0, 1, 5),
        sync_snr_db=10.0,
        sync_samples=25,
        frontier_samples=25,
        frontier_snrs=(0.0, 10.0, 20.0),
        codecs=("jpeg", "webp"),
        qualities=(1, 10, 50, 90),
        mcs=FRONTIER_MCS,
        seed_bits=(4, 8),
    ),
    "full": PresetSize(
        single=SINGLE_ES,
        samples=1000,
        snrs=(-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 20.0),
        channels=("awgn", "rayleigh"),
        fading_samples=1000,
        fading_snrs=(-10.0, 0.0, 10.0, 20.0),
        error_free_samples=1000,
        multi=MULTI_ES,
        multi_samples=1000,
        multi_snrs=(0.0, 10.0),
        multi_channels=("awgn",),
        aware_samples=1000,
        aware_snrs=(-15.0, -10.0, -5.0, 0.0),
        analog_sketch_snrs=(-10.0, 0.0),
        sync_every=(0, 1, 5),
        sync_snr_db=10.0,
        sync_samples=1000,
        frontier_samples=1000,
        frontier_snrs=(0.0, 10.0, 20.0),
        codecs=("jpeg", "webp"),
        qualities=(1, 10, 50, 90),
        mcs=("qpsk-r0.5",),
        seed_bits=(4, 8),
    ),
}


def preset_spec(preset: str, model: str = "tiny") -> SweepSpec:
    """The sweep of a preset (see the module docstring)."""
    if preset not in PRESETS:
        raise MegenError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    z = PRESETS[preset]
    single = list(z.single)
    grids: list[dict[str, Any]] = [
        {"tag": "main", "protocol": single, "channel": ["awgn"], "snr_db": list(z.snrs)},
        {"tag": "main", "protocol": ["local"], "channel": ["none"]},
        {"tag": "error_free", "protocol": single, "channel": ["none"], "samples": z.error_free_samples},
    ]
    fading = [c for c in z.channels if c != "awgn"]
    if fading:
        grids.append(
            {
                "tag": "main",
                "protocol": single,
                "channel": fading,
                "snr_db": list(z.fading_snrs),
                "samples": z.fading_samples,
            }
        )
    if "CIAG" in single and z.aware_snrs:  # the received seed is analog: denoising on (main grid) and off
        grids.append(
            {
                "tag": "snr_aware",
                "protocol": ["CIAG"],
                "snr_aware": [False],
                "channel": ["awgn"],
                "snr_db": list(z.aware_snrs),
                "samples": z.aware_samples,
            }
        )
    if (
        z.analog_sketch_snrs and "ESUC" in single
    ):  # a digital sketch arrives clean: compare with analog sketches
        grids.append(
            {
                "tag": "snr_aware",
                "protocol": ["ESUC"],
                "sketch_transmission": ["analog"],
                "snr_aware": [True, False],
                "channel": ["awgn"],
                "snr_db": list(z.analog_sketch_snrs),
                "samples": z.aware_samples,
            }
        )
    grids.append(
        {
            "tag": "frontier",
            "protocol": ["central"],
            "image_codec": list(z.codecs),
            "image_quality": list(z.qualities),
            "mcs": [None, *z.mcs],
            "channel": ["awgn"],
            "snr_db": list(z.frontier_snrs),
            "samples": z.frontier_samples,
        }
    )
    if z.seed_bits:
        grids.append(
            {
                "tag": "frontier",
                "protocol": ["EIUG", "CIAG"],
                "transmission": ["digital"],
                "seed_bits": list(z.seed_bits),
                "channel": ["awgn"],
                "snr_db": list(z.frontier_snrs),
                "samples": z.frontier_samples,
            }
        )
    if z.multi:
        grids += [
            {
                "tag": "main",
                "protocol": list(z.multi),
                "channel": list(z.multi_channels),
                "snr_db": list(z.multi_snrs),
                "samples": z.multi_samples,
            },
            {"tag": "error_free", "protocol": list(z.multi), "channel": ["none"], "samples": z.multi_samples},
        ]
    parallel = [p for p in PARALLEL if p in z.multi]
    if z.sync_every and parallel:
        grids.append(
            {
                "tag": "sync",
                "protocol": parallel,
                "sync_every": list(z.sync_every),
                "channel": ["awgn"],
                "snr_db": [z.sync_snr_db],
                "samples": z.sync_samples,
            }
        )
    return make_spec(
        {
            "name": f"megen case study ({preset})",
            "model": model,
            "samples": z.samples,
            "seeds": [0],
            "batch_size": 25,
            "defaults": {"steps": 25, "strength": 0.6, "guidance": 4.0},
            "grids": grids,
        }
    )


@dataclass
class ReproduceResult:
    """Where the report went and whether the sweep finished."""

    report: Path
    interrupted: bool = False
    signal_name: str | None = None


def reproduce(
    out: Path | str,
    *,
    preset: str = "default",
    workers: int = 2,
    model: str = "tiny",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    report_only: bool = False,
) -> ReproduceResult:
    """Run a preset's sweep into ``out/results.sqlite`` and write ``out/report.md`` with figures and tables.

    Interrupted, it keeps the finished rows: running it again continues the sweep. With
    ``report_only``, no sweep runs: the report is written from the rows already stored (a stopped
    sweep's rows are balanced over its points, batch by batch; the report says how many are missing).

    Raises:
        MegenError: an unwritable output folder, a ``results.sqlite`` of another preset or model, or
            ``report_only`` without a ``results.sqlite`` of this preset.
    """
    from megen.experiments.store import writable_folder
    from megen.experiments.sweep import run_sweep

    say = log or print
    out = writable_folder(out)
    spec = preset_spec(preset, model)
    if report_only:
        from megen.experiments.store import ResultsStore

        db = out / "results.sqlite"
        if not db.is_file():
            raise MegenError(f"{db} does not exist: run the sweep first (without --report-only)")
        with ResultsStore.open(db) as store:
            if store.spec.digest() != spec.digest():
                raise MegenError(f"{db} holds another sweep than preset {preset!r} with model {model!r}")
        return ReproduceResult(write_report(out, preset=preset, workers=workers, sweep_s=None, log=say))
    t0 = time.perf_counter()
    res = run_sweep(spec, out / "results.sqlite", workers=workers, progress=progress, log=say)
    if res.interrupted:
        return ReproduceResult(out / "report.md", True, res.signal_name)
    sweep_s = time.perf_counter() - t0
    report = write_report(out, preset=preset, workers=workers, sweep_s=sweep_s, log=say)
    return ReproduceResult(report)


# ---------------------------------------------------------------------------------------------- report
def write_report(
    out: Path, *, preset: str, workers: int, sweep_s: float | None, log: Callable[[str], None]
) -> Path:
    """Figures, CSV and ``report.md`` from ``out/results.sqlite`` (``sweep_s``: None = not measured)."""
    from megen.experiments.plots import plot_all
    from megen.experiments.spec import expand
    from megen.experiments.stats import add_keys, aggregate, equal_quality, threshold_snr
    from megen.experiments.store import ResultsStore, atomic_output, export

    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        log(msg)

    with ResultsStore.open(out / "results.sqlite") as store:
        spec = store.spec
        meta = dict(store.meta)
        expected = sum(p.samples for p in expand(spec))
        stored = store.count()
        if stored < expected:
            note(
                f"PARTIAL: {stored} of {expected} rows stored (the sweep was stopped; its batches run "
                "batch by batch across all points, so every point has about the same share); rerun "
                "without --report-only to continue"
            )
        export(store, csv=out / "rows.csv", parquet=out / "rows.parquet")
        agg = aggregate(store, fid=True, log=note)
        with atomic_output(out / "summary.csv") as tmp:
            agg.to_csv(tmp, index=False)
        figures = plot_all(store, out / "figures", agg=agg, log=note)
        frame = add_keys(store.frame())
    swept = agg[_has_tag(agg, "main") | _has_tag(agg, "snr_aware") | _has_tag(agg, "error_free")]
    thr = threshold_snr(swept, metric=threshold_metric(agg), fraction=0.9)
    eq = equal_quality(agg, metric="psnr_fidelity_db")
    md = _report_markdown(spec, meta, agg, frame, thr, eq, figures, preset, workers, sweep_s, notes)
    with atomic_output(out / "report.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    return out / "report.md"


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}" if abs(v) >= 100 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def _pm(mean: float, half: float, digits: int = 3) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "n/a"
    return f"{_fmt(mean, digits)} ± {_fmt(half, 2)}"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _has_tag(agg, tag: str):
    return agg["tags"].str.split(",").apply(lambda t: tag in t)


def threshold_metric(agg) -> str:
    """Prompt accuracy where the model has a classifier (tiny); otherwise SSIM against the error-free output."""
    col = agg.get("prompt_match_mean")
    return "prompt_match" if col is not None and col.notna().any() else "ssim_fidelity"


_METRIC_NAMES = {"prompt_match": "prompt accuracy", "ssim_fidelity": "SSIM fidelity"}


def _report_markdown(spec, meta, agg, frame, thr, eq, figures, preset, workers, sweep_s, notes) -> str:
    main = agg[_has_tag(agg, "main")]
    n_rows = int(agg["rows"].sum())
    parts = [
        f"# megen case study: {spec.name}",
        "",
        f"Model `{spec.model}` (weights fingerprint `{meta.get('model_fingerprint')}`), "
        f"{agg['cfg_steps'].iloc[0]} DDIM steps, strength {agg['cfg_strength'].iloc[0]}, guidance "
        f"{agg['cfg_guidance'].iloc[0]}, batch {spec.batch_size}, seeds {spec.seeds}. {len(agg)} configurations, "
        f"{n_rows} images. "
        + (
            f"Sweep wall time {sweep_s:.0f} s on {workers} worker(s); "
            if sweep_s is not None
            else "Report written from the stored rows (sweep wall time not measured here); "
        )
        + f"compute time {float(frame['wall_s'].sum()):.0f} worker-seconds summed over images "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}).",
        "",
        "Metrics: *fidelity* compares each received image with the error-free unsplit ES pipeline's output "
        "for the same prompt, reference and seed; *prompt accuracy* is the evaluation classifier's agreement "
        "with the prompt's class (our stand-in for CLIP score); ± is the half width of the normal 95% "
        "confidence interval over images. FID is on the evaluation classifier's 128-d features against "
        "the 10 000 Fashion-MNIST test images (refused below 100 samples, biased upwards below 1000). "
        "Costs are per image (batch totals / batch size).",
        "",
    ]
    if notes:
        parts += ["Notes from this run:", "", *[f"* {n}" for n in dict.fromkeys(notes)], ""]
    names = {p.stem for p in figures}
    captions = {
        "quality_vs_snr": "Quality against SNR (95% CI bands).",
        "channel_uses": "Channel uses per image (UL/DL/BH) next to centralized at equal fidelity PSNR.",
        "costs": "Latency and energy per image by node and link.",
        "image_grid": "Images: rows protocols, columns SNRs.",
        "frontier": "Fidelity against channel uses: MEG protocols vs every centralized variant and its capacity bound.",
    }
    parts += ["## Figures", ""]
    for name, cap in captions.items():
        if name in names:
            parts += [f"![{cap}](figures/{name}.png)", "", f"*{cap}* ([PDF](figures/{name}.pdf))", ""]
    parts += ["## Quality and costs per configuration (tag `main`)", ""]
    clip = "clip_score_mean" in main and bool(main["clip_score_mean"].notna().any())
    rows = []
    for _, r in main.iterrows():
        rows.append(
            [
                r["label"],
                r["channel"],
                "" if r["channel"] == "none" else _fmt(float(r["snr_db"])),
                _pm(r["psnr_fidelity_db_mean"], r["psnr_fidelity_db_ci95"]),
                _pm(r["ssim_fidelity_mean"], r["ssim_fidelity_ci95"]),
                _pm(r["prompt_match_mean"], r["prompt_match_ci95"]),
                *([_pm(r["clip_score_mean"], r["clip_score_ci95"])] if clip else []),
                f"{_fmt(r['fid'])} (n={int(r['fid_n'])})",
                _fmt(r["uses_uplink"]),
                _fmt(r["uses_downlink"]),
                _fmt(r["uses_backhaul"]),
                _fmt(r["latency_s"]),
                _fmt(r["energy_j"]),
                _fmt(r["link_failures"]),
            ]
        )
    parts += [
        md_table(
            [
                "protocol",
                "channel",
                "SNR dB",
                "PSNR fid. dB",
                "SSIM fid.",
                "prompt acc.",
                *(["CLIP score"] if clip else []),
                "FID",
                "UL uses",
                "DL uses",
                "BH uses",
                "latency s",
                "energy J",
                "failed blocks",
            ],
            rows,
        ),
        "",
    ]
    metric = threshold_metric(agg)
    what = _METRIC_NAMES[metric]
    local = agg[agg["protocol"] == "local"]
    if not local.empty:
        la = float(local[f"{metric}_mean"].iloc[0])
        parts += [
            f"Baseline `local` (the UE alone, no link): {what} {_pm(la, float(local[f'{metric}_ci95'].iloc[0]))}. "
            f"{what.capitalize()} at or below this is not a gain of the link.",
            "",
        ]
    parts += [f"## Where each protocol falls below 90% of its error-free {what}", ""]
    if not thr.empty:
        parts += [
            md_table(
                [
                    "protocol",
                    "channel",
                    f"error-free {what}",
                    "from",
                    "90% threshold",
                    "SNR (dB) below which it falls",
                ],
                [
                    [
                        t["label"],
                        t["channel"],
                        t["error_free"],
                        t["reference_from"],
                        t["threshold"],
                        _fmt(t["snr_db_below"]),
                    ]
                    for _, t in thr.iterrows()
                ],
            ),
            "",
        ]
    parts += [
        "## Channel uses against centralized at equal fidelity, and centralized at equal bandwidth",
        "",
        "For every MEG configuration: the fewest channel uses of any centralized variant (codec quality x MCS, "
        "same channel and SNR) reaching at least its fidelity PSNR; the capacity bound `bits / log2(1 + SNR)` "
        "(ergodic capacity for fading) for that variant's bits; and the best fidelity any centralized variant "
        "reaches with at most the MEG configuration's channel uses. n/a: no variant qualifies. Where the "
        "centralized variant's code blocks fail, equal quality compares two broken images.",
        "",
    ]
    keep = set(agg[_has_tag(agg, "main") | _has_tag(agg, "frontier")]["label"])
    eq = eq[eq["label"].isin(keep)] if not eq.empty else eq
    if not eq.empty:
        eq_rows = [
            [
                e["label"],
                e["channel"],
                _fmt(e["snr_db"]),
                e["psnr_fidelity_db"],
                e["uses_total"],
                e["baseline_label"] or "none reaches it",
                e["baseline_uses_equal_quality"],
                e["baseline_failures_equal_quality"],
                e["capacity_uses"],
                e["baseline_quality_equal_uses"],
            ]
            for _, e in eq.iterrows()
            if e["channel"] != "none"
        ]
        parts += [
            md_table(
                [
                    "protocol",
                    "channel",
                    "SNR dB",
                    "PSNR fid. dB",
                    "uses",
                    "centralized at equal quality",
                    "its uses",
                    "its failed blocks",
                    "capacity bound uses",
                    "centralized PSNR at equal uses",
                ],
                eq_rows,
            ),
            "",
        ]
    parts += _snr_aware_section(agg, frame)
    parts += _sync_section(agg)
    parts += [
        "## Data",
        "",
        "* `results.sqlite`: the sweep (one row per image, images as PNG); `megen plot results.sqlite` redraws the figures.",
        "* `rows.csv`, `rows.parquet`: every row without images; `summary.csv`: one line per configuration.",
        "",
    ]
    return "\n".join(parts)


def _pair_off(agg, field: str, values: tuple) -> list[tuple[Any, Any]]:
    """Cells that differ only in ``field`` (one value each of ``values``)."""
    import json

    cfg_cols = [c for c in agg.columns if c.startswith("cfg_") and c not in (f"cfg_{field}", "cfg_seed")]
    keys = agg[cfg_cols + ["task"]].astype(str).apply(lambda r: json.dumps(list(r)), axis=1)
    pairs = []
    for _, grp in agg.groupby(keys, sort=False):
        found = {v: grp[grp[f"cfg_{field}"] == v] for v in values}
        if all(not f.empty for f in found.values()):
            pairs.append(tuple(found[v].iloc[0] for v in values))
    return pairs


def _snr_aware_section(agg, rows) -> list[str]:
    from megen.experiments.stats import paired_difference

    pairs = _pair_off(agg, "snr_aware", (True, False))
    if not pairs:
        return []
    lines = []
    for on, off in pairs:
        if on["channel"] == "none":
            continue
        cells = [_fmt(float(on["snr_db"]))]
        for metric in ("psnr_fidelity_db", "prompt_match"):
            d = paired_difference(rows, on["cell"], off["cell"], metric)
            cells += [_fmt(d["mean_a"]), _fmt(d["mean_b"]), _pm(d["diff"], d["diff_ci95"])]
        lines.append([on["protocol"], on["channel"], *cells, str(int(d["n"]))])
    return [
        "## What receiver-side (SNR-aware) denoising buys",
        "",
        "Paired over the samples both variants ran (same prompts, references and noise); the difference is "
        "on minus off with its 95% interval.",
        "",
        md_table(
            [
                "protocol",
                "channel",
                "SNR dB",
                "PSNR fid. on",
                "off",
                "difference dB",
                "prompt acc. on",
                "off",
                "difference",
                "n",
            ],
            lines,
        ),  # fmt: skip
        "",
    ]


def _sync_section(agg) -> list[str]:
    sync = agg[_has_tag(agg, "sync")].sort_values(["protocol", "cfg_sync_every"])
    if sync.empty:
        return []
    rows = [
        [
            r["protocol"],
            int(r["cfg_sync_every"]),
            _fmt(float(r["snr_db"])),
            r["uses_backhaul"],
            r["bits_backhaul"],
            _pm(r["psnr_fidelity_db_mean"], r["psnr_fidelity_db_ci95"]),
            _pm(r["ssim_fidelity_mean"], r["ssim_fidelity_ci95"]),
        ]
        for _, r in sync.iterrows()
    ]
    return [
        "## Parallel multi-ES protocols: quality against halo exchange (`sync_every`, 0 = never)",
        "",
        md_table(
            ["protocol", "sync_every", "SNR dB", "backhaul uses", "backhaul bits", "PSNR fid.", "SSIM fid."],
            rows,
        ),
        "",
    ]
