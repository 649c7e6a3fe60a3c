"""One protocol run from a configuration: build links and plan, execute, measure quality.

:func:`run_protocol` runs a :class:`~megen.config.RunConfig`; it is what ``megen generate`` and
``megen sweep`` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from megen.config import LINKS, RunConfig
from megen.errors import MegenError, check_text
from megen.metrics import pair_quality, prompt_accuracy
from megen.models.ldm import StagedLDM
from megen.protocols.builders import PROMPT_ONLY, build_plan
from megen.protocols.engine import Engine, EngineConfig, EngineOutput
from megen.protocols.links import LinkSet
from megen.protocols.unsplit import run_unsplit
from megen.session import Session


@dataclass
class ProtocolRun:
    """Result of :func:`run_protocol`: the engine output plus quality against references."""

    config: RunConfig
    output: EngineOutput
    images: torch.Tensor
    error_free: torch.Tensor
    quality: dict[str, list[float | None]]
    prompts: list[str]
    classes: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON object of ``megen generate --json`` (means over the batch).

        ``quality`` holds means over the images *not* in outage (``None`` when every image is);
        ``outage`` and ``fallback`` are per image, ``delivered_to`` the node where the images land.
        """
        q = {}
        for k, v in self.quality.items():
            vals = [x for x in v if x is not None and not math.isnan(x)]
            q[k] = (sum(vals) / len(vals)) if vals else None
        cfg, flat = self.config, self.config.flat()
        return {
            "protocol": cfg.protocol.name if cfg.protocol.plan is None else f"plan:{cfg.protocol.plan}",
            "model": cfg.model.name,
            "channel": flat["channel"],
            "snr_db": flat["snr_db"],
            "link_snr_db": {k: cfg.links.of(k).snr_db for k in LINKS},
            "transmission": flat["transmission"],
            "num_images": len(self.prompts),
            "seed": cfg.task.seed,
            "steps": cfg.task.steps,
            "channel_uses": self.output.channel_uses(),
            "transmissions": self.output.transmissions(),
            "payload_bits": self.output.payload_bits(),
            "flops": self.output.flops(),
            "flops_by_stage": self.output.flops_by_stage(),
            "latency_s": self.output.latency_s,
            "latency_breakdown_s": self.output.latency_breakdown(),
            "energy_j": self.output.energy_j,
            "energy_breakdown_j": self.output.energy_breakdown(),
            "link_failures": self.output.failures(),
            "delivered_to": self.output.delivered_to,
            "outage": self.output.outage,
            "fallback": self.output.fallback,
            "outage_rate": sum(self.output.outage) / len(self.prompts),
            "snr_aware_entries": [list(e) for e in self.output.snr_aware_entries],
            "faults": self.output.faults,
            "quality": q,
            **(self.classes or {}),
            "config": cfg.model_dump(mode="json"),
        }


def check_prompts(prompts: list[str]) -> None:
    """Every prompt non-empty text that encodes as UTF-8 (no stray surrogates, no NUL).

    Raises:
        MegenError: an empty list, an empty prompt, or text that is not valid Unicode.
    """
    if not prompts:
        raise MegenError("no prompts given")
    for p in prompts:
        if not check_text(p, "the prompt").strip():
            raise MegenError("the prompt is empty; give a prompt such as 'a photo of a sneaker'")


def make_links(cfg: RunConfig) -> LinkSet:
    """The links of a run, one per link section of ``cfg``."""
    return LinkSet(cfg.links, model=cfg.model.name)


def error_free_output(
    model: StagedLDM,
    prompts: list[str],
    reference: torch.Tensor | None,
    cfg: RunConfig,
    session: Session | None = None,
) -> torch.Tensor:
    """The unsplit ES pipeline's output for the same prompts, reference and seed (fidelity target).

    A one-node plan (:func:`~megen.protocols.builders.build_unsplit_plan`) run by the engine, kept in
    the model's stage memo of ``session``: every configuration of a sweep batch shares it.
    """
    session = session or Session()
    task = cfg.task
    strength = task.strength if reference is not None else None
    memo = session.memo(model)
    key = memo.key("error_free", tuple(prompts), reference, strength, task.steps, task.guidance, task.seed)

    def generate() -> torch.Tensor:
        out = run_unsplit(
            model,
            prompts,
            reference,
            num_steps=task.steps,
            strength=strength,
            guidance=task.guidance,
            seed=task.seed,
            denoiser="es",
            session=session,
        )
        return out.image

    return memo.run(key, generate)


def run_protocol(
    cfg: RunConfig,
    prompts: list[str],
    reference: torch.Tensor | None = None,
    *,
    model: StagedLDM | None = None,
    session: Session | None = None,
    engine_factory: Callable[..., Engine] = Engine,
) -> ProtocolRun:
    """Run one protocol for a batch of prompts (and reference images) and measure its quality.

    Images in outage (:attr:`~megen.protocols.ledger.EngineOutput.outage`) get ``None`` for every
    quality key: the image shown is not a result. Quality keys (per image): ``psnr_fidelity_db``, ``ssim_fidelity``, ``ms_ssim_fidelity`` against
    the error-free centralized output with the same seed; ``psnr_reference_db``, ``ssim_reference``
    against the reference image (image-to-image); ``prompt_match`` (tiny model's classifier).
    ``session`` carries the caches (stage memo, FLOP meter, models, profiles); ``None``: a fresh one.
    ``engine_factory`` builds the engine (same arguments as :class:`Engine`), e.g. one that places the
    edge servers on Ray actors (:mod:`megen.runtime.ray_executor`).
    """
    check_prompts(prompts)
    session = session or Session()
    if model is None:
        model = session.model(cfg.model.name, device=cfg.device.of("ES1"), dtype=cfg.device.dtype)
    if reference is not None:
        want = (len(prompts), *model.image_shape)
        if tuple(reference.shape) != want:
            raise MegenError(f"reference images must be {list(want)}, got {list(reference.shape)}")
        if not torch.isfinite(reference).all():
            raise MegenError("reference images contain NaN or infinite values")
    task, proto = cfg.task, cfg.protocol
    ecfg = EngineConfig.of(cfg)
    run_ref = None if proto.name in PROMPT_ONLY else reference
    start = model.start_step(task.steps, task.strength if run_ref is not None else None)
    if proto.plan is not None:
        from megen.protocols.plan_io import load_plan

        plan = load_plan(proto.plan)
    else:
        plan = build_plan(proto.name, cfg, start, run_ref is not None)
    engine = engine_factory(
        model,
        make_links(cfg),
        session.profiles(cfg.costs.profiles),
        session.meter,
        session.memo(model),
        node_models={n: session.placed(model, cfg.device.of(n), cfg.device.dtype) for n in ("UE", "ES")},
    )
    out = engine.run(plan, prompts, ecfg, run_ref)
    images = out.image
    target = error_free_output(model, prompts, reference, cfg, session)
    fid = pair_quality(images, target)
    quality: dict[str, list[float]] = {
        "psnr_fidelity_db": fid.psnr_db.tolist(),
        "ssim_fidelity": fid.ssim.tolist(),
        "ms_ssim_fidelity": fid.ms_ssim.tolist(),
    }
    if reference is not None:
        rq = pair_quality(images, reference)
        quality["psnr_reference_db"] = rq.psnr_db.tolist()
        quality["ssim_reference"] = rq.ssim.tolist()
    classes = None
    if model.classifier is not None:
        wanted = [model.prompt_class(p) for p in prompts]
        predicted = model.classify(images)
        quality["prompt_match"] = prompt_accuracy(predicted, wanted).tolist()
        names: list[str] = list(model.class_names or [])
        classes = {
            "prompt_classes": [None if w is None else names[w] for w in wanted],
            "predicted_classes": [names[i] for i in predicted.tolist()],
        }
    return ProtocolRun(cfg, out, images, target, blank_outages(quality, out.outage), list(prompts), classes)


def blank_outages(quality: dict[str, list[float]], outage: list[bool]) -> dict[str, list[float | None]]:
    """Every metric ``None`` for the images in outage: nothing was delivered, so nothing is measured.

    Example:
        >>> blank_outages({"psnr_fidelity_db": [31.0, 7.4]}, [False, True])
        {'psnr_fidelity_db': [31.0, None]}
    """
    return {
        k: [None if lost else v for v, lost in zip(vals, outage, strict=True)] for k, vals in quality.items()
    }
