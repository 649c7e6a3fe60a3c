"""``megen netsim figures``: latency vs offered load, capacity vs bandwidth, capacity vs edge servers.

Each figure sweeps one input of a :class:`NetsimConfig` for every protocol (``local`` and
``central`` beside the MEG protocols), with replication 0's drop and arrival pattern at each point,
and is written as ``netsim_<name>.png`` (matplotlib, Agg, the style of :mod:`megen.report.plots`)
next to ``netsim_figures.json`` holding the plotted numbers. Figures:

* ``latency_vs_load``: p95 latency (ms, log scale) against the offered load (requests per second);
  the deadline as a dashed line; points where more than 5% never finish are left out.
* ``capacity_vs_bandwidth``: service capacity against the carrier bandwidth (MHz, each link).
* ``capacity_vs_es``: service capacity against the number of edge servers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def sweep_data(
    cfg: NetsimConfig,
    demands: dict[str, Demand],
    profiles: Any,
    step: Callable[[str], None] | None = None,
    bandwidths_mhz: Sequence[float] = BANDWIDTHS_MHZ,
    edge_servers: Sequence[int] = EDGE_SERVERS,
    curve: BatchCurve | None = None,
) -> dict[str, Any]:
    """The numbers of the three figures (JSON-ready; ``None`` for a p95 that never finishes).

    ``curve`` is the ES batch curve, needed when ``cfg.es_batch > 1``.
    """
    from megen.netsim.system import resource_loads, stability_bound

    cell = make_cell(cfg, 0, curve)
    top = max(stability_bound(resource_loads(cfg, cell, d, profiles)) for d in demands.values())
    rates = [f * top for f in LOAD_FRACTIONS]
    out: dict[str, Any] = {
        "rates": rates,
        "bandwidths_mhz": list(bandwidths_mhz),
        "edge_servers": list(edge_servers),
    }
    out["deadline_s"] = cfg.deadline_s
    out["p95_s"], out["capacity_vs_bandwidth"], out["capacity_vs_es"] = {}, {}, {}
    for name, d in demands.items():
        p95 = [simulate_point(cfg, cell, d, profiles, r, 0).latency_p95_s for r in rates]
        out["p95_s"][name] = [v if np.isfinite(v) else None for v in p95]
        caps = []
        for bw in bandwidths_mhz:
            c = cfg.with_(bandwidth_mhz=bw)
            caps.append(service_capacity(c, make_cell(c, 0, curve), d, profiles, 0)[0])
        out["capacity_vs_bandwidth"][name] = caps
        caps = []
        for m in edge_servers:
            c = cfg.with_(num_es=m)
            caps.append(service_capacity(c, cell, d, profiles, 0)[0])
        out["capacity_vs_es"][name] = caps
        if step is not None:
            step(name)
    return out


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


__all__ = ["BANDWIDTHS_MHZ", "EDGE_SERVERS", "LOAD_FRACTIONS", "sweep_data", "write_figures"]
