"""The edge server under concurrent clients: images/s and p50/p99 latency, with and without batching.

Usage: python benchmarks/bench_serve_load.py [--levels 1,4,16,64] [--steps 5] [--servers uvicorn,ray]
An async httpx load generator: each client repeatedly generates one image entirely on the server
(open a run, put the prompt, stages T, Z, D[0:steps], G, get the image, close) through the wire
protocol. Without batching: `megen serve` (uvicorn, one worker thread); with batching: `megen serve
--ray` (Ray Serve, one replica, `@serve.batch` gathering concurrent calls). Every image must equal
the first (same prompt and seed). Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
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

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start_server(token_file: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "megen.cli.main",
        "serve",
        "--port",
        str(port),
        "--token-file",
        str(token_file),
    ]
    proc = subprocess.Popen([*cmd, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(2400):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.25)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server {' '.join(extra)} did not start")


def stage(kind: str, start: int | None = None, stop: int | None = None) -> dict[str, Any]:
    return {"kind": kind, "node": "ES1", "start": start, "stop": stop, "denoiser": None, "tile": None}


async def one_image(client: httpx.AsyncClient, url: str, steps: int) -> torch.Tensor:
    """One image generated entirely on the server (see the module docstring)."""
    links = RunConfig().links.model_dump(mode="json")
    ctx = wire.ctx_to_wire(RunContext(EngineConfig(num_steps=steps, seed=7), 1, False, 0))

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


async def load_level(url: str, clients: int, images: int, steps: int) -> dict[str, Any]:
    """``clients`` concurrent clients generating ``images`` images in all."""
    latencies: list[float] = []
    results: list[torch.Tensor] = []
    todo = list(range(images))
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(headers=AUTH, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while todo:
                todo.pop()
                t0 = time.perf_counter()
                results.append(await one_image(client, url, steps))
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    assert all(torch.equal(img, results[0]) for img in results), "images differ between clients"
    lat = sorted(latencies)
    return {
        "clients": clients,
        "images": images,
        "images_per_s": images / wall,
        "p50_s": statistics.median(lat),
        "p99_s": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
        "wall_s": wall,
    }


def bench(label: str, token_file: Path, levels: list[int], steps: int, *extra: str) -> dict[str, Any]:
    proc, url = start_server(token_file, *extra)
    try:
        rows = []
        for c in levels:
            row = asyncio.run(load_level(url, c, max(c, 8), steps))
            print(label, json.dumps(row), flush=True)
            rows.append(row)
        metrics = httpx.get(url + "/metrics", headers=AUTH).text
        batch = [line for line in metrics.splitlines() if line.startswith("megen_batch_size_")]
        return {"server": label, "rows": rows, "batch_size_metrics": batch}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--servers", default="uvicorn,ray", help="Which servers to load: uvicorn, ray or both.")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    out: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1m_start": os.getloadavg()[0],
        "steps": args.steps,
        "servers": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        which = args.servers.split(",")
        if "uvicorn" in which:
            out["servers"].append(bench("uvicorn (no batching)", token_file, levels, args.steps))
        if "ray" in which:
            try:
                out["servers"].append(bench("ray serve (batching)", token_file, levels, args.steps, "--ray"))
            except Exception as exc:  # report it in the results rather than losing the uvicorn numbers
                out["servers"].append(
                    {"server": "ray serve (batching)", "error": f"{type(exc).__name__}: {exc}"}
                )
    out["load_avg_1m_end"] = os.getloadavg()[0]
    path = Path(__file__).parent / "results" / "serve_load.json"
    if path.exists():  # keep the other server's rows from an earlier run
        done = {s["server"] for s in out["servers"]}
        earlier = json.loads(path.read_text()).get("servers", [])
        out["servers"] = [s for s in earlier if s["server"] not in done] + out["servers"]
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
