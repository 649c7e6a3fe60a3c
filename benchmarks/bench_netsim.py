"""Simulation speed of the cell simulator: 100 000 requests over 100 UEs (issue 12 item 4).

Usage: python benchmarks/bench_netsim.py [--requests 100000] [--ues 100] [--protocols central,local,...]
       [--load 0.7] [--es-batch 1] [--cache-dir runs/netsim-cache] [--profile]
Each protocol's demand comes from the engine cache (the shipped tiny-model demands, measured when
missing); with ``--es-batch B`` the ES serves batches of up to B (the shipped CPU batch curve); the
arrival rate is
``load`` times the protocol's stability bound. Times one :func:`simulate_point` (SimPy run and
measures, not the UE drop or the link tables), wall and CPU seconds (CPU seconds tell the
speed on an idle core when the machine is shared), and the load average before and after;
``--profile`` also prints the 12 functions of most own time (cProfile) of each run. SimPy events
per request are counted in a second, untimed run of :data:`COUNT_REQUESTS` requests.
Protocols default to those of ``megen netsim`` (:data:`megen.netsim.config.DEFAULT_PROTOCOLS`).
Writes benchmarks/results/netsim.json. Target on a 2-core CPU: < 60 s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import time
from pathlib import Path

from megen.costs.profiles import load_profiles
from megen.netsim.cell import make_cell, poisson_arrivals, simulate_cell
from megen.netsim.config import DEFAULT_PROTOCOLS, make_config
from megen.netsim.runner import batch_curve, demands
from megen.netsim.system import resource_loads, simulate_point, stability_bound

COUNT_REQUESTS = 5000


def events_per_request(cfg, cell, demand, profiles, rate: float) -> float:  # type: ignore[no-untyped-def]
    """SimPy events scheduled per request in a run of :data:`COUNT_REQUESTS` arrivals at ``rate``."""
    arrivals = poisson_arrivals(cfg, rate, 0, COUNT_REQUESTS)
    run = simulate_cell(cfg, cell, demand, profiles, arrivals, float("inf"))
    return run.events / COUNT_REQUESTS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--ues", type=int, default=100)
    ap.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS))
    ap.add_argument("--load", type=float, default=0.7)
    ap.add_argument("--es-batch", type=int, default=1)
    ap.add_argument("--cache-dir", default="runs/netsim-cache")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "netsim.json")
    args = ap.parse_args()
    cfg = make_config(
        {
            "protocols": tuple(args.protocols.split(",")),
            "num_ues": args.ues,
            "requests": args.requests,
            "cache_dir": args.cache_dir,
            "es_batch": args.es_batch,
        }
    )
    profiles = load_profiles()
    cell = make_cell(cfg, 0, batch_curve(cfg, log=print))
    results = {}
    for name, d in demands(cfg, log=print).items():
        rate = args.load * stability_bound(resource_loads(cfg, cell, d, profiles))
        load_before = os.getloadavg()[0]
        prof = cProfile.Profile() if args.profile else None
        t0, c0 = time.perf_counter(), time.process_time()
        if prof is not None:
            prof.enable()
        point = simulate_point(cfg, cell, d, profiles, rate, 0)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if prof is not None:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        results[name] = {
            "requests": args.requests,
            "ues": args.ues,
            "es_batch": args.es_batch,
            "profiled": args.profile,
            "rate_per_s": rate,
            "seconds": seconds,
            "requests_per_s": args.requests / seconds,
            "cpu_seconds": cpu,
            "tasks_per_request": len(d.tasks),
            "events_per_request": events_per_request(cfg, cell, d, profiles, rate),
            "deadline_share": point.deadline_share,
            "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        }
        print(
            f"{name}: {args.requests} requests in {seconds:.1f} s wall, {cpu:.1f} s CPU "
            f"({args.requests / seconds:.0f}/s, {results[name]['events_per_request']:.0f} events/request), "
            f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
        )
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
