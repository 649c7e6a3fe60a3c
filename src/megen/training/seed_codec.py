"""Training of the seed codecs (``megen train --parts seed-codec``): the KLT prior, the learned codec.

The ``linear`` codec only needs the KLT of clean training latents (:func:`prior_from_latents`). The
``learned`` codec's decoder (:class:`~megen.link.seed_learned.SeedDecoderNet`) is trained on diffusion
states ``z = sqrt(a) x0 + sqrt(1 - a) eps`` of training latents ``x0`` sent through the ``linear``
transmitter over AWGN, with the SNR, the budget and ``a`` drawn per batch, and the loss on the
latent (its KLT coefficients, an orthonormal change of basis), plus a log-scale loss that teaches
its residual-error output. The learned (deep JSCC) transmitter
(:class:`~megen.link.seed_learned.SeedEncoderNet`) is then trained end to end with a copy of that
decoder (the pair is the ``learned`` codec) on the same kind of states over AWGN, the SNR and ``a``
inputs, and compared with ``linear`` on held-out latents under the same noise
(:func:`jscc_heldout`). Seeded: the same command gives the same weights on the same stack.

Latents: the tiny model's Fashion-MNIST training images through its VAE; for other models (Stable
Diffusion folders) the photo reference set, augmented with random crops and flips
(:func:`photo_latents`). The full KLT needs ``C*H*W <= MAX_KLT_VALUES`` values per latent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from megen.errors import MegenError
from megen.files import atomic_output
from megen.link.seed_codecs import decode_linear, encode_analog
from megen.link.seed_learned import (
    SeedDecoderNet,
    SeedEncoderNet,
    decoder_tensors,
    encoder_tensors,
    tile_prefix,
)
from megen.link.seed_prior import (
    SeedPrior,
    prior_from_latents,
    prior_from_tensors,
    prior_tensors,
    raw_uses,
    tile_prior,
)
from megen.training.train import _cosine_lr

Log = Callable[[str], None]
#: Largest latent (values) a full KLT is fitted for.
MAX_KLT_VALUES = 4096
#: Budgets (fractions of the raw seed's uses) drawn while training the decoder.
BUDGET_FRACTIONS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
SNR_RANGE_DB = (-15.0, 25.0)
#: SNRs (dB) and budgets (fractions of the raw uses) of the held-out reports.
HELDOUT_SNRS_DB = (-10.0, -5.0, 0.0, 10.0, 20.0)
HELDOUT_FRACTIONS = (0.125, 0.5, 1.0, 4.0)
#: The multi-ES layout whose tile shapes get learned codecs: the default 2 ESs and halo of 2 columns.
TILE_NUM_ES = 2
TILE_HALO = 2
#: Signal level of UIEG's seed at strength 0.6 and 25 steps (``noise_at = sender``), for the held-out report.
NOISY_ALPHA = 0.201


@dataclass
class SeedCodecTrainConfig:
    """Settings of the seed-codec training (steps are optimiser steps)."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    max_minutes: float = 30.0
    encoder_steps: int = 3000
    tile_steps: int = 2000
    #: ``(edge servers, halo columns)`` of each tile layout whose tile shapes get a learned codec.
    tile_layouts: tuple[tuple[int, int], ...] = ((TILE_NUM_ES, TILE_HALO),)


@dataclass
class SeedCodecReport:
    """What training measured: time, steps, final loss, held-out latent MSE per (SNR, uses).

    ``jscc_mse``: per held-out point (clean latents), the latent MSE of ``linear`` and of the learned
    encoder with its decoder under the same noise, and the residual the learned receiver reports;
    ``jscc_mse_noisy``: the same for UIEG's noisy seeds (``a = NOISY_ALPHA``); ``jscc_ideal``: on the
    ideal link (infinite SNR); ``encoder_beats_linear``: whether it beat ``linear`` at every clean
    held-out point (it is stored either way); ``tile_mse``: ``jscc_mse`` of each tile shape's learned
    codec at each of its positions (:func:`train_tile_codecs`).
    """

    seconds: float = 0.0
    steps: int = 0
    final_loss: float = math.nan
    heldout_mse: dict[str, dict[str, float]] = field(default_factory=dict)
    jscc_mse: dict[str, dict[str, float]] = field(default_factory=dict)
    jscc_mse_noisy: dict[str, dict[str, float]] = field(default_factory=dict)
    jscc_ideal: dict[str, dict[str, float]] = field(default_factory=dict)
    encoder_beats_linear: bool = False
    tile_mse: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def _draw_alpha(batch: int, gen: torch.Generator) -> torch.Tensor:
    """Signal levels: 10% pure noise, 20% clean latents, the rest uniform in [0, 1]."""
    u = torch.rand(batch, generator=gen, dtype=torch.float64)
    a = torch.rand(batch, generator=gen, dtype=torch.float64)
    return torch.where(u < 0.1, torch.zeros_like(a), torch.where(u < 0.3, torch.ones_like(a), a))


def _batch_alpha(batch: int, gen: torch.Generator) -> torch.Tensor:
    """One signal level for a whole batch: clean latents (``a = 1``) half the time, else :func:`_draw_alpha`.

    One level per batch keeps the batch's log MSE ratio (:func:`train_encoder`) from being dominated by
    its noisiest states, where nothing beats ``linear``.
    """
    a = 1.0 if float(torch.rand(1, generator=gen)) < 0.5 else float(_draw_alpha(1, gen)[0])
    return torch.full((batch,), a, dtype=torch.float64)


def _noisy_states(x0: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    a = alpha.view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0.double() + (1 - a).sqrt() * eps


def simulate_linear(
    prior: SeedPrior, z: torch.Tensor, uses: int, snr_db: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``linear`` codec over AWGN at ``snr_db``: (estimate, mse, target, var, alpha), all ``[B, n]`` / ``[B]``.

    ``estimate`` and ``target`` are centred KLT coefficients; ``mse`` the linear MMSE's error per
    component as the receiver computes it.
    """
    n0 = 10.0 ** (-snr_db / 10.0)
    enc = encode_analog(z, prior, uses, n0 / 2.0)
    noise = torch.randn(enc.symbols.shape[0], 2 * uses, generator=gen, dtype=torch.float64) * math.sqrt(
        n0 / 2
    )
    received = torch.view_as_real(enc.symbols).reshape(z.shape[0], -1) + noise
    mean_c, var_c = prior.moments(enc.alpha)
    est, mse = decode_linear(enc, received, torch.full_like(received, n0 / 2), var_c)
    target = prior.coefficients(z.reshape(z.shape[0], -1)) - mean_c
    return est, mse, target, var_c, enc.alpha


def _step_loss(net: SeedDecoderNet, prior: SeedPrior, x0: torch.Tensor, gen: torch.Generator, batch: int):
    idx = torch.randint(0, x0.shape[0], (batch,), generator=gen)
    raw = raw_uses(prior.numel)
    frac = BUDGET_FRACTIONS[int(torch.randint(0, len(BUDGET_FRACTIONS), (1,), generator=gen))]
    uses = max(1, round(raw * frac))
    lo, hi = SNR_RANGE_DB
    snr = lo + (hi - lo) * float(torch.rand(1, generator=gen))
    z = _noisy_states(x0[idx], _draw_alpha(batch, gen), gen)
    with torch.no_grad():
        est, mse, target, var, alpha = simulate_linear(prior, z, uses, snr, gen)
    std = var.sqrt().float()
    delta, log_ratio = net((est / var.sqrt()).float(), (mse / var).float(), alpha.float())
    refined = est.float() + std * delta
    err = (refined - target.float()).square().mean(1)  # latent MSE per item (orthonormal basis)
    predicted = mse.mean(1).float() * log_ratio.exp()
    calib = (predicted.log() + err.detach() / predicted).mean()
    return err.mean(), calib


def train_decoder(
    prior: SeedPrior, x0: torch.Tensor, cfg: SeedCodecTrainConfig, log: Log
) -> tuple[SeedDecoderNet, float, int]:
    """Train the learned decoder on clean latents ``x0 [N, C, H, W]``; returns (net, final loss, steps)."""
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    torch.manual_seed(cfg.seed + 11)
    net = SeedDecoderNet(prior.numel)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-5)
    t0, loss_v, step = time.time(), math.nan, 0
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, cfg.steps, cfg.lr, warmup=0)
        mse, calib = _step_loss(net, prior, x0, gen, cfg.batch_size)
        opt.zero_grad(set_to_none=True)
        (mse + 0.01 * calib).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        loss_v = float(mse.detach())
        if step % 250 == 0:
            log(f"seed-codec step {step}/{cfg.steps} latent mse {loss_v:.4f} ({time.time() - t0:.0f} s)")
        if time.time() - t0 > cfg.max_minutes * 60:
            log("seed-codec: time cap reached")
            break
    return net.eval(), loss_v, step + 1


@torch.no_grad()
def heldout_mse(
    prior: SeedPrior, net: SeedDecoderNet, x0: torch.Tensor, seed: int, alpha: float = 1.0
) -> dict[str, dict[str, float]]:
    """Latent MSE per value of ``linear`` and ``learned`` on held-out latents, per SNR and budget."""
    out: dict[str, dict[str, float]] = {}
    raw = raw_uses(prior.numel)
    for snr in HELDOUT_SNRS_DB:
        for frac in HELDOUT_FRACTIONS:
            uses = max(1, round(raw * frac))
            gen = torch.Generator().manual_seed(seed)
            z = _noisy_states(x0, torch.full((x0.shape[0],), alpha, dtype=torch.float64), gen)
            est, mse, target, var, a = simulate_linear(prior, z, uses, snr, gen)
            delta, _ = net((est / var.sqrt()).float(), (mse / var).float(), a.float())
            learned = est + var.sqrt() * delta.double()
            out[f"snr{snr:g}_uses{uses}"] = {
                "linear": float((est - target).square().mean()),
                "learned": float((learned - target).square().mean()),
            }
    return out


@dataclass(frozen=True)
class JsccPass:
    """Seeds through the learned encoder and decoder, and through ``linear`` under the same noise.

    Attributes:
        learned: ``[B, n]`` float64 the learned codec's estimate of the centred KLT coefficients.
        linear: ``[B, n]`` float64 the ``linear`` codec's estimate under the same noise draw.
        target: ``[B, n]`` float64 the true centred coefficients.
        predicted: ``[B]`` residual MSE per value the learned receiver reports.
    """

    learned: torch.Tensor
    linear: torch.Tensor
    target: torch.Tensor
    predicted: torch.Tensor


def jscc_pass(
    prior: SeedPrior,
    encoder: SeedEncoderNet,
    decoder: SeedDecoderNet,
    z: torch.Tensor,
    uses: int,
    snr_db: float,
    gen: torch.Generator,
) -> JsccPass:
    """Seeds ``z [B, C, H, W]`` through the learned encoder and decoder over AWGN at ``snr_db``.

    ``snr_db = inf`` is the ideal link (no noise; the encoder's SNR input is clamped to its range).
    Differentiable in the networks' parameters.
    """
    n0, batch = 10.0 ** (-snr_db / 10.0), z.shape[0]
    with torch.no_grad():
        enc = encode_analog(z, prior, uses, n0 / 2.0)
        mean_c, var_c = prior.moments(enc.alpha)
        target = prior.coefficients(z.reshape(batch, -1).double()) - mean_c
        base = torch.view_as_real(enc.symbols).reshape(batch, -1)
    std = var_c.sqrt()
    noise = torch.randn(base.shape, generator=gen, dtype=torch.float64) * math.sqrt(n0 / 2.0)
    noise_var = torch.full_like(base, n0 / 2.0)
    snr_in = torch.full((batch,), float(snr_db))
    sent = encoder((target / std).float(), snr_in, enc.alpha.float(), base.float()).double()
    est, mse = decode_linear(enc, sent + noise, noise_var, var_c)
    delta, log_ratio = decoder((est / std).float(), (mse / var_c).float(), enc.alpha.float())
    with torch.no_grad():
        linear, _ = decode_linear(enc, base + noise, noise_var, var_c)
    predicted = mse.mean(1).float() * log_ratio.exp()
    return JsccPass(est + std * delta.double(), linear, target, predicted)


def train_encoder(
    prior: SeedPrior, x0: torch.Tensor, decoder: SeedDecoderNet, cfg: SeedCodecTrainConfig, log: Log
) -> tuple[SeedEncoderNet, SeedDecoderNet, float]:
    """Train the learned encoder with a copy of ``decoder`` end to end on states of the latents ``x0``.

    Each step draws a budget of :data:`BUDGET_FRACTIONS`, an SNR in :data:`SNR_RANGE_DB` and one signal
    level ``a`` for the batch (:func:`_batch_alpha`: half the batches clean latents); the loss is
    the log of the latent MSE (KLT coefficients, orthonormal) over ``linear``'s under the same noise,
    so that high SNRs (small MSEs) count as much as low ones, plus the decoder's residual-error
    calibration (a Gaussian log-likelihood, as in :func:`train_decoder`). Returns (encoder, its
    decoder, final loss).
    """
    return train_jscc([(prior, x0)], decoder, whole_budgets(prior.numel), cfg.encoder_steps, cfg, log)


def whole_budgets(numel: int) -> tuple[int, ...]:
    """The learned codec's budgets (channel uses) for a latent of ``numel`` values: its heads."""
    raw = raw_uses(numel)
    return tuple(max(1, round(raw * f)) for f in BUDGET_FRACTIONS)


def train_jscc(
    sources: Sequence[tuple[SeedPrior, torch.Tensor]],
    decoder: SeedDecoderNet,
    budgets: tuple[int, ...],
    steps: int,
    cfg: SeedCodecTrainConfig,
    log: Log,
    what: str = "encoder",
) -> tuple[SeedEncoderNet, SeedDecoderNet, float]:
    """The loop of :func:`train_encoder` over one or more ``(prior, latents)`` sources of one shape.

    With several sources (the positions of a tile shape, :func:`train_tile_codecs`) each step also
    draws the source, after the SNR; with one, the random draws are those of :func:`train_encoder`.
    """
    gen = torch.Generator().manual_seed(cfg.seed + 13)
    torch.manual_seed(cfg.seed + 13)
    n = sources[0][0].numel
    encoder = SeedEncoderNet(n, budgets)
    joint = SeedDecoderNet(n, hidden=decoder.correction.in_features)
    joint.load_state_dict(decoder.state_dict())
    params = [*encoder.parameters(), *joint.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr / 2, weight_decay=1e-5)
    t0, loss_v = time.time(), math.nan
    lo, hi = SNR_RANGE_DB
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(step, steps, cfg.lr / 2, warmup=0)
        uses = budgets[int(torch.randint(0, len(budgets), (1,), generator=gen))]
        snr = lo + (hi - lo) * float(torch.rand(1, generator=gen))
        pick = 0 if len(sources) == 1 else int(torch.randint(0, len(sources), (1,), generator=gen))
        prior, x0 = sources[pick]
        idx = torch.randint(0, x0.shape[0], (cfg.batch_size,), generator=gen)
        z = _noisy_states(x0[idx], _batch_alpha(cfg.batch_size, gen), gen)
        r = jscc_pass(prior, encoder, joint, z, uses, snr, gen)
        err = (r.learned - r.target).square().mean(1).float()
        # scale-free: the log of the MSE relative to linear's, so that every SNR and budget counts
        loss = torch.log(err.mean() / (r.linear - r.target).square().mean().float())
        calib = (r.predicted.log() + err.detach() / r.predicted).mean()
        opt.zero_grad(set_to_none=True)
        (loss + 0.01 * calib).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss_v = float(loss.detach())
        if step % 250 == 0:
            log(
                f"seed-codec {what} step {step}/{steps} log MSE ratio to linear {loss_v:+.4f} ({time.time() - t0:.0f} s)"
            )
        if time.time() - t0 > cfg.max_minutes * 60:
            log(f"seed-codec {what}: time cap reached")
            break
    return encoder.eval(), joint.eval(), loss_v


def tile_columns(
    width: int, num_es: int = TILE_NUM_ES, halo: int = TILE_HALO
) -> dict[int, list[tuple[int, int]]]:
    """The latent column ranges the multi-ES protocols send as seeds, grouped by their width.

    For ``num_es`` tiles of a latent ``width`` columns wide with ``halo`` columns (:mod:`megen.protocols.tiles`):
    the windows (UIDG's uplink), the cores (DIUG's downlink) and the halo strips (the backhaul's halo
    exchanges). Example: the tiny model's 8 columns, 2 ESs, halo 2: ``{6: [(0, 6), (2, 8)],
    4: [(0, 4), (4, 8)], 2: [(4, 6), (2, 4)]}``.
    """
    from megen.protocols.tiles import halo_exchange, tile_windows

    wins = tile_windows(width, num_es, halo)
    ranges = [(w.win_lo, w.win_hi) for w in wins] + [(w.core_lo, w.core_hi) for w in wins]
    for _, src, _, scols in halo_exchange(wins):
        lo = wins[src].win_lo
        ranges.append((lo + scols.start, lo + scols.stop))
    out: dict[int, list[tuple[int, int]]] = {}
    for lo, hi in ranges:
        if hi - lo < width and (lo, hi) not in out.get(hi - lo, []):
            out.setdefault(hi - lo, []).append((lo, hi))
    return out


def train_tile_codecs(
    prior: SeedPrior, latents: torch.Tensor, heldout: torch.Tensor, cfg: SeedCodecTrainConfig, log: Log
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, dict[str, float]]]]:
    """Train a learned codec per tile shape of :func:`tile_columns` for every layout of
    ``cfg.tile_layouts``; returns (tensors, held-out report).

    Each tile shape's encoder and decoder (keys under :func:`~megen.link.seed_learned.tile_prefix`)
    are trained from zero (an untrained pair is ``linear``) as in :func:`train_encoder`, over every
    position of that width, each with its own tile prior (:func:`~megen.link.seed_prior.tile_prior`);
    budgets: each tile's share (:func:`~megen.link.seed_codecs.tile_uses`) of the whole latent's.
    The report: :func:`jscc_heldout` on the held-out latents at each position (``"4x8x6@0:6"``).
    """
    from megen.link.seed_codecs import tile_uses

    tensors: dict[str, torch.Tensor] = {}
    report: dict[str, dict[str, dict[str, float]]] = {}
    columns: dict[int, list[tuple[int, int]]] = {}
    for num_es, halo in cfg.tile_layouts:
        for width, positions in tile_columns(prior.shape[-1], num_es, halo).items():
            columns.setdefault(width, []).extend(p for p in positions if p not in columns.get(width, []))
    for width, positions in sorted(columns.items(), reverse=True):
        shape = (*prior.shape[:-1], width)
        sources = [(tile_prior(prior, width, p), latents[..., p[0] : p[1]].contiguous()) for p in positions]
        n = sources[0][0].numel
        budgets = tuple(tile_uses(u, n, prior.numel) for u in whole_budgets(prior.numel))
        name = "x".join(map(str, shape))
        log(f"seed-codec tiles {name} at columns {positions}, budgets {budgets}")
        enc, dec, _ = train_jscc(
            sources, SeedDecoderNet(n), budgets, cfg.tile_steps, cfg, log, f"tile {name}"
        )
        tensors.update(encoder_tensors(enc, dec, tile_prefix(shape)))
        for (lo, hi), (tprior, _) in zip(positions, sources, strict=True):
            report[f"{name}@{lo}:{hi}"] = jscc_heldout(tprior, enc, dec, heldout[..., lo:hi], cfg.seed)
    return tensors, report


@torch.no_grad()
def jscc_heldout(
    prior: SeedPrior,
    encoder: SeedEncoderNet,
    decoder: SeedDecoderNet,
    x0: torch.Tensor,
    seed: int,
    alpha: float = 1.0,
    snrs_db: tuple[float, ...] = HELDOUT_SNRS_DB,
) -> dict[str, dict[str, float]]:
    """Latent MSE per value of ``linear`` and the learned encoder+decoder (same noise), per SNR and budget.

    The seeds are the states ``sqrt(alpha) x0 + sqrt(1 - alpha) eps`` of the held-out latents ``x0``;
    each entry also holds the residual MSE the learned receiver reports (``reported``).
    """
    out: dict[str, dict[str, float]] = {}
    raw = raw_uses(prior.numel)
    for snr in snrs_db:
        for frac in HELDOUT_FRACTIONS:
            uses = max(1, round(raw * frac))
            gen = torch.Generator().manual_seed(seed)
            z = _noisy_states(x0, torch.full((x0.shape[0],), alpha, dtype=torch.float64), gen)
            r = jscc_pass(prior, encoder, decoder, z, uses, snr, gen)
            out[f"snr{snr:g}_uses{uses}"] = {
                "linear": float((r.linear - r.target).square().mean()),
                "jscc": float((r.learned - r.target).square().mean()),
                "reported": float(r.predicted.mean()),
            }
    return out


def beats_linear(report: dict[str, dict[str, float]]) -> bool:
    """Whether the learned encoder's MSE is below ``linear``'s at every held-out point."""
    return bool(report) and all(v["jscc"] < v["linear"] for v in report.values())


def train_seed_codec(
    latents: torch.Tensor, heldout: torch.Tensor, out_file: Path, cfg: SeedCodecTrainConfig, log: Log = print
) -> SeedCodecReport:
    """Fit the KLT prior, train the decoder, the learned encoder and its decoder; write ``out_file``.

    Args:
        latents: Clean training latents ``[N, C, H, W]`` (scaled latent units).
        heldout: Held-out clean latents for the report.
        out_file: Where the weights go (``seed_codec.safetensors`` in a model folder).
        cfg: Settings.
        log: Progress messages.
    """
    if latents[0].numel() > MAX_KLT_VALUES:
        raise MegenError(
            f"latents of {latents[0].numel()} values are too large for a full KLT (at most {MAX_KLT_VALUES})"
        )
    from safetensors.torch import save_file

    t0 = time.time()
    prior = prior_from_latents(latents)
    net, loss, steps = train_decoder(prior, latents, cfg, log)
    report = SeedCodecReport(seconds=0.0, steps=steps, final_loss=loss)
    report.heldout_mse = heldout_mse(prior, net, heldout, cfg.seed)
    tensors = {**prior_tensors(prior), **decoder_tensors(net)}
    if cfg.encoder_steps > 0:
        encoder, joint, _ = train_encoder(prior, latents, net, cfg, log)
        report.jscc_mse = jscc_heldout(prior, encoder, joint, heldout, cfg.seed)
        report.jscc_mse_noisy = jscc_heldout(prior, encoder, joint, heldout, cfg.seed, alpha=NOISY_ALPHA)
        report.jscc_ideal = jscc_heldout(prior, encoder, joint, heldout, cfg.seed, snrs_db=(math.inf,))
        report.encoder_beats_linear = beats_linear(report.jscc_mse)
        tensors.update(encoder_tensors(encoder, joint))
    if cfg.tile_steps > 0:
        tiles, report.tile_mse = train_tile_codecs(_as_stored(prior), latents, heldout, cfg, log)
        tensors.update(tiles)
    report.seconds = round(time.time() - t0, 1)
    meta = {"steps": str(steps), "seed": str(cfg.seed), "latents": str(latents.shape[0])}
    with atomic_output(Path(out_file)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return report


def _as_stored(prior: SeedPrior) -> SeedPrior:
    """``prior`` as the codecs load it back from the weights (float32 values, in float64)."""
    return prior_from_tensors(prior_tensors(prior))


def add_tile_codecs(
    weights: Path,
    latents: torch.Tensor,
    heldout: torch.Tensor,
    out_file: Path,
    cfg: SeedCodecTrainConfig,
    log: Log = print,
) -> SeedCodecReport:
    """Train the tile codecs (:func:`train_tile_codecs`) for existing seed-codec ``weights``; write ``out_file``.

    Every tensor of ``weights`` (the KLT prior, the whole latent's learned codec) is kept bit for bit,
    so the whole latent's codecs do not change; earlier tile codecs are replaced. The tile priors
    come from the stored prior, as the codecs derive them.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    t0 = time.time()
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
            meta = dict(f.metadata() or {})
    except (OSError, ValueError, RuntimeError) as exc:
        raise MegenError(f"cannot read seed-codec weights {weights}: {exc}") from None
    prior = prior_from_tensors(tensors)
    if tuple(latents.shape[1:]) != prior.shape:
        raise MegenError(
            f"the weights {weights} are for latents {prior.shape}, not {tuple(latents.shape[1:])}"
        )
    tiles, tile_report = train_tile_codecs(prior, latents, heldout, cfg, log)
    tensors = {k: v for k, v in tensors.items() if not k.startswith("tile")}
    tensors.update(tiles)
    meta.update({"tile_steps": str(cfg.tile_steps), "tile_seed": str(cfg.seed)})
    with atomic_output(Path(out_file)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return SeedCodecReport(seconds=round(time.time() - t0, 1), steps=cfg.tile_steps, tile_mse=tile_report)


def _encode_batches(model, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([model.encode_image(images[i : i + batch]).cpu() for i in range(0, len(images), batch)])


def photo_latents(model, count: int, seed: int) -> torch.Tensor:
    """Latents of random crops (1/4 .. full side) and flips of the photo reference set, ``[count, ...]``."""
    from megen.experiments.references import fit_to_model, load_references

    photos = load_references("photos").images
    gen = torch.Generator().manual_seed(seed + 12)
    side = photos.shape[-1]
    crops = []
    for _ in range(count):
        pick = int(torch.randint(0, len(photos), (1,), generator=gen))
        size = int(torch.randint(side // 4, side + 1, (1,), generator=gen))
        top, left = (int(v) for v in torch.randint(0, side - size + 1, (2,), generator=gen))
        crop = photos[pick : pick + 1, :, top : top + size, left : left + size]
        if float(torch.rand(1, generator=gen)) < 0.5:
            crop = crop.flip(-1)
        crops.append(fit_to_model(crop, model.image_shape))
    return _encode_batches(model, torch.cat(crops), batch=64)


def codec_latents(model_name: str, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) clean latents of a model for the seed codecs.

    Tiny models: Fashion-MNIST training images (the first ``count``) and 500 test images through the
    VAE. Other models: :func:`photo_latents` (``count`` crops, and 10% more for the held-out set).
    """
    from megen.models.registry import load_model

    model = load_model(model_name)
    if model.name in ("tiny", "tiny-random") or model.image_shape == (1, 32, 32):
        from megen.data import load_fashion_mnist

        train, _ = load_fashion_mnist("train")
        test, _ = load_fashion_mnist("test")
        return _encode_batches(model, train[:count]), _encode_batches(model, test[:500])
    return photo_latents(model, count, seed), photo_latents(model, max(8, count // 10), seed + 1)
