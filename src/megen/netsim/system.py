"""Per-protocol system results: latency percentiles, deadline share, utilisation, service capacity.

:func:`run_netsim` measures (or loads) each protocol's demand, simulates it in the cell with
:func:`megen.netsim.cell.simulate_cell` for ``replications`` independent drops and arrival
patterns, and reports means with 95% Student-t intervals across replications (``None`` for one).

**Stability.** The a-priori load of each resource per request per second is: UE seconds over
``num_ues`` (each UE its own processor), ES seconds over ``num_es`` (with batches of ``es_batch``
B, ``factor(B) / B`` of one request's seconds: full batches, the most the ESs can serve), and for each link the REs a
request needs at its UE's goodput with the most multi-user diversity the scheduler can give, over
the REs per second. The **stability bound** is the rate at which the largest load reaches 1. At or
above it the run is cut to :data:`UNSTABLE_MAX_REQUESTS` arrivals, stops at the last one and reports
the backlog growth (requests per second, :func:`megen.netsim.queue.backlog_growth`); a run below it
that still leaves requests unfinished after its drain time is reported unstable the same way.

**Service capacity** = the highest arrival rate at which at least ``target_share`` of the measured
requests finish within the deadline: bisection on ``[0, bound]`` (``capacity_steps`` steps, each
point a full simulation with the same drop and arrival pattern), per replication.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from megen.costs.profiles import Profiles
from megen.errors import MegenError
from megen.netsim.cell import (
    RADIO,
    Arrivals,
    CellRun,
    CellState,
    make_cell,
    poisson_arrivals,
    simulate_cell,
)
from megen.netsim.config import NetsimConfig
from megen.netsim.demand import Demand
from megen.netsim.queue import Trace, backlog_growth

UNSTABLE_MAX_REQUESTS = 5_000
DRAIN_DEADLINES = 20.0
"""After the last arrival a stable run may drain for this many deadlines (plus half its length)."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PointStats:
    """Measures of one simulation (latencies in seconds; ``inf`` when more than the share missed)."""

    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    deadline_share: float
    es_utilisation: float
    es_mean_batch: float
    uplink_utilisation: float
    downlink_utilisation: float
    ue_energy_j: float
    quality_psnr_db: float
    failed_share: float
    stable: bool
    backlog_growth_per_s: float | None


def resource_loads(
    cfg: NetsimConfig, cell: CellState, demand: Demand, profiles: Profiles
) -> dict[str, float]:
    """Busy share of each resource per unit arrival rate (seconds per request over capacity)."""
    ue_s = demand.total("UE") / (profiles.ue.peak_flops * profiles.ue.efficiency)
    es_s = demand.total("ES") / (profiles.es.peak_flops * profiles.es.efficiency)
    full = len(cell.batch_factors)
    es_s *= cell.batch_factors[-1] / full  # full batches: the least ES time per request
    loads = {"UE": ue_s / cfg.num_ues, "ES": es_s / cfg.num_es}
    for link in RADIO:
        best = cell.goodput[link].max(axis=1)
        ok = ~cell.outage[link]
        res = 0.0
        for t in demand.tasks:
            if t.resource == link:
                safe = np.where(best > 0, best, np.inf)
                per = np.full(cfg.num_ues, t.amount) if t.unit == "channel_uses" else t.amount / safe
                res += float(per[ok].mean()) if ok.any() else 0.0
        loads[link] = res / cell.re_per_s
    return loads


def stability_bound(loads: dict[str, float]) -> float:
    """Arrival rate (per second) at which the most loaded resource is saturated (``inf`` if none)."""
    top = max(loads.values())
    return 1.0 / top if top > 0 else math.inf


def point_stats(cfg: NetsimConfig, run: CellRun, apriori_stable: bool) -> PointStats:
    """Measures of a simulation over its requests after the warm-up."""
    keep = slice(int(len(run.arrival_s) * cfg.warmup), None)
    lat = run.latency_s[keep]
    span = run.end_s if run.end_s > 0 else 1.0
    stable = apriori_stable and run.finished
    growth = None
    if not stable:
        trace = Trace(run.arrival_s, run.arrival_s, run.departure_s)
        growth = backlog_growth(trace, cfg.warmup)
    served = np.isfinite(lat)
    return PointStats(
        latency_mean_s=float(np.mean(lat)),
        latency_p50_s=float(np.percentile(lat, 50, method="inverted_cdf")),
        latency_p95_s=float(np.percentile(lat, 95, method="inverted_cdf")),
        latency_p99_s=float(np.percentile(lat, 99, method="inverted_cdf")),
        deadline_share=float(np.mean(lat <= cfg.deadline_s)),
        es_utilisation=run.es_busy_s / (cfg.num_es * span),
        es_mean_batch=run.es_mean_batch,
        uplink_utilisation=run.link_busy_s["uplink"] / span,
        downlink_utilisation=run.link_busy_s["downlink"] / span,
        ue_energy_j=float(np.nanmean(run.ue_energy_j[keep])) if served.any() else math.nan,
        quality_psnr_db=float(np.nanmean(run.quality_db[keep])) if served.any() else math.nan,
        failed_share=float(np.mean(~served)),
        stable=stable,
        backlog_growth_per_s=growth,
    )


def simulate_point(
    cfg: NetsimConfig,
    cell: CellState,
    demand: Demand,
    profiles: Profiles,
    rate: float,
    replication: int,
    arrivals: Arrivals | None = None,
) -> PointStats:
    """One full simulation at ``rate`` requests per second (or of the given trace ``arrivals``)."""
    bound = stability_bound(resource_loads(cfg, cell, demand, profiles))
    if arrivals is None:
        stable = rate < bound
        n = cfg.requests if stable else min(cfg.requests, UNSTABLE_MAX_REQUESTS)
        arrivals = poisson_arrivals(cfg, rate, replication, n)
    else:
        span = float(arrivals.time_s[-1] - arrivals.time_s[0]) or 1.0
        stable = len(arrivals.time_s) / span < bound
    last = float(arrivals.time_s[-1])
    stop = last * 1.5 + DRAIN_DEADLINES * cfg.deadline_s if stable else last * (1 + 1e-12)
    run = simulate_cell(cfg, cell, demand, profiles, arrivals, stop)
    return point_stats(cfg, run, stable)


def service_capacity(
    cfg: NetsimConfig, cell: CellState, demand: Demand, profiles: Profiles, replication: int
) -> tuple[float, float]:
    """``(capacity, stability bound)`` in requests per second, by bisection (module docstring)."""
    bound = stability_bound(resource_loads(cfg, cell, demand, profiles))
    if not math.isfinite(bound):
        raise MegenError(f"protocol {demand.protocol} uses no resource; its capacity is unbounded")

    def meets(rate: float) -> bool:
        point = simulate_point(cfg, cell, demand, profiles, rate, replication)
        return point.stable and point.deadline_share >= cfg.target_share

    hi = bound * (1 - 1e-3)
    if meets(hi):
        return hi, bound
    lo = 0.0
    if not meets(bound * 2.0**-cfg.capacity_steps):
        return 0.0, bound
    lo = bound * 2.0**-cfg.capacity_steps
    for _ in range(cfg.capacity_steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo, bound


__all__ = [
    "UNSTABLE_MAX_REQUESTS",
    "PointStats",
    "make_cell",
    "point_stats",
    "resource_loads",
    "service_capacity",
    "simulate_point",
    "stability_bound",
]
