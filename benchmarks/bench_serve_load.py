"""The edge server under concurrent clients: images/s and p50/p99 latency, with and without batching.

Usage: nice -n 10 python benchmarks/bench_serve_load.py [--levels 1,4,16,64] [--steps 5]
       [--servers uvicorn,ray,ray-fused]
An async httpx load generator: each client repeatedly generates one image entirely on the server
(open a run, put the prompt, stages T, Z, D[0:steps], G, get the image, close) through the wire
protocol. Every image has its own seed (image i of a level: seed ``1000 * level + i``), so the server's
stage memo never answers a repeated request, and every server gets the same seeds. Servers:
``uvicorn`` (`megen serve`: one call at a time, no batching), ``ray`` (`megen serve --ray`: one Ray
Serve replica, ``@serve.batch`` gathering concurrent calls and running them back to back) and
``ray-fused`` (`--ray --fuse`: the gathered denoising stages run as one batched model call). The images
of each seed are compared with the first server's: bit for bit without fusion, within 1e-4 with it.
Writes benchmarks/results/serve_load.json (rows of servers not run this time are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from megen.config import RunConfig
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import RunContext
from megen.runtime import wire
from megen.runtime.http_executor import KEEPALIVE_S
from megen.testing.serve import start_servers, stop_server

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stage(kind: str, start: int | None = None, stop: int | None = None) -> dict[str, Any]:
    return {"kind": kind, "node": "ES1", "start": start, "stop": stop, "denoiser": None, "tile": None}


async def one_image(client: httpx.AsyncClient, url: str, steps: int, seed: int) -> torch.Tensor:
    """One image generated entirely on the server (see the module docstring)."""
    links = RunConfig().links.model_dump(mode="json")
    ctx = wire.ctx_to_wire(RunContext(EngineConfig(num_steps=steps, seed=seed), 1, False, 0))

    async def call(run: str, name: str, header: dict[str, Any]) -> tuple[dict[str, Any], wire.Unpacker]:
        for _ in range(100):
            r = await client.post(f"{url}/v1/runs/{run}/{name}", content=wire.encode(header))
            if r.status_code != 503:
                break
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        r.raise_for_status()
        head, tensors = wire.decode(r.content)
        return head, wire.Unpacker(tensors)

    r = await client.post(url + "/v1/runs", json={"node": "ES1", "links": links})
    r.raise_for_status()
    run = r.json()["run"]
    await call(run, "put", {"item": "prompt", "value": {"texts": ["a photo of a bag"]}, "meta": {}})
    for st in (stage("T"), stage("Z"), stage("D", 0, steps), stage("G")):
        await call(run, "run_stage", {"stage": st, "ctx": ctx})
    head, u = await call(run, "get", {"item": "image"})
    await client.delete(f"{url}/v1/runs/{run}")
    image: torch.Tensor = u.value(head["value"])
    return image


async def load_level(
    url: str, clients: int, images: int, steps: int
) -> tuple[dict[str, Any], dict[int, torch.Tensor]]:
    """``clients`` concurrent clients generating ``images`` images in all; the row and images by seed."""
    latencies: list[float] = []
    results: dict[int, torch.Tensor] = {}
    todo = [1000 * clients + i for i in range(images)]
    limits = httpx.Limits(max_connections=clients + 4, keepalive_expiry=KEEPALIVE_S)  # see KEEPALIVE_S
    async with httpx.AsyncClient(headers=AUTH, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while todo:
                seed = todo.pop()
                t0 = time.perf_counter()
                results[seed] = await one_image(client, url, steps, seed)
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    row = {
        "clients": clients,
        "images": images,
        "images_per_s": images / wall,
        "p50_s": statistics.median(lat),
        "p99_s": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
        "wall_s": wall,
        "load_avg_1m": os.getloadavg()[0],
    }
    return row, results


SERVERS = {
    "uvicorn": ("uvicorn (no batching)", ()),
    "ray": ("ray serve (batching, back to back)", ("--ray",)),
    "ray-fused": ("ray serve (fused batching)", ("--ray", "--fuse")),
}


def bench(
    which: str, token_file: Path, levels: list[int], steps: int, reference: dict[int, torch.Tensor]
) -> dict[str, Any]:
    """Load one server at every level; its images are checked against ``reference`` (filled if empty)."""
    label, extra = SERVERS[which]
    t0 = time.perf_counter()
    ((proc, url),) = start_servers(token_file, 1, *extra, timeout_s=900)
    started_s = time.perf_counter() - t0
    print(label, f"up after {started_s:.1f} s", flush=True)
    try:
        rows, worst = [], 0.0
        for c in levels:
            row, images = asyncio.run(load_level(url, c, max(c, 8), steps))
            for seed, img in images.items():
                want = reference.setdefault(seed, img)
                worst = max(worst, float((img - want).abs().max()))
            print(label, json.dumps(row), flush=True)
            rows.append(row)
        metrics = httpx.get(url + "/metrics", headers=AUTH).text
        batch = [
            line for line in metrics.splitlines() if line.startswith(("megen_batch_size_", "megen_fused"))
        ]
        tol = 1e-4 if which == "ray-fused" else 0.0
        assert worst <= tol, f"{label}: images differ from the reference by {worst}"
        return {"server": label, "start_s": started_s, "rows": rows, "max_abs_diff_to_reference": worst,
                "batch_size_metrics": batch}  # fmt: skip
    finally:
        stop_server(proc, timeout_s=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--servers", default="uvicorn,ray,ray-fused", help="Which of uvicorn, ray, ray-fused.")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1m_start": os.getloadavg()[0],
        "steps": args.steps,
        "command": "nice -n 10 python benchmarks/bench_serve_load.py --servers " + args.servers,
        "servers": [],
    }
    reference: dict[int, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        for which in args.servers.split(","):
            try:
                out["servers"].append(bench(which, token_file, levels, args.steps, reference))
            except Exception as exc:  # report it in the results rather than losing the other servers' rows
                out["servers"].append({"server": SERVERS[which][0], "error": f"{type(exc).__name__}: {exc}"})
                print(out["servers"][-1], flush=True)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    path = Path(__file__).parent / "results" / "serve_load.json"
    if path.exists():  # keep the other servers' rows from an earlier run
        done = {s["server"] for s in out["servers"]}
        earlier = json.loads(path.read_text()).get("servers", [])
        out["servers"] = [s for s in earlier if s["server"] not in done] + out["servers"]
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
