"""megen's staged Stable Diffusion path vs diffusers' own StableDiffusionPipeline, side by side (issue 9).

Both load the SAME checkpoint folder (random weights from :mod:`megen.testing`, written to a temporary
folder: megen through its normal loader ``load_model``, diffusers through
``StableDiffusionPipeline.from_pretrained``) and run text-to-image with the same prompts, batch, DDIM
steps (eta 0), guidance, seed, device and dtype. Runs alternate (megen, diffusers, megen, ...) after one
warm-up each, so drift in machine load hits both alike. Both return CPU images: megen's ``generate``
always does (its images leave the model as CPU float32), diffusers' output (``output_type="pt"``) is
moved with ``.cpu()``. The images of the two are compared too (same seed: they should agree).

Sizes: ``--size tiny`` (default on the CPU) is the toy SD of the tests (32x32 images, 4x8x8 latents);
``--size sd15`` (default on an accelerator) is the real SD v1.5 architecture (512x512, 860M-parameter
UNet), random weights built from config dicts, no download.

Usage:
    python benchmarks/bench_sd.py                        # CPU, tiny SD
    python benchmarks/bench_sd.py --device cuda          # GPU, SD v1.5 architecture, float32
    python benchmarks/bench_sd.py --device cuda --dtype float16
Writes benchmarks/results/sd.json (or ``--out``). Target: megen / diffusers >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.utils import is_accelerate_available
from diffusers.utils import logging as diffusers_logging

from megen.devices import resolve_device, resolve_dtype
from megen.models.registry import load_model
from megen.models.text import quiet_hf_loading
from megen.testing import build_sd15_components, build_tiny_sd_components, save_sd_checkpoint

PROMPTS = ("a photo of the red house", "a painting of a blue dog", "the cat", "a sneaker photo")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    ap.add_argument("--dtype", default="float32", help="float32, or float16/bfloat16 on an accelerator")
    ap.add_argument("--size", choices=("tiny", "sd15"), default=None, help="default: tiny on cpu, else sd15")
    ap.add_argument("--batch", type=int, default=None, help="default 8 (tiny) or 4 (sd15)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument(
        "--repeats", type=int, default=None, help="timed runs of each; default 11 (tiny), 5 (sd15)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; default 1 on the cpu, torch's own elsewhere",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sd.json")
    return ap.parse_args()


def _pipeline(folder: Path, device: torch.device, dtype: torch.dtype) -> StableDiffusionPipeline:
    diffusers_logging.disable_progress_bar()
    with quiet_hf_loading():
        pipe = StableDiffusionPipeline.from_pretrained(
            folder,
            torch_dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=True,
            low_cpu_mem_usage=is_accelerate_available(),  # diffusers warns when asked without accelerate
        )
    # the same DDIM megen uses (diffusers' pipeline corrections: clip_sample off, steps_offset 1)
    cfg = {**dict(pipe.scheduler.config), "clip_sample": False, "steps_offset": 1}
    pipe.scheduler = DDIMScheduler.from_config(cfg)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, save and load the checkpoint, run both paths alternately, return the result record."""
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    size = args.size or ("tiny" if device.type == "cpu" else "sd15")
    batch = args.batch or (8 if size == "tiny" else 4)
    repeats = args.repeats or (11 if size == "tiny" else 5)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads:  # one thread on a shared CPU: extra threads only fight over the cores
        torch.set_num_threads(threads)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    build = build_tiny_sd_components if size == "tiny" else build_sd15_components
    with tempfile.TemporaryDirectory(prefix="megen-bench-sd-") as tmp:
        t0 = time.perf_counter()
        folder = save_sd_checkpoint(Path(tmp) / "sd", build(args.seed))
        model = load_model(str(folder), device=device, dtype=dtype)
        pipe = _pipeline(folder, device, dtype)
        setup_s = time.perf_counter() - t0

    def megen_run(seed: int) -> torch.Tensor:
        return model.generate(prompts, num_steps=args.steps, guidance=args.guidance, seed=seed)[1]

    def diffusers_run(seed: int) -> torch.Tensor:
        out = pipe(
            prompts,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            eta=0.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="pt",
        )
        return out.images.cpu()

    with torch.inference_mode():
        megen_run(args.seed), diffusers_run(args.seed)  # warm-up (kernels, caches, allocator)
        times: dict[str, list[float]] = {"megen": [], "diffusers": []}
        max_diff = 0.0
        for r in range(repeats):
            seed = args.seed + r
            t_m, img_m = _timed(lambda s=seed: megen_run(s), device)
            t_d, img_d = _timed(lambda s=seed: diffusers_run(s), device)
            times["megen"].append(t_m)
            times["diffusers"].append(t_d)
            max_diff = max(max_diff, float((img_m - img_d.float()).abs().max()))
    ips = {k: batch / statistics.median(v) for k, v in times.items()}
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "model": size,
            "image_size": model.image_size,
            "dtype": args.dtype,
            "batch": batch,
            "steps": args.steps,
            "guidance": args.guidance,
            "scheduler": "DDIM eta=0",
            "repeats": repeats,
            "seed": args.seed,
        },
        "setup_s": round(setup_s, 2),
        "images_per_s_median": {k: round(v, 3) for k, v in ips.items()},
        "ratio_megen_over_diffusers": round(ips["megen"] / ips["diffusers"], 4),
        # per repeat, diffusers' time over megen's (the two ran back to back): robust to load drift
        "paired_ratio_median": round(
            statistics.median(d / m for m, d in zip(times["megen"], times["diffusers"], strict=True)), 4
        ),
        "max_abs_image_diff": max_diff,
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }


def main() -> None:
    args = _parse()
    result = run(args)
    s = result["settings"]
    print(
        f"{result['device']} ({result['device_name']}), {s['model']} SD {s['image_size']}px {s['dtype']}, "
        f"batch {s['batch']}, {s['steps']} DDIM steps, guidance {s['guidance']}, {s['repeats']} repeats"
    )
    for k, v in result["images_per_s_median"].items():
        print(f"  {k:9s} {v:9.3f} images/s (median)")
    print(
        f"  ratio megen/diffusers = {result['ratio_megen_over_diffusers']:.3f} (target >= 0.95); "
        f"median of paired ratios {result['paired_ratio_median']:.3f}"
    )
    print(f"  max |image difference| = {result['max_abs_image_diff']:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
