"""One generation from a configuration and files: what ``megen generate`` runs.

:func:`generate_images` loads the model and the reference image, runs the configured protocol (or the
unsplit pipeline, a one-node plan, when no protocol or plan is chosen) through the plan engine,
writes the images and returns the JSON summary (one schema for every run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from megen.config import RunConfig

if TYPE_CHECKING:
    from megen.session import Session


def generate_images(
    cfg: RunConfig,
    prompt: str,
    num_images: int,
    image: Path | None,
    out: Path,
    *,
    protocol_given: bool = True,
    log: Callable[[str], None] = lambda _: None,
    engine_factory: Callable[..., Any] | None = None,
    session: Session | None = None,
) -> dict[str, Any]:
    """Generate ``num_images`` images for ``prompt`` under ``cfg`` and save them (a grid) to ``out``.

    Args:
        cfg: The run configuration.
        prompt: The text prompt.
        num_images: Images to generate (one batch).
        image: A reference image file (image-to-image), any size or mode; converted to the model's.
        out: Output PNG path.
        protocol_given: ``False``: run protocol ``unsplit`` (the whole pipeline on one node, with the
            ES denoiser unless ``protocol.ue_model`` says otherwise) instead of ``cfg.protocol``.
        log: Where conversion notes go.
        engine_factory: Builds the engine (see :func:`~megen.protocols.runner.run_protocol`); ``None``: in-process.
        session: Caches (models, stage memo) to share with other runs (``megen app``); ``None``: fresh.

    Returns:
        The JSON summary (``megen generate --json``, see
        :meth:`~megen.protocols.runner.ProtocolRun.summary`) plus ``out``, the wall-clock ``seconds``
        and a human-readable ``message``.

    Raises:
        MegenError: bad prompts, images or configurations.
    """
    from megen.images import load_image, save_image
    from megen.protocols.runner import check_prompts, run_protocol
    from megen.session import Session

    prompts = [prompt] * num_images
    check_prompts(prompts)
    if not protocol_given:
        ue_model = cfg.protocol.ue_model if cfg.protocol.ue_model != "ue" else "es"
        unsplit = {"protocol.name": "unsplit", "protocol.ue_model": ue_model, "links.*.channel.kind": "none"}
        cfg = RunConfig.from_paths(unsplit, base=cfg)
    session = session or Session()
    ldm = session.model(cfg.model.name, device=cfg.device.of("ES1"), dtype=cfg.device.dtype)
    ref = None
    if image is not None:
        ref, notes = load_image(image, channels=ldm.image_channels, size=ldm.image_size)
        for note in notes:
            log(f"reference image: {note}")
        ref = ref.expand(num_images, -1, -1, -1).contiguous()
    t0 = time.perf_counter()
    extra = {} if engine_factory is None else {"engine_factory": engine_factory}
    result = run_protocol(cfg, prompts, ref, model=ldm, session=session, **extra)
    seconds = time.perf_counter() - t0
    save_image(result.images, out)
    summary = result.summary()
    summary["out"] = str(out)
    summary["seconds"] = round(seconds, 3)
    summary["message"] = _message(summary, out, num_images, seconds)
    return summary


def _message(summary: dict[str, Any], out: Path, num_images: int, seconds: float) -> str:
    """The human-readable line: costs, fidelity of the delivered images, outages and fallbacks."""
    psnr = summary["quality"]["psnr_fidelity_db"]
    lost, fell_back = sum(summary["outage"]), sum(summary["fallback"])
    fidelity = "no image delivered" if psnr is None else f"PSNR vs error-free {psnr:.2f} dB"
    notes = f"; OUTAGE: {lost} of {num_images} image(s) not delivered" if lost else ""
    notes += f"; {fell_back} image(s) from the UE's fallback" if fell_back else ""
    return (
        f"{summary['protocol']}: wrote {out} ({num_images} image(s), {seconds:.2f} s); image delivered to "
        f"{summary['delivered_to']}; channel uses {summary['channel_uses']['total']}, modelled latency "
        f"{summary['latency_s'] * 1e3:.2f} ms, energy {summary['energy_j'] * 1e3:.3f} mJ, {fidelity}{notes}"
    )
