"""``megen reproduce --preset netsim``: the system-level study in one command, written to a report folder.

Runs :data:`PRESET` (six protocols, 50 UEs, 1 000 requests per simulation, 4 bisection steps, with
the tiny model's shipped demands about a minute or two on an idle core): the protocol table at the
preset's load (with service capacities), the three figure sweeps (:func:`megen.netsim.plots.sweep_rows`)
and the service capacity against the largest ES batch (1 ES, the measured batch curve). Every row
goes into ``results.sqlite`` (table ``netsim_results``, :mod:`megen.store.netsim`); the figures,
``netsim.md`` and ``netsim.csv`` / ``netsim.parquet`` are then written from the rows read back from
the database, so ``report_only`` redraws them without simulating.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from megen.errors import MegenError
from megen.netsim.config import NetsimConfig, make_config

PRESET: dict[str, Any] = {
    "protocols": ("central", "local", "CIAG", "ESUC", "UIDG", "DIUG"),
    "num_ues": 50,
    "requests": 1000,
    "capacity_steps": 4,
    "arrival_rate": 1000.0,
}
"""The netsim reproduce preset: keys of :class:`NetsimConfig` on top of the defaults."""
SCENARIO_NAMES = {"umi": "UMi (street canyon)", "uma": "UMa"}
BATCHES = (1, 4, 16)
"""Largest ES batches of the ``capacity_vs_batch`` rows (with one edge server)."""

Log = Callable[[str], None]


def preset_config(model: str = "tiny", cache_dir: str | None = None) -> NetsimConfig:
    """The configuration of :data:`PRESET` for ``model`` (demands cached in ``cache_dir``)."""
    extra = {"cache_dir": cache_dir} if cache_dir is not None else {}
    return make_config({**PRESET, "model": model, **extra})


def store_rows(cfg: NetsimConfig, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with the run digest and configuration of ``cfg`` added (ready for ``write_netsim``)."""
    from megen.store.netsim import MEASURE_COLUMNS, run_digest

    config = cfg.model_dump(mode="json")
    run, text = run_digest(config), json.dumps(config, sort_keys=True)
    keep = {"figure", "protocol", "x", *MEASURE_COLUMNS}
    return [{**{k: v for k, v in r.items() if k in keep}, "run": run, "config_json": text} for r in rows]


def simulate_rows(cfg: NetsimConfig, log: Log | None = None, step: Log | None = None) -> list[dict[str, Any]]:
    """Every row of the study: ``table``, the three figure sweeps, ``capacity_vs_batch``."""
    from megen.costs.profiles import load_profiles
    from megen.netsim.batching import cached_batch_curve
    from megen.netsim.cell import make_cell
    from megen.netsim.plots import sweep_rows
    from megen.netsim.runner import demands, run_protocol_system
    from megen.netsim.system import service_capacity

    profiles = load_profiles(cfg.profiles)
    ds = demands(cfg, log)
    rows: list[dict[str, Any]] = []
    for name in cfg.protocols:
        obj = run_protocol_system(cfg, ds[name], profiles).to_dict(cfg)
        rows.append({**obj, "figure": "table", "x": cfg.arrival_rate})
    rows += sweep_rows(cfg, ds, profiles, step)
    curve = cached_batch_curve(cfg.model, cfg.batch_device, cfg.cache_dir, seed=cfg.seed, log=log)
    for b in BATCHES:
        c = cfg.with_(num_es=1, es_batch=b)
        cell = make_cell(c, 0, curve)
        for name in cfg.protocols:
            cap, bound = service_capacity(c, cell, ds[name], profiles, 0)
            row = {"figure": "capacity_vs_batch", "protocol": name, "x": float(b)}
            rows.append({**row, "service_capacity": cap, "stability_bound": bound})
    return rows


def _fmt(v: Any, scale: float = 1.0, digits: int = 0) -> str:
    if v is None or v != v:
        return "never"
    return f"{v * scale:,.{digits}f}".replace(",", " ")


def report_markdown(df: Any, cfg: NetsimConfig) -> str:
    """``netsim.md``: the protocol table, the capacity tables and the figures, from stored rows."""
    order = {name: k for k, name in enumerate(cfg.protocols)}
    df = df.sort_values(["figure", "x"]).sort_values("protocol", key=lambda s: s.map(order), kind="stable")
    t = df[df.figure == "table"]
    lines = [
        "# System level (megen netsim)",
        "",
        f"{SCENARIO_NAMES[cfg.scenario]} cell, {cfg.num_ues} UEs, {cfg.num_es} ESs, {cfg.bandwidth_mhz:g} MHz each way, "
        f"{cfg.scheduler}, deadline {1e3 * cfg.deadline_s:g} ms, {cfg.requests} requests per simulation, "
        f"seed {cfg.seed}, model {cfg.model}. Rows: `results.sqlite` table `netsim_results`.",
        "",
        f"## At {cfg.arrival_rate:g} requests/s",
        "",
        "| protocol | p50 ms | p95 ms | p99 ms | within deadline | ES use | UL use | DL use | UE mJ | PSNR dB "
        "| capacity req/s | bound req/s | bottleneck |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t.itertuples():
        lines.append(
            f"| {r.protocol} | {_fmt(r.latency_p50_s, 1e3, 2)} | {_fmt(r.latency_p95_s, 1e3, 2)} | "
            f"{_fmt(r.latency_p99_s, 1e3, 2)} | {r.deadline_share:.3f} | {r.es_utilisation:.3f} | "
            f"{r.uplink_utilisation:.3f} | {r.downlink_utilisation:.3f} | {_fmt(r.ue_energy_j, 1e3, 2)} | "
            f"{_fmt(r.quality_psnr_db, 1, 1)} | {_fmt(r.service_capacity)} | {_fmt(r.stability_bound)} | "
            f"{r.bottleneck} |"
        )
    for figure, label in (
        ("capacity_vs_bandwidth", "MHz"),
        ("capacity_vs_es", "ESs"),
        ("capacity_vs_batch", "largest ES batch (1 ES)"),
    ):
        part = df[df.figure == figure]
        xs = sorted(set(part.x))
        lines += ["", f"## Service capacity (requests/s) against {label}", ""]
        lines.append("| protocol | " + " | ".join(f"{x:g}" for x in xs) + " |")
        lines.append("|---" * (len(xs) + 1) + "|")
        for proto in dict.fromkeys(part.protocol):
            caps = part[part.protocol == proto].service_capacity
            lines.append(f"| {proto} | " + " | ".join(_fmt(c) for c in caps) + " |")
    lines += ["", "## Figures", ""]
    for name in ("latency_vs_load", "capacity_vs_bandwidth", "capacity_vs_es"):
        lines.append(f"![{name}](netsim_{name}.png)")
    return "\n".join(lines) + "\n"


def reproduce_netsim(
    out: Path | str,
    *,
    model: str = "tiny",
    log: Log | None = None,
    step: Log | None = None,
    report_only: bool = False,
    cache_dir: str | None = None,
) -> Path:
    """Simulate :data:`PRESET` into ``out/results.sqlite`` and write ``out/netsim.md``; returns its path.

    Raises:
        MegenError: an unwritable folder, a ``results.sqlite`` that is not SQLite, or ``report_only``
            without stored rows of this preset.
    """
    from megen.files import atomic_output, writable_folder
    from megen.netsim.plots import figure_data, write_figures
    from megen.store.netsim import export_netsim, read_netsim, run_digest, write_netsim

    folder = writable_folder(out)
    db = folder / "results.sqlite"
    cfg = preset_config(model, cache_dir)
    if not report_only:
        write_netsim(db, store_rows(cfg, simulate_rows(cfg, log, step)))
    elif not db.is_file():
        raise MegenError(f"{db} holds no netsim rows of this preset; run without --report-only first")
    df = read_netsim(db, run=run_digest(cfg.model_dump(mode="json")))
    if df.empty:
        raise MegenError(f"{db} holds no netsim rows of this preset; run without --report-only first")
    rows = df.to_dict("records")
    write_figures(figure_data(rows, cfg.deadline_s), folder)
    export_netsim(db, csv=folder / "netsim.csv", parquet=folder / "netsim.parquet")
    path = folder / "netsim.md"
    with atomic_output(path) as tmp:
        tmp.write_text(report_markdown(df, cfg), encoding="utf-8")
    return path


__all__ = [
    "BATCHES",
    "PRESET",
    "preset_config",
    "report_markdown",
    "reproduce_netsim",
    "simulate_rows",
    "store_rows",
]
