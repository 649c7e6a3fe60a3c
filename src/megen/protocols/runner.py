"""One protocol run from a configuration: build links and plan, execute, measure quality.

:class:`RunConfig` is the whole configuration of a run (pydantic, loadable from TOML/JSON) and
:func:`run_protocol` is what ``megen generate --protocol`` and ``megen sweep`` call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from megen.errors import MegenError
from megen.metrics import pair_quality, prompt_accuracy
from megen.models.ldm import StagedLDM
from megen.protocols.builders import MULTI_ES, ProtocolOptions, build_plan, canonical_name
from megen.protocols.engine import Engine, EngineConfig, EngineOutput
from megen.protocols.links import LinkSet, LinkSettings
from megen.protocols.unsplit import run_unsplit
from megen.session import Session

MAX_SNR_DB = 60.0
MIN_SNR_DB = -30.0


class RunConfig(BaseModel):
    """Configuration of one protocol run (units in the field names: dB)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str = "central"
    model: str = "tiny"
    steps: int = Field(25, ge=1, le=1000)
    strength: float = Field(0.6, ge=0.0, le=1.0)
    guidance: float = Field(4.0, ge=0.0)
    seed: int = Field(0, ge=0)
    num_es: int = Field(2, ge=1, le=4)
    split_step: int | None = None
    sync_every: int = Field(1, ge=0)
    halo: int = Field(2, ge=0)
    channel: Literal["none", "awgn", "rayleigh", "rician"] = "awgn"
    snr_db: float = 10.0
    ul_snr_db: float | None = None
    dl_snr_db: float | None = None
    bh_snr_db: float | None = None
    transmission: Literal["analog", "digital"] = "analog"
    image_transmission: Literal["analog", "digital"] = "digital"
    sketch_transmission: Literal["analog", "digital"] = "digital"
    image_codec: Literal["jpeg", "webp", "png"] = "jpeg"
    image_quality: int = Field(90, ge=1, le=100)
    seed_bits: int = Field(8, ge=1, le=16)
    mcs: str | None = None
    equalizer: Literal["zf", "mmse"] = "mmse"
    csi: Literal["perfect", "estimated"] = "perfect"
    coherence_symbols: int = Field(100, ge=2)
    k_factor_db: float = 3.0
    snr_aware: bool = True
    ue_model: Literal["ue", "es"] = "ue"
    completion_strength: float = Field(0.5, gt=0.0, le=1.0)
    ref_as_seed: bool = False
    profiles: str | None = None
    plan: str | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str) -> str:
        return canonical_name(v)

    @field_validator("snr_db", "ul_snr_db", "dl_snr_db", "bh_snr_db", "k_factor_db")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number of dB")
        return v

    def link_snr_db(self, link: str) -> float:
        per = {"uplink": self.ul_snr_db, "downlink": self.dl_snr_db, "backhaul": self.bh_snr_db}[link]
        value = self.snr_db if per is None else per
        if not MIN_SNR_DB <= value <= MAX_SNR_DB:
            raise MegenError(f"{link} SNR {value} dB is outside [{MIN_SNR_DB}, {MAX_SNR_DB}] dB")
        return value


def validate_run_config(cfg: RunConfig) -> None:
    """Cross-field checks that pydantic field validators cannot express."""
    if cfg.protocol in MULTI_ES and cfg.num_es < 2:
        raise MegenError(f"protocol {cfg.protocol} needs at least 2 edge servers; got --num-es {cfg.num_es}")
    if cfg.split_step is not None and not 0 <= cfg.split_step <= cfg.steps:
        raise MegenError(
            f"--split-step must be in 0..{cfg.steps} (the number of steps), got {cfg.split_step}"
        )
    for link in ("uplink", "downlink", "backhaul"):
        cfg.link_snr_db(link)


@dataclass
class ProtocolRun:
    """Result of :func:`run_protocol`: the engine output plus quality against references."""

    config: RunConfig
    output: EngineOutput
    images: torch.Tensor
    error_free: torch.Tensor
    quality: dict[str, list[float]]
    prompts: list[str]

    def summary(self) -> dict[str, Any]:
        """The JSON object of ``megen generate --json`` (means over the batch)."""
        q = {}
        for k, v in self.quality.items():
            vals = [x for x in v if x is not None and not math.isnan(x)]
            q[k] = (sum(vals) / len(vals)) if vals else None
        return {
            "protocol": self.config.protocol if self.config.plan is None else f"plan:{self.config.plan}",
            "model": self.config.model,
            "channel": self.config.channel,
            "snr_db": self.config.snr_db,
            "link_snr_db": {k: self.config.link_snr_db(k) for k in ("uplink", "downlink", "backhaul")},
            "transmission": self.config.transmission,
            "num_images": len(self.prompts),
            "seed": self.config.seed,
            "steps": self.config.steps,
            "channel_uses": self.output.channel_uses(),
            "payload_bits": self.output.payload_bits(),
            "flops": self.output.flops(),
            "flops_by_stage": self.output.flops_by_stage(),
            "latency_s": self.output.latency_s,
            "latency_breakdown_s": self.output.latency_breakdown(),
            "energy_j": self.output.energy_j,
            "energy_breakdown_j": self.output.energy_breakdown(),
            "link_failures": self.output.failures(),
            "snr_aware_entries": [list(e) for e in self.output.snr_aware_entries],
            "quality": q,
        }


def make_links(cfg: RunConfig) -> LinkSet:
    from megen.link.channels import ChannelConfig

    settings = {}
    for link in ("uplink", "downlink", "backhaul"):
        ch = ChannelConfig(
            kind=cfg.channel,
            snr_db=cfg.link_snr_db(link),
            coherence_symbols=cfg.coherence_symbols,
            k_factor_db=cfg.k_factor_db,
            equalizer=cfg.equalizer,
            csi=cfg.csi,
        )
        settings[link] = LinkSettings(
            channel=ch,
            image_codec=cfg.image_codec,
            image_quality=cfg.image_quality,
            seed_bits=cfg.seed_bits,
            mcs=cfg.mcs,
        )
    return LinkSet(settings)


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
    strength = cfg.strength if reference is not None else None
    memo = session.memo(model)
    key = memo.key("error_free", tuple(prompts), reference, strength, cfg.steps, cfg.guidance, cfg.seed)

    def generate() -> torch.Tensor:
        out = run_unsplit(
            model,
            prompts,
            reference,
            num_steps=cfg.steps,
            strength=strength,
            guidance=cfg.guidance,
            seed=cfg.seed,
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
) -> ProtocolRun:
    """Run one protocol for a batch of prompts (and reference images) and measure its quality.

    Quality keys (per image): ``psnr_fidelity_db``, ``ssim_fidelity``, ``ms_ssim_fidelity`` against
    the error-free centralized output with the same seed; ``psnr_reference_db``, ``ssim_reference``
    against the reference image (image-to-image); ``prompt_match`` (tiny model's classifier).
    ``session`` carries the caches (stage memo, FLOP meter, models, profiles); ``None``: a fresh one.
    """
    validate_run_config(cfg)
    if not prompts or any(not p.strip() for p in prompts):
        raise MegenError("every prompt must be non-empty")
    session = session or Session()
    model = model or session.model(cfg.model)
    if reference is not None:
        want = (len(prompts), *model.image_shape)
        if tuple(reference.shape) != want:
            raise MegenError(f"reference images must be {list(want)}, got {list(reference.shape)}")
        if not torch.isfinite(reference).all():
            raise MegenError("reference images contain NaN or infinite values")
    ue_parts = {"text", "vae", "unet_ue"} | ({"unet_es"} if cfg.ue_model == "es" else set())
    ecfg = EngineConfig(
        num_steps=cfg.steps,
        strength=cfg.strength,
        guidance=cfg.guidance,
        seed=cfg.seed,
        snr_aware=cfg.snr_aware,
        completion_strength=cfg.completion_strength,
        ue_parts=frozenset(ue_parts),
    )
    options = ProtocolOptions(
        num_es=cfg.num_es,
        split_step=cfg.split_step,
        sync_every=cfg.sync_every,
        halo=cfg.halo,
        seed_mode=cfg.transmission,
        image_mode=cfg.image_transmission,
        sketch_mode=cfg.sketch_transmission,
        ref_as_seed=cfg.ref_as_seed,
        ue_denoiser=cfg.ue_model,
    )
    run_ref = None if cfg.protocol == "local" else reference
    start = model.start_step(cfg.steps, cfg.strength if run_ref is not None else None)
    if cfg.plan is not None:
        from megen.protocols.plan_io import load_plan

        plan = load_plan(cfg.plan)
    else:
        plan = build_plan(cfg.protocol, options, cfg.steps, start, run_ref is not None)
    engine = Engine(
        model, make_links(cfg), session.profiles(cfg.profiles), session.meter, session.memo(model)
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
    if model.classifier is not None:
        wanted = [model.prompt_class(p) for p in prompts]
        quality["prompt_match"] = prompt_accuracy(model.classify(images), wanted).tolist()
    return ProtocolRun(cfg, out, images, target, quality, list(prompts))
