"""Throughput and peak memory of the tiny model: DDIM 25 steps with CFG, batch 64 (issue 2).

Usage: python benchmarks/bench_generate.py [--batch 64] [--steps 25] [--repeats 3] [--threads 2]
Writes benchmarks/results/generate.json. Target on a 2-core CPU: >= 20 images/s, peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from megen.data import prompt_for
from megen.models.registry import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generate.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("tiny")
    prompts = [prompt_for(i % 10) for i in range(args.batch)]
    model.generate(prompts[:4], num_steps=2, guidance=args.guidance)  # warm-up
    results = {}
    for den in ("es", "ue"):
        times = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            model.generate(prompts, num_steps=args.steps, guidance=args.guidance, seed=r, denoiser=den)
            times.append(time.perf_counter() - t0)
        best = min(times)
        results[den] = {
            "images_per_s_best": args.batch / best,
            "images_per_s_median": args.batch / sorted(times)[len(times) // 2],
            "seconds": times,
        }
        print(
            f"{den}: {args.batch / best:.1f} images/s (best of {args.repeats}), times {[round(t, 2) for t in times]}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "batch": args.batch,
        "steps": args.steps,
        "guidance": args.guidance,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "peak_rss_mb": round(peak_mb, 1),
        "denoisers": results,
    }
    print(f"peak RSS {peak_mb:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
