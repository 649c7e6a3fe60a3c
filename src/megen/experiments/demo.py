"""The demo job: a grid of text-to-image samples and an image-to-image example on the tiny model.

Issue 5 replaces this with a small preset of ``megen reproduce``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from megen.data import FASHION_CLASSES, prompt_for
from megen.images import save_image
from megen.models.registry import load_model
from megen.models.tiny import load_reference_images


def run_demo(
    out: Path, *, seed: int = 0, steps: int = 25, guidance: float = 4.0, log: Callable[[str], None] = print
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ldm = load_model("tiny")
    per_class = 8
    labels = [c for c in range(len(FASHION_CLASSES)) for _ in range(per_class)]
    prompts = [prompt_for(c) for c in labels]
    summary: dict = {"steps": steps, "guidance": guidance, "seed": seed}
    for den in ("es", "ue"):
        _, imgs = ldm.generate(prompts, num_steps=steps, guidance=guidance, seed=seed, denoiser=den)
        grid = torch.stack([imgs[c * per_class : (c + 1) * per_class] for c in range(10)]).flatten(0, 1)
        path = save_image(grid, out / f"text_to_image_{den}.png", upscale=3)
        acc = float((ldm.classify(imgs) == torch.tensor(labels)).float().mean())
        summary[f"prompt_accuracy_{den}"] = acc
        log(f"{path}: 10 classes x {per_class} samples ({den} denoiser), prompt accuracy {acc:.2f}")
    ref, ref_labels = load_reference_images()
    pick = torch.arange(0, 100, 10)
    target = [(int(ref_labels[i]) + 5) % 10 for i in pick]
    rows = [ref[pick]]
    for s in (0.4, 0.6, 0.8):
        _, imgs = ldm.generate(
            [prompt_for(t) for t in target],
            images=ref[pick],
            strength=s,
            num_steps=steps,
            guidance=guidance,
            seed=seed,
        )
        rows.append(imgs)
    path = save_image(torch.cat(rows), out / "image_to_image.png", upscale=3)
    log(f"{path}: reference row, then strength 0.4 / 0.6 / 0.8 towards another class")
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary
