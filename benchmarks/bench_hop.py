"""Per-hop overhead of a remote edge server (HTTP on loopback) against in-process, per payload size.

Usage: python benchmarks/bench_hop.py [--repeats 20] [--sizes 1,16,256,1024]
Starts one `megen serve` subprocess (model tiny, CPU, loopback, with a token), then times one hop
UE -> ES of an image batch ``[B, 1, 32, 32]`` float32 (4 KiB per item): the UE's transmitter and the
ES's receiver (noiseless analog link), in-process (:class:`LocalExecutor`) and over HTTP
(:class:`HttpExecutor`), plus the way back (``get``). Writes benchmarks/results/hop.json with the
median seconds of each and the overhead (HTTP minus in-process) per hop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from megen.config import RunConfig
from megen.costs.flops import FlopMeter
from megen.models.tiny import load_tiny
from megen.protocols.executors import LocalExecutor
from megen.protocols.links import LinkSet
from megen.protocols.plan import ItemRef
from megen.runtime.http_executor import HttpExecutor
from megen.testing.serve import start_servers, stop_server

TOKEN = "bench-token"
IMAGE = ItemRef("image")


def hop_seconds(ue: LocalExecutor, es, batch: int, repeats: int) -> tuple[float, float]:
    """Median seconds of one UE -> ES hop and of fetching the item back."""
    x = torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(batch))
    ue.put(IMAGE, x)
    up, down = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = ue.transmit(IMAGE)
        es.receive(IMAGE, out, mode="analog", link="uplink", stream_seed=i)
        t1 = time.perf_counter()
        back = es.get(IMAGE)
        t2 = time.perf_counter()
        assert torch.equal(back, x)  # noiseless link: the item arrives unchanged
        if i:  # the first is a warm-up
            up.append(t1 - t0)
            down.append(t2 - t1)
    return statistics.median(up), statistics.median(down)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sizes", default="1,16,256,1024", help="Batch sizes B of [B, 1, 32, 32] images.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = RunConfig.from_paths({"links.*.channel.kind": "none"})
    model = load_tiny()
    links = LinkSet(cfg.links)
    meter = FlopMeter()
    parts = frozenset({"text", "vae", "unet_es", "unet_ue"})
    ue = LocalExecutor("UE", model, parts, links, meter)
    local_es = LocalExecutor("ES1", model, parts, links, meter)
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        ((proc, url),) = start_servers(token_file, 1, timeout_s=600)
        try:
            remote_es = HttpExecutor("ES1", url, cfg.links, TOKEN)
            rows = []
            for b in (int(s) for s in args.sizes.split(",")):
                local_up, local_down = hop_seconds(ue, local_es, b, args.repeats)
                http_up, http_down = hop_seconds(ue, remote_es, b, args.repeats)
                rows.append(
                    {
                        "batch": b,
                        "payload_bytes": b * 32 * 32 * 4,
                        "in_process_hop_s": local_up,
                        "http_hop_s": http_up,
                        "http_overhead_s": http_up - local_up,
                        "in_process_get_s": local_down,
                        "http_get_s": http_down,
                    }
                )
                print(json.dumps(rows[-1]))
            remote_es.close()
        finally:
            stop_server(proc, timeout_s=30)
    result = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "repeats": args.repeats,
        "rows": rows,
    }
    out = Path(__file__).parent / "results" / "hop.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
