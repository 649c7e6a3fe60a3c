"""Fused batching: concurrent denoising stages of different runs as one batched model call.

Ray Serve's dynamic batching hands an edge server several executor calls that arrived together
(:meth:`~megen.runtime.service.EdgeService.call_batch`). Calls ``run_stage D[a:b]`` of different runs
with the same schedule (steps, range, guidance, denoiser) and latent shape are *fusable*: their
latents ``[B_i, c, h, w]`` and text conditions are concatenated along the batch axis, denoised by one
:meth:`~megen.models.ldm.StagedLDM.denoise` call, and split back. Each run then finishes its stage as
usual with that output (:attr:`~megen.protocols.executors.LocalExecutor.precomputed`), so items,
metadata, FLOPs (those of the unfused stage) and the answer are what the run alone would get.

Randomness stays per run: a DDIM step with ``eta = 0`` draws nothing, and the stages that do draw
(``Z``, ``C``, the channels) are never fused; each uses its own run's named stream. Stages entering
with receiver-side denoising (a noisy received latent, ``snr_aware``) are not fused either.

Numerics: on CPU the fused call is *not* bit-identical to separate calls: oneDNN picks convolution
kernels by batch size, so per-sample results differ in the last bits (about 1e-6 per convolution,
up to about 2e-5 after 5 guided steps of the tiny model). Fusion is therefore opt-in
(``megen serve --ray --fuse``); without it batched calls run back to back and answer bit for bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from megen.models.ldm import StagedLDM, TextCondition
from megen.protocols.executors import LocalExecutor, RunContext
from megen.protocols.plan import ItemRef, Stage


@dataclass(frozen=True)
class Fusable:
    """One ``run_stage D`` call of a batch that may be fused.

    Attributes:
        index: Position of the call in the batch.
        executor: The run's executor (holds the latent and the text condition).
        stage: The stage.
        ctx: The run's context.
        key: Calls with equal keys are fused: ``(denoiser, N, start, stop, guidance, latent shape
            without batch, dtype, has pooled)``.
    """

    index: int
    executor: LocalExecutor
    stage: Stage
    ctx: RunContext
    key: tuple[Any, ...]


def fusion_key(ex: LocalExecutor, stage: Stage, ctx: RunContext) -> tuple[Any, ...] | None:
    """The fusion key of ``stage`` on ``ex`` (see :class:`Fusable`), or ``None`` if it is not fusable."""
    if stage.kind != "D":
        return None
    item = ItemRef("latent", stage.tile)
    if item not in ex.items or ItemRef("cond") not in ex.items:
        return None  # the stage fails on its own path, with its own message
    lat, meta, cond = ex.get(item), ex.meta(item), ex.get(ItemRef("cond"))
    if ctx.cfg.snr_aware and meta.noise_var is not None:
        return None  # receiver-side denoising: per-item entry steps
    if not isinstance(lat, torch.Tensor) or not isinstance(cond, TextCondition):
        return None
    n = ctx.cfg.num_steps
    start = ctx.start_step if stage.start is None else stage.start
    stop = n if stage.stop is None else stage.stop
    pooled = cond.pooled is not None
    return (stage.denoiser_name, n, start, stop, ctx.cfg.guidance, tuple(lat.shape[1:]), lat.dtype, pooled)


def fuse_groups(calls: Sequence[Fusable]) -> list[list[Fusable]]:
    """Groups of two or more calls with equal keys, each run at most once (in batch order)."""
    runs = Counter(id(c.executor) for c in calls)
    groups: dict[tuple[Any, ...], list[Fusable]] = {}
    for c in calls:
        if runs[id(c.executor)] == 1:
            groups.setdefault(c.key, []).append(c)
    return [g for g in groups.values() if len(g) > 1]


def run_fused(model: StagedLDM, group: Sequence[Fusable]) -> None:
    """Denoise the group's latents in one model call; leave each run's part in its executor.

    Afterwards each member's ``executor.run_stage(stage, ctx)`` uses its part (and must be called:
    the part is stored in :attr:`LocalExecutor.precomputed` until then).
    """
    den, n, start, stop, guidance = group[0].key[:5]
    lats = [c.executor.get(ItemRef("latent", c.stage.tile)) for c in group]
    cond = TextCondition.concat([c.executor.get(ItemRef("cond")) for c in group])
    with torch.no_grad():
        out = model.denoise(
            torch.cat(lats), cond, num_steps=n, start=start, stop=stop, guidance=guidance, denoiser=den
        )
    for c, part in zip(group, out.split([int(lat.shape[0]) for lat in lats]), strict=True):
        c.executor.precomputed[c.stage] = part.contiguous()


__all__ = ["Fusable", "fuse_groups", "fusion_key", "run_fused"]
