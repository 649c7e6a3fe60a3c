"""How far each protocol is from the unsplit pipeline on an ideal link (channel none).

Usage: python scripts/noiseless_gaps.py [--samples 50]
Image-to-image on the shipped reference images (prompt = the image's own class), strength 0.6,
25 DDIM steps, CFG 4, seed 0; PNG (lossless) for digital images so only the split itself differs.
Prints a markdown table: PSNR/SSIM against the unsplit ES output, prompt match.
"""

from __future__ import annotations

import argparse

import torch

from megen.config import RunConfig
from megen.data import prompt_for
from megen.models.registry import load_model
from megen.models.tiny import load_reference_images
from megen.protocols.runner import run_protocol

CASES = [
    ("central", {}),
    ("EIUG", {}),
    ("UIEG", {}),
    ("CIAG", {"ue_model": "es"}),
    ("CIAG", {}),
    ("ESUC", {}),
    ("UIDCG", {}),
    ("DCSUC", {}),
    ("UIDG", {"sync_every": 1}),
    ("UIDG", {"sync_every": 0}),
    ("DIUG", {"sync_every": 1}),
    ("DIUG", {"sync_every": 5}),
    ("DIUG", {"sync_every": 0}),
    ("DSUC", {"sync_every": 1}),
    ("local", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model("tiny")
    refs, labels = load_reference_images()
    idx = torch.arange(args.samples) * (100 // args.samples)
    ref = refs[idx]
    prompts = [prompt_for(int(labels[i])) for i in idx]
    print("| protocol | options | PSNR vs unsplit (dB) | SSIM vs unsplit | prompt match | backhaul uses |")
    print("|---|---|---|---|---|---|")
    for name, opts in CASES:
        cfg = RunConfig.from_paths(dict(protocol=name, channel="none", image_codec="png", **opts))
        s = run_protocol(cfg, prompts, ref, model=model).summary()
        q = s["quality"]
        o = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
        print(
            f"| {name} | {o} | {q['psnr_fidelity_db']:.1f} | {q['ssim_fidelity']:.3f} | {q['prompt_match']:.2f} | "
            f"{s['channel_uses']['backhaul']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
