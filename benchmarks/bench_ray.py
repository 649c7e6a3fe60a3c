"""Ray runtime benchmarks: per-hop overhead, DIUG with 2 ES actors vs 1, a Ray sweep vs the process pool.

Run:  PYTHONPATH=src RAY_USAGE_STATS_ENABLED=0 python benchmarks/bench_ray.py [--quick] [--out FILE]
      [--parts hop,diug,diug_http,sweep] [--steps N] [--batch B] [--reps R]

Writes ``benchmarks/results/ray.json``:

* ``hop``: per payload size (float32 values), the median wall-clock seconds of one transfer (transmit on
  the UE, channel and receiver on the ES) into an in-process executor and into a Ray actor, and the
  difference (the Ray hop's overhead);
* ``diug``: DIUG (tiny model) wall-clock with ES1 and ES2 on two actors vs both hosted on one actor;
* ``diug_http``: the same with ES1 and ES2 on two `megen serve` processes vs both on one process
  (each timed run has its own seed, so no stage memo answers a repeat);
* ``sweep``: the same small sweep on the process pool (2 workers) and on a local Ray with 2 workers.

Numbers depend on the machine and its load; the JSON records CPU count and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from megen.config import RunConfig
from megen.costs.flops import FlopMeter
from megen.costs.profiles import load_profiles
from megen.data import prompt_for
from megen.protocols.builders import build_plan
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import LocalExecutor, Outgoing
from megen.protocols.items import ItemMeta
from megen.protocols.plan import ItemRef
from megen.protocols.runner import make_links
from megen.runtime.ray_executor import RayEngine, RayPool, connect

LATENT = ItemRef("latent")


def _median_s(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_hop(pool: RayPool, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    """One analog transfer over an ideal link into a local executor vs a Ray actor, per payload size."""
    from megen.models.fingerprint import RANDOM_MODEL
    from megen.testing import build_random_tiny

    model = build_random_tiny(seed=0)
    links = make_links(RunConfig.from_paths({"channel": "none"}))
    local = LocalExecutor("ES1", model, frozenset(), links, FlopMeter())
    remote = pool.executor("ES1", "ES1", (RANDOM_MODEL, "cpu", "float32"), frozenset(), links)
    out = []
    for n in sizes:
        payload = Outgoing(torch.randn(1, n, generator=torch.Generator().manual_seed(n)), ItemMeta(step=0))

        def hop(ex: Any, payload: Outgoing = payload) -> None:
            ex.receive(LATENT, payload, mode="analog", link="uplink", stream_seed=1)

        t_local = _median_s(lambda: hop(local), reps)
        t_ray = _median_s(lambda: hop(remote), reps)
        out.append(
            {
                "values": n,
                "bytes": 4 * n,
                "local_s": t_local,
                "ray_s": t_ray,
                "overhead_s": t_ray - t_local,
            }
        )
        print(f"hop {4 * n:>10} B: local {t_local * 1e3:8.3f} ms, ray {t_ray * 1e3:8.3f} ms")
    return out


class _OneHost(RayEngine):
    """Every ES hosted on the actor of ES1 (the 1-actor baseline)."""

    def place(self, node, cfg):
        if node == "UE":
            return super().place(node, cfg)
        return self.pool.executor("ES1", node, self._key(node), cfg.parts(node), self.links)


def _runs_s(engine: Any, plan: Any, prompts: list[str], steps: int, seeds: range) -> float:
    """Median wall-clock seconds of ``engine`` running ``plan`` once per seed (the first: a warm-up).

    Every run has its own seed, so no stage memo (in this process or on a node) answers a repeat.
    """
    times = []
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        engine.run(plan, prompts, EngineConfig(num_steps=steps, seed=seed))
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _diug(steps: int) -> tuple[RunConfig, Any]:
    cfg = RunConfig.from_paths({"steps": steps, "channel": "awgn", "snr_db": 10.0, "num_es": 2})
    return cfg, build_plan("DIUG", cfg, 0, False)


def bench_diug(pool: RayPool, steps: int, batch: int, reps: int) -> dict[str, Any]:
    """DIUG on the tiny model: 2 ES actors (parallel tiles) vs both ESs on one actor."""
    from megen.models.tiny import load_tiny

    model = load_tiny()
    cfg, plan = _diug(steps)
    prompts = [prompt_for(i % 10) for i in range(batch)]
    res: dict[str, Any] = {}
    for k, (name, cls) in enumerate((("two_actors", RayEngine), ("one_actor", _OneHost))):
        engine = cls(model, make_links(cfg), load_profiles(None), pool=pool)
        res[f"{name}_s"] = _runs_s(engine, plan, prompts, steps, range(100 * k, 100 * k + reps + 1))
    res["speedup"] = res["one_actor_s"] / res["two_actors_s"]
    res.update(steps=steps, batch=batch, model="tiny", sync_every=cfg.protocol.sync_every)
    print(f"DIUG: 2 actors {res['two_actors_s']:.3f} s, 1 actor {res['one_actor_s']:.3f} s")
    return res


def bench_diug_http(steps: int, batch: int, reps: int) -> dict[str, Any]:
    """DIUG on the tiny model with ES1 and ES2 on two `megen serve` processes vs both on one process.

    The same plan and work either way (one process serves both nodes one call at a time); the UE runs
    in this process. Each server process has one torch thread.
    """
    from megen.models.tiny import load_tiny
    from megen.runtime.http_executor import RemoteEngine
    from megen.testing.serve import start_servers, stop_server

    model = load_tiny()
    cfg, plan = _diug(steps)
    prompts = [prompt_for(i % 10) for i in range(batch)]
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text("bench-token")
        started = start_servers(token_file, 2, timeout_s=600)
        try:
            urls = [url for _, url in started]
            for k, (name, es) in enumerate((("two_processes", urls), ("one_process", [urls[0]] * 2))):
                engine = RemoteEngine(model, make_links(cfg), load_profiles(None), es_urls=es,
                                      links_section=cfg.links, token="bench-token")  # fmt: skip
                res[f"{name}_s"] = _runs_s(engine, plan, prompts, steps, range(100 * k, 100 * k + reps + 1))
                res[f"{name}_wall_nodes_s"] = engine.wall.summary()["nodes"]
        finally:
            for proc, _ in started:
                stop_server(proc)
    res["speedup"] = res["one_process_s"] / res["two_processes_s"]
    res.update(steps=steps, batch=batch, model="tiny", reps=reps, load_avg_1m=os.getloadavg()[0])
    print(
        f"DIUG over HTTP: 2 processes {res['two_processes_s']:.3f} s, 1 process {res['one_process_s']:.3f} s"
    )
    return res


def bench_sweep(samples: int) -> dict[str, Any]:
    """A small sweep on the process pool (2 workers) vs on a local Ray (2 workers)."""
    import ray

    from megen.experiments.spec import spec_from_flags
    from megen.experiments.sweep import run_sweep

    spec = spec_from_flags(
        protocols="central,CIAG,DIUG",
        channels="awgn",
        snr_db="0,5,10",
        transmissions="analog",
        samples=samples,
        seeds="0",
        model="tiny",
        batch_size=4,
        extra={"steps": 10},
    )
    ray.shutdown()  # the Ray sweep starts its own local Ray with 2 CPUs (start-up included)
    res: dict[str, Any] = {"rows": 9 * samples, "steps": 10, "batch_size": 4}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend in (("pool", "local"), ("ray", "ray")):
            t0 = time.perf_counter()
            r = run_sweep(spec, Path(tmp) / f"{name}.sqlite", workers=2, progress=False, log=lambda _: None,
                          backend=backend)  # fmt: skip
            res[f"{name}_s"] = time.perf_counter() - t0
            res[f"{name}_steady_rows_per_s"] = r.steady_rows_per_s()
    res["ray_vs_pool"] = res["ray_s"] / res["pool_s"]
    print(f"sweep: pool {res['pool_s']:.1f} s, ray {res['ray_s']:.1f} s")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fewer sizes and repetitions.")
    ap.add_argument("--parts", default="hop,diug,sweep", help="Any of hop, diug, diug_http, sweep.")
    ap.add_argument("--steps", type=int, default=None, help="DIUG steps (default 25; --quick 10).")
    ap.add_argument("--batch", type=int, default=None, help="DIUG images per run (default 8; --quick 4).")
    ap.add_argument("--reps", type=int, default=3, help="DIUG timed runs per placement (median).")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray.json")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    torch.set_num_threads(1)
    sizes = [256, 16_384, 262_144] if args.quick else [256, 4096, 65_536, 1_048_576, 4_194_304]
    reps = 5 if args.quick else 20
    steps = args.steps or (10 if args.quick else 25)
    batch = args.batch or (4 if args.quick else 8)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": 1, "load_avg_start": os.getloadavg()},
        "command": "PYTHONPATH=src python benchmarks/bench_ray.py " + " ".join(sys.argv[1:]),
    }
    if parts & {"hop", "diug"}:
        connect(num_cpus=2)
        pool = RayPool(num_cpus=1, threads=1)
        try:
            if "hop" in parts:
                result["hop"] = bench_hop(pool, sizes, reps)
            if "diug" in parts:
                result["diug"] = bench_diug(pool, steps=steps, batch=batch, reps=args.reps)
        finally:
            pool.shutdown()
    if "diug_http" in parts:
        result["diug_http"] = bench_diug_http(steps=steps, batch=batch, reps=args.reps)
    if "sweep" in parts:
        result["sweep"] = bench_sweep(samples=4 if args.quick else 8)
    result["machine"]["load_avg_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
