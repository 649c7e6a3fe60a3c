"""``megen netsim figures``: latency vs offered load, capacity vs bandwidth, capacity vs edge servers.

Each figure sweeps one input of a :class:`NetsimConfig` for every protocol (``local`` and
``central`` beside the MEG protocols), with replication 0's drop and arrival pattern at each point,
and is written as ``netsim_<name>.png`` (matplotlib, Agg, the style of :mod:`megen.report.plots`)
next to ``netsim_figures.json`` holding the plotted numbers. The points are result rows
(:func:`sweep_rows`, the rows of :mod:`megen.store.netsim`); :func:`figure_data` turns rows, fresh or
read back from the results database, into the plotted numbers. Figures:

* ``latency_vs_load``: p95 latency (ms, log scale) against the offered load (requests per second);
  the deadline as a dashed line; points where more than 5% never finish are left out.
* ``capacity_vs_bandwidth``: service capacity against the carrier bandwidth (MHz, each link).
* ``capacity_vs_es``: service capacity against the number of edge servers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from megen.files import atomic_output, writable_folder, write_errors
from megen.netsim.batching import BatchCurve
from megen.netsim.cell import make_cell
from megen.netsim.config import NetsimConfig
from megen.netsim.demand import Demand
from megen.netsim.system import service_capacity, simulate_point

LOAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Offered loads of ``latency_vs_load`` as fractions of the largest stability bound of the protocols."""
BANDWIDTHS_MHZ = (5.0, 10.0, 20.0, 40.0)
EDGE_SERVERS = (1, 2, 4, 8)


def sweep_rows(
    cfg: NetsimConfig,
    demands: dict[str, Demand],
    profiles: Any,
    step: Callable[[str], None] | None = None,
    bandwidths_mhz: Sequence[float] = BANDWIDTHS_MHZ,
    edge_servers: Sequence[int] = EDGE_SERVERS,
    curve: BatchCurve | None = None,
) -> list[dict[str, Any]]:
    """The points of the three figures as result rows (``figure``, ``protocol``, ``x``, measures).

    ``latency_vs_load`` rows carry every :class:`PointStats` measure at the offered load ``x``
    (requests/s); ``capacity_vs_bandwidth`` (``x`` MHz) and ``capacity_vs_es`` (``x`` edge servers)
    rows the ``service_capacity`` and ``stability_bound``. ``curve`` is the ES batch curve, needed
    when ``cfg.es_batch > 1``.
    """
    from megen.netsim.system import resource_loads, stability_bound

    cell = make_cell(cfg, 0, curve)
    top = max(stability_bound(resource_loads(cfg, cell, d, profiles)) for d in demands.values())
    rows: list[dict[str, Any]] = []
    for name, d in demands.items():
        for f in LOAD_FRACTIONS:
            point = simulate_point(cfg, cell, d, profiles, f * top, 0)
            rows.append({"figure": "latency_vs_load", "protocol": name, "x": f * top, **asdict(point)})
        for bw in bandwidths_mhz:
            c = cfg.with_(bandwidth_mhz=bw)
            cap, bound = service_capacity(c, make_cell(c, 0, curve), d, profiles, 0)
            rows.append(_capacity_row("capacity_vs_bandwidth", name, bw, cap, bound))
        for m in edge_servers:
            cap, bound = service_capacity(cfg.with_(num_es=m), cell, d, profiles, 0)
            rows.append(_capacity_row("capacity_vs_es", name, m, cap, bound))
        if step is not None:
            step(name)
    return rows


def _capacity_row(figure: str, protocol: str, x: float, cap: float, bound: float) -> dict[str, Any]:
    return {
        "figure": figure,
        "protocol": protocol,
        "x": float(x),
        "service_capacity": cap,
        "stability_bound": bound,
    }


def figure_data(rows: Sequence[Mapping[str, Any]], deadline_s: float) -> dict[str, Any]:
    """The plotted numbers (JSON-ready) from result rows (:func:`sweep_rows` or the store).

    Returns:
        ``rates``, ``bandwidths_mhz``, ``edge_servers`` (the x values, ascending), ``deadline_s``,
        and per protocol ``p95_s`` (``None`` where the p95 never finishes), ``capacity_vs_bandwidth``
        and ``capacity_vs_es`` (requests/s).
    """

    def xs(figure: str) -> list[float]:
        return sorted({float(r["x"]) for r in rows if r["figure"] == figure})

    def series(figure: str, key: str) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for r in sorted((r for r in rows if r["figure"] == figure), key=lambda r: float(r["x"])):
            v = r.get(key)
            ok = isinstance(v, int | float) and math.isfinite(v)
            out.setdefault(r["protocol"], []).append(float(v) if isinstance(v, int | float) and ok else None)
        return out

    return {
        "rates": xs("latency_vs_load"),
        "bandwidths_mhz": xs("capacity_vs_bandwidth"),
        "edge_servers": [int(x) for x in xs("capacity_vs_es")],
        "deadline_s": deadline_s,
        "p95_s": series("latency_vs_load", "latency_p95_s"),
        "capacity_vs_bandwidth": series("capacity_vs_bandwidth", "service_capacity"),
        "capacity_vs_es": series("capacity_vs_es", "service_capacity"),
    }


def sweep_data(
    cfg: NetsimConfig,
    demands: dict[str, Demand],
    profiles: Any,
    step: Callable[[str], None] | None = None,
    curve: BatchCurve | None = None,
) -> dict[str, Any]:
    """:func:`figure_data` of :func:`sweep_rows` with the default sweeps."""
    return figure_data(sweep_rows(cfg, demands, profiles, step, curve=curve), cfg.deadline_s)


def _style(name: str) -> dict[str, Any]:
    if name == "local":
        return {"linestyle": ":", "color": "0.4", "marker": "s"}
    if name == "central":
        return {"linestyle": "--", "color": "black", "marker": "o"}
    return {"marker": "^"}


def write_figures(data: dict[str, Any], out: Path | str) -> list[Path]:
    """Write the three PNGs and ``netsim_figures.json`` into the folder ``out``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    folder = writable_folder(out)
    paths = []
    panels = (
        ("latency_vs_load", "rates", "p95_s", "offered load (requests/s)", "p95 latency (ms)"),
        (
            "capacity_vs_bandwidth",
            "bandwidths_mhz",
            "capacity_vs_bandwidth",
            "bandwidth per link (MHz)",
            "service capacity (requests/s)",
        ),
        ("capacity_vs_es", "edge_servers", "capacity_vs_es", "edge servers", "service capacity (requests/s)"),
    )
    for name, xkey, ykey, xlabel, ylabel in panels:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for proto, ys in data[ykey].items():
            scale = 1e3 if ykey == "p95_s" else 1.0
            pts = [(x, y * scale) for x, y in zip(data[xkey], ys, strict=True) if y is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=proto, **_style(proto))
        if ykey == "p95_s":
            ax.axhline(1e3 * data["deadline_s"], color="red", linestyle="--", linewidth=1, label="deadline")
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        path = folder / f"netsim_{name}.png"
        with write_errors(path, "figure"):
            fig.savefig(path, dpi=130, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    with atomic_output(folder / "netsim_figures.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return [*paths, folder / "netsim_figures.json"]


__all__ = [
    "BANDWIDTHS_MHZ",
    "EDGE_SERVERS",
    "LOAD_FRACTIONS",
    "figure_data",
    "sweep_data",
    "sweep_rows",
    "write_figures",
]
