"""One generation from a configuration and files: what ``megen generate`` runs.

:func:`generate_images` loads the model and the reference image, runs the configured protocol (or the
unsplit pipeline when no protocol or plan is chosen), writes the images and returns the JSON summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from megen.config import RunConfig


def generate_images(
    cfg: RunConfig,
    prompt: str,
    num_images: int,
    image: Path | None,
    out: Path,
    *,
    protocol_given: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Generate ``num_images`` images for ``prompt`` under ``cfg`` and save them (a grid) to ``out``.

    Args:
        cfg: The run configuration.
        prompt: The text prompt.
        num_images: Images to generate (one batch).
        image: A reference image file (image-to-image), any size or mode; converted to the model's.
        out: Output PNG path.
        protocol_given: ``False``: run the unsplit pipeline on one node instead of ``cfg.protocol``.
        log: Where conversion notes go.

    Returns:
        The JSON summary (``megen generate --json``) with a human-readable ``message``.

    Raises:
        MegenError: bad prompts, images or configurations.
    """
    from megen.images import load_image, save_image
    from megen.models.registry import load_model
    from megen.protocols.runner import check_prompts, run_protocol

    prompts = [prompt] * num_images
    check_prompts(prompts)
    ldm = load_model(cfg.model.name)
    ref = None
    if image is not None:
        ref, notes = load_image(image, channels=ldm.image_channels, size=ldm.image_size)
        for note in notes:
            log(f"reference image: {note}")
        ref = ref.expand(num_images, -1, -1, -1).contiguous()
    if not protocol_given:
        return _unsplit(cfg, ldm, prompts, ref, out)
    result = run_protocol(cfg, prompts, ref, model=ldm)
    save_image(result.images, out)
    summary = result.summary()
    summary["out"] = str(out)
    q = summary["quality"]
    summary["message"] = (
        f"{summary['protocol']}: wrote {out}; channel uses {summary['channel_uses']['total']}, "
        f"latency {summary['latency_s'] * 1e3:.2f} ms, energy {summary['energy_j'] * 1e3:.3f} mJ, "
        f"PSNR vs error-free {q['psnr_fidelity_db']:.2f} dB"
    )
    return summary


def _unsplit(cfg: RunConfig, ldm: Any, prompts: list[str], ref: Any, out: Path) -> dict[str, Any]:
    from megen.images import save_image

    task = cfg.task
    t0 = time.time()
    _, imgs = ldm.generate(
        prompts,
        images=ref,
        strength=task.strength if ref is not None else None,
        num_steps=task.steps,
        guidance=task.guidance,
        seed=task.seed,
    )
    seconds = time.time() - t0
    save_image(imgs, out)
    summary: dict[str, Any] = {
        "prompt": prompts[0],
        "model": ldm.name,
        "seed": task.seed,
        "steps": task.steps,
        "guidance": task.guidance,
        "strength": task.strength if ref is not None else None,
        "num_images": len(prompts),
        "out": str(out),
        "seconds": round(seconds, 3),
    }
    if ldm.classifier is not None:
        wanted = ldm.prompt_class(prompts[0])
        pred = ldm.classify(imgs).tolist()
        summary["prompt_class"] = None if wanted is None else ldm.class_names[wanted]
        summary["predicted_classes"] = [ldm.class_names[i] for i in pred]
        if wanted is not None:
            summary["prompt_match"] = sum(p == wanted for p in pred) / len(pred)
    summary["message"] = f"wrote {out} ({len(prompts)} image(s), {seconds:.2f} s)"
    return summary
