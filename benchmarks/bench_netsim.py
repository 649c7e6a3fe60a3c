"""Simulation speed of the cell simulator: 100 000 requests over 100 UEs (issue 12 item 4).

Usage: python benchmarks/bench_netsim.py [--requests 100000] [--ues 100] [--protocols central,CIAG]
       [--load 0.7] [--cache-dir runs/netsim-cache]
Each protocol's demand comes from the engine cache (measured when missing); the arrival rate is
``load`` times the protocol's stability bound. Times one :func:`simulate_point` (SimPy run and
measures, not the UE drop or the link tables), wall and CPU seconds (CPU seconds tell the
speed on an idle core when the machine is shared), and the load average before and after.
Writes benchmarks/results/netsim.json. Target on a 2-core CPU: < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from megen.costs.profiles import load_profiles
from megen.netsim.cell import make_cell
from megen.netsim.config import make_config
from megen.netsim.runner import demands
from megen.netsim.system import resource_loads, simulate_point, stability_bound


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--ues", type=int, default=100)
    ap.add_argument("--protocols", default="central,CIAG")
    ap.add_argument("--load", type=float, default=0.7)
    ap.add_argument("--cache-dir", default="runs/netsim-cache")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "netsim.json")
    args = ap.parse_args()
    cfg = make_config(
        {
            "protocols": tuple(args.protocols.split(",")),
            "num_ues": args.ues,
            "requests": args.requests,
            "cache_dir": args.cache_dir,
        }
    )
    profiles = load_profiles()
    cell = make_cell(cfg, 0)
    results = {}
    for name, d in demands(cfg, log=print).items():
        rate = args.load * stability_bound(resource_loads(cfg, cell, d, profiles))
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        point = simulate_point(cfg, cell, d, profiles, rate, 0)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        results[name] = {
            "requests": args.requests,
            "ues": args.ues,
            "rate_per_s": rate,
            "seconds": seconds,
            "requests_per_s": args.requests / seconds,
            "cpu_seconds": cpu,
            "tasks_per_request": len(d.tasks),
            "deadline_share": point.deadline_share,
            "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        }
        print(
            f"{name}: {args.requests} requests in {seconds:.1f} s wall, {cpu:.1f} s CPU "
            f"({args.requests / seconds:.0f}/s), "
            f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
        )
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
