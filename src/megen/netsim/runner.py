"""``megen netsim``: run every protocol of a :class:`NetsimConfig` and collect its system results.

:func:`run_netsim` returns one :class:`ProtocolResult` per protocol: means over replications (with
95% Student-t intervals when ``R >= 2``) of the measures of :class:`megen.netsim.system.PointStats`
at ``arrival_rate``, the service capacity of each replication, the a-priori resource loads and the
bottleneck (the resource that saturates first). Identical inputs give identical results: every
random draw comes from :func:`megen.rng.derive` streams named by seed and replication.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from megen.errors import MegenError
from megen.netsim.batching import BatchCurve, cached_batch_curve
from megen.netsim.cell import Arrivals, make_cell
from megen.netsim.config import NetsimConfig
from megen.netsim.demand import Demand, DemandSpec, cached_demand
from megen.netsim.queue import t_interval
from megen.netsim.system import PointStats, resource_loads, service_capacity, simulate_point

Log = Callable[[str], None]
Step = Callable[[str], None]


@dataclass(frozen=True)
class ProtocolResult:
    """System results of one protocol (see :meth:`to_dict` for the JSON keys)."""

    protocol: str
    points: tuple[PointStats, ...]
    capacities: tuple[float, ...]
    bound: float
    loads: dict[str, float]
    demand: Demand

    def to_dict(self, cfg: NetsimConfig) -> dict[str, Any]:
        """JSON-ready object: measures (means, ``*_ci`` 95% intervals), capacity, loads, demand.

        Non-finite numbers (``inf`` latency when more than 1% of requests never finish) become null.
        """
        out: dict[str, Any] = {"protocol": self.protocol, "arrival_rate": cfg.arrival_rate}
        for f in fields(PointStats):
            values = [getattr(p, f.name) for p in self.points]
            if f.name == "stable":
                out["stable"] = all(values)
            elif f.name == "backlog_growth_per_s":
                grown = [v for v in values if v is not None]
                out[f.name] = float(np.mean(grown)) if grown else None
            else:
                out[f.name], out[f"{f.name}_ci"] = _mean_ci(values)
        cap, cap_ci = _mean_ci(list(self.capacities)) if self.capacities else (None, None)
        out["service_capacity"], out["service_capacity_ci"] = cap, cap_ci
        out["stability_bound"] = self.bound
        out["load_per_request_per_s"] = self.loads
        out["bottleneck"] = max(self.loads, key=lambda k: self.loads[k])
        out["demand"] = {
            "flops": {r: self.demand.total(r) for r in ("UE", "ES")},
            "link": {r: self.demand.total(r) for r in ("uplink", "downlink", "backhaul")},
            "psnr_fidelity_db": dict(
                zip(map(str, self.demand.snr_grid_db), self.demand.psnr_fidelity_db, strict=True)
            ),
        }
        return _finite(out)


def _mean_ci(values: list[float]) -> tuple[float, list[float] | None]:
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2 or not np.isfinite(arr).all():
        return mean, None
    lo, hi = t_interval(arr)
    return mean, [lo, hi]


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def read_trace(path: Path | str, num_ues: int, seed: int) -> Arrivals:
    """Arrivals from a CSV file: one ``time_s[,ue]`` per line (a header line is skipped).

    Times must be finite, ``>= 0`` and ascending; UEs integers in ``0..num_ues-1`` (drawn uniformly
    from the stream ``derive(seed, "netsim", "trace", "ue")`` when the column is missing).

    Raises:
        MegenError: a missing file, a bad line, or fewer than 2 arrivals.
    """
    from megen.rng import derive

    p = Path(path)
    if not p.is_file():
        raise MegenError(f"trace file not found: {p}")
    rows: list[list[str]] = []
    for k, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
        parts = [x.strip() for x in line.split(",") if x.strip()]
        if not parts or (k == 0 and not _is_number(parts[0])):
            continue
        if not all(_is_number(x) for x in parts) or len(parts) > 2:
            raise MegenError(f"trace {p} line {k + 1}: expected time_s[,ue], got {line!r}")
        rows.append(parts)
    if len(rows) < 2:
        raise MegenError(f"trace {p} holds fewer than 2 arrivals")
    times = np.array([float(r[0]) for r in rows])
    if not np.isfinite(times).all() or times.min() < 0 or np.any(np.diff(times) < 0):
        raise MegenError(f"trace {p}: times must be finite, >= 0 and ascending")
    if all(len(r) == 2 for r in rows):
        ue = np.array([float(r[1]) for r in rows])
        if np.any(ue != np.round(ue)) or ue.min() < 0 or ue.max() >= num_ues:
            raise MegenError(f"trace {p}: UE indices must be integers in 0..{num_ues - 1}")
        ue = ue.astype(int)
    else:
        ue = np.random.default_rng(derive(seed, "netsim", "trace", "ue")).integers(0, num_ues, len(times))
    return Arrivals(times, ue)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def demands(cfg: NetsimConfig, log: Log | None = None) -> dict[str, Demand]:
    """Each protocol's demand, from the cache or measured with the engine (one shared session)."""
    from megen.session import Session

    session = Session()
    out = {}
    for name in cfg.protocols:
        spec = DemandSpec(
            name,
            cfg.model,
            cfg.steps,
            cfg.demand_num_es,
            cfg.samples,
            tuple(cfg.snr_grid_db),
            "awgn",
            cfg.seed,
        )
        out[name] = cached_demand(spec, cfg.cache_dir, session=session, log=log)
    return out


def batch_curve(cfg: NetsimConfig, log: Log | None = None) -> BatchCurve | None:
    """The ES batch curve of ``cfg.model`` on ``cfg.batch_device`` (cached), ``None`` when ``es_batch`` is 1."""
    if cfg.es_batch == 1:
        return None
    return cached_batch_curve(cfg.model, cfg.batch_device, cfg.cache_dir, seed=cfg.seed, log=log)


def run_protocol_system(
    cfg: NetsimConfig,
    demand: Demand,
    profiles: Any,
    trace: Arrivals | None = None,
    step: Step | None = None,
    curve: BatchCurve | None = None,
) -> ProtocolResult:
    """All replications of one protocol at ``cfg.arrival_rate`` (or the trace), plus capacities.

    ``curve`` is the ES batch curve (needed when ``cfg.es_batch > 1``, see :func:`batch_curve`).
    """
    points, caps = [], []
    bound, loads = math.inf, {}
    for r in range(cfg.replications):
        cell = make_cell(cfg, r, curve)
        loads = resource_loads(cfg, cell, demand, profiles)
        points.append(simulate_point(cfg, cell, demand, profiles, cfg.arrival_rate, r, trace))
        if cfg.capacity:
            cap, bound = service_capacity(cfg, cell, demand, profiles, r)
            caps.append(cap)
        if step is not None:
            step(f"{demand.protocol} replication {r + 1}/{cfg.replications}")
    if not cfg.capacity:
        top = max(loads.values())
        bound = 1.0 / top if top > 0 else math.inf
    return ProtocolResult(demand.protocol, tuple(points), tuple(caps), bound, loads, demand)


def run_netsim(cfg: NetsimConfig, log: Log | None = None, step: Step | None = None) -> list[ProtocolResult]:
    """Simulate every protocol of ``cfg`` (see the module docstring).

    Args:
        cfg: The configuration.
        log: Status messages (demand measurements).
        step: Called after each protocol replication (progress).
    """
    from megen.costs.profiles import load_profiles

    profiles = load_profiles(cfg.profiles)
    trace = read_trace(cfg.trace, cfg.num_ues, cfg.seed) if cfg.trace is not None else None
    ds = demands(cfg, log)
    curve = batch_curve(cfg, log)
    return [run_protocol_system(cfg, ds[name], profiles, trace, step, curve) for name in cfg.protocols]


__all__ = ["ProtocolResult", "batch_curve", "demands", "read_trace", "run_netsim", "run_protocol_system"]
