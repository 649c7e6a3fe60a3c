"""Training of the embedded ``tiny`` model: classifier, VAE, ES and UE denoisers.

Everything is seeded; the step counts (not wall-clock time) define a run, so the same command gives
the same weights on the same software stack. ``max_minutes`` is only a safety cap per part.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from megen.data import FASHION_CLASSES, PROMPT_TEMPLATES, load_fashion_mnist
from megen.models.classifier import FashionClassifier
from megen.models.text import MiniLMTextEncoder
from megen.models.tiny import (
    ES_UNET_CONFIG,
    MARKER,
    SCHEDULER_CONFIG,
    UE_UNET_CONFIG,
    VAE_CONFIG,
)

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    """Settings of ``megen train`` (steps are optimiser steps)."""

    seed: int = 0
    classifier_steps: int = 3000
    vae_steps: int = 1500
    es_steps: int = 1500
    ue_steps: int = 1500
    batch_size: int = 128
    vae_batch_size: int = 64
    denoiser_batch_size: int = 128
    lr_denoiser: float = 1e-3
    cond_dropout: float = 0.1
    max_minutes_per_part: float = 60.0
    threads: int = 0
    parts: tuple[str, ...] = ("classifier", "vae", "es", "ue")
    subset: int = 0  # use only the first N training images (0 = all 60k); for smoke tests


@dataclass
class TrainReport:
    seconds: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    final_loss: dict[str, float] = field(default_factory=dict)
    scaling_factor: float = 1.0


def _cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _batches(n: int, batch: int, gen: torch.Generator):
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            yield perm[i : i + batch]


def train_classifier(images, labels, cfg: TrainConfig, log: Log) -> tuple[FashionClassifier, float, int]:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    model = FashionClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    t0, loss_v, step = time.time(), float("nan"), 0
    it = _batches(len(images), cfg.batch_size, gen)
    model.train()
    for step in range(cfg.classifier_steps):
        idx = next(it)
        x = images[idx]
        # light augmentation: random horizontal flip and 1-pixel shifts
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        dx, dy = (torch.randint(-2, 3, (2,), generator=gen)).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, cfg.classifier_steps, 2e-3)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = float(loss.detach())
        if step % 200 == 0:
            log(f"classifier step {step}/{cfg.classifier_steps} loss {loss_v:.4f}")
        if time.time() - t0 > cfg.max_minutes_per_part * 60:
            log("classifier: time cap reached")
            break
    return model.eval(), loss_v, step + 1


def train_vae(images, cfg: TrainConfig, log: Log) -> tuple[AutoencoderKL, float, int]:
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    torch.manual_seed(cfg.seed + 2)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    kl_weight = 1e-6
    t0, loss_v, step = time.time(), float("nan"), 0
    it = _batches(len(images), cfg.vae_batch_size, gen)
    vae.train()
    for step in range(cfg.vae_steps):
        x = images[next(it)] * 2 - 1
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, cfg.vae_steps, 2e-3)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        mse = F.mse_loss(rec, x)
        l1 = F.l1_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        loss = mse + 0.1 * l1 + kl_weight * kl * x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        loss_v = float(mse.detach())
        if step % 200 == 0:
            psnr = 10 * math.log10(4.0 / max(loss_v, 1e-12))  # range [-1, 1] has peak-to-peak 2
            log(f"vae step {step}/{cfg.vae_steps} mse {loss_v:.5f} (~{psnr:.1f} dB)")
        if time.time() - t0 > cfg.max_minutes_per_part * 60:
            log("vae: time cap reached")
            break
    return vae.eval(), loss_v, step + 1


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    out = [vae.encode(images[i : i + batch] * 2 - 1).latent_dist.mode() for i in range(0, len(images), batch)]
    return torch.cat(out)


@torch.no_grad()
def prompt_table(encoder: MiniLMTextEncoder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token states ``[T, 10, L, D]`` and pooled ``[T, 10, D]`` for templates x classes, plus ``""``."""
    hid, pool = [], []
    for tpl in PROMPT_TEMPLATES:
        h, p = encoder([tpl.format(c) for c in FASHION_CLASSES])
        hid.append(h)
        pool.append(p)
    h_u, p_u = encoder([""])
    return torch.stack(hid), torch.stack(pool), h_u[0], p_u[0]


def train_denoiser(
    name: str,
    config: dict,
    latents: torch.Tensor,
    labels: torch.Tensor,
    table: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    steps: int,
    cfg: TrainConfig,
    log: Log,
    seed_offset: int,
) -> tuple[UNet2DConditionModel, float, int]:
    gen = torch.Generator().manual_seed(cfg.seed + seed_offset)
    torch.manual_seed(cfg.seed + seed_offset)
    unet = UNet2DConditionModel(**config)
    ema = UNet2DConditionModel(**config)
    ema.load_state_dict(unet.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k not in ("set_alpha_to_one",)})
    hid_t, pool_t, h_u, p_u = table
    n_tpl = hid_t.shape[0]
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr_denoiser, weight_decay=1e-4)
    t0, loss_v, step = time.time(), float("nan"), 0
    it = _batches(len(latents), cfg.denoiser_batch_size, gen)
    unet.train()
    for step in range(steps):
        idx = next(it)
        z0 = latents[idx]
        y = labels[idx]
        b = len(idx)
        tpl = torch.randint(0, n_tpl, (b,), generator=gen)
        hidden = hid_t[tpl, y]
        pooled = pool_t[tpl, y]
        drop = torch.rand(b, generator=gen) < cfg.cond_dropout
        hidden = torch.where(drop[:, None, None], h_u.expand_as(hidden), hidden)
        pooled = torch.where(drop[:, None], p_u.expand_as(pooled), pooled)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        zt = sched.add_noise(z0, eps, t)
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, steps, cfg.lr_denoiser, warmup=200)
        pred = unet(zt, t, encoder_hidden_states=hidden, class_labels=pooled).sample
        loss = F.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        loss_v = float(loss.detach())
        if step % 200 == 0:
            log(f"{name} step {step}/{steps} loss {loss_v:.4f} ({time.time() - t0:.0f} s)")
        if time.time() - t0 > cfg.max_minutes_per_part * 60:
            log(f"{name}: time cap reached")
            break
    return ema.eval(), loss_v, step + 1


def train_tiny(out_dir: Path, cfg: TrainConfig, log: Log = print) -> TrainReport:
    """Train every part of the tiny model and write a model folder (see :mod:`megen.models.tiny`).

    Parts not listed in ``cfg.parts`` are loaded from ``out_dir`` when present there.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = TrainReport()
    images, labels = load_fashion_mnist("train")
    if cfg.subset:
        images, labels = images[: cfg.subset], labels[: cfg.subset]
    test_images, test_labels = load_fashion_mnist("test")

    def timed(part: str, fn):
        t0 = time.time()
        result = fn()
        report.seconds[part] = round(time.time() - t0, 1)
        return result

    if "classifier" in cfg.parts:
        clf, loss, n = timed("classifier", lambda: train_classifier(images, labels, cfg, log))
        save_file(clf.state_dict(), out_dir / "classifier.safetensors")
        report.final_loss["classifier"], report.steps["classifier"] = loss, n

    if "vae" in cfg.parts:
        vae, loss, n = timed("vae", lambda: train_vae(images, cfg, log))
        report.final_loss["vae_mse"], report.steps["vae"] = loss, n
        lat = encode_latents(vae, images)
        scaling = float(1.0 / lat.std())
        vae.register_to_config(scaling_factor=scaling)
        vae.save_pretrained(out_dir / "vae", safe_serialization=True)
    vae = AutoencoderKL.from_pretrained(out_dir / "vae").eval()
    report.scaling_factor = float(vae.config.scaling_factor)
    if "es" in cfg.parts or "ue" in cfg.parts:
        latents = encode_latents(vae, images) * report.scaling_factor
        table = prompt_table(MiniLMTextEncoder())
    for part, conf, steps, off in (
        ("es", ES_UNET_CONFIG, cfg.es_steps, 3),
        ("ue", UE_UNET_CONFIG, cfg.ue_steps, 4),
    ):
        if part not in cfg.parts:
            continue
        unet, loss, n = timed(
            part,
            lambda conf=conf, steps=steps, off=off, part=part: train_denoiser(
                f"unet_{part}", conf, latents, labels, table, steps, cfg, log, off
            ),
        )
        unet.save_pretrained(out_dir / f"unet_{part}", safe_serialization=True)
        report.final_loss[f"unet_{part}"], report.steps[f"unet_{part}"] = loss, n

    (out_dir / "scheduler.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    # 100 reference test images, the first 10 of each class, shipped for image-to-image
    ref_idx = torch.cat([torch.nonzero(test_labels == c)[:10, 0] for c in range(10)])
    ref = (test_images[ref_idx, 0] * 255).round().to(torch.uint8).numpy()
    np.savez_compressed(out_dir / "reference_images.npz", images=ref, labels=test_labels[ref_idx].numpy())
    meta_path = out_dir / MARKER
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.update({"model": "tiny", "format": 1, "classes": list(FASHION_CLASSES)})
    meta.setdefault("train", {})
    meta["train"].update({"config": {k: v for k, v in asdict(cfg).items() if k != "parts"}})
    for k, v in report.seconds.items():
        meta["train"].setdefault("seconds", {})[k] = v
    for k, v in report.steps.items():
        meta["train"].setdefault("steps", {})[k] = v
    meta["train"]["torch_threads"] = torch.get_num_threads()
    meta_path.write_text(json.dumps(meta, indent=2))
    return report
