"""The plan engine: interprets any :class:`~megen.protocols.plan.Plan` over node executors.

The engine only interprets: it validates the plan, creates one executor per node
(:mod:`megen.protocols.executors`), dispatches each operation to the node(s) it runs on, hands every
transfer its named random stream (:mod:`megen.rng`), and books seconds, joules, channel uses and FLOPs
in a :class:`~megen.protocols.ledger.Ledger`. What a stage computes lives in the executor and the
model (:class:`~megen.models.ldm.StagedLDM`, receiver-side denoising included).

Randomness (all streams of master seed ``cfg.seed``, see :mod:`megen.rng`):

* the initial noise (stage ``Z``) is the stream ``("stage", "Z")`` on whatever node draws it, so a
  noiseless split run equals the unsplit one; the completion (stage ``C``) uses ``("stage", "C")``;
* a transfer's channel uses ``("transfer", src, dst, item, n)`` where ``n`` counts earlier transfers
  of the *same* item over the *same* directed link (0 in every built-in plan); a halo exchange strip
  uses ``("halo", src, dst, src_tile, dst_tile, step)``.

No stream depends on the position of an operation in the plan, so inserting an operation changes no
other operation's draws.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from megen import rng
from megen.config import RunConfig
from megen.costs.flops import FlopMeter
from megen.costs.profiles import Profiles
from megen.errors import MegenError
from megen.models.ldm import StagedLDM
from megen.protocols.executors import LocalExecutor, NodeExecutor, RunContext, StageDone
from megen.protocols.ledger import EngineOutput, Ledger, StageRecord, TransferRecord
from megen.protocols.links import LinkSet, Sent
from megen.protocols.memo import StageMemo
from megen.protocols.plan import ItemRef, Op, ParallelDenoise, Plan, Stage, Stitch, Tile, Transfer
from megen.protocols.tiles import Window, halo_exchange, tile_windows
from megen.protocols.validate import validate_plan

IMAGE = ItemRef("image")
LATENT = ItemRef("latent")


@dataclass(frozen=True)
class EngineConfig:
    """What a run needs besides the plan.

    Attributes:
        num_steps: ``N``, DDIM steps of the full schedule.
        strength: SDEdit strength (image-to-image); ``None`` for text-to-image.
        guidance: CFG scale.
        seed: Master seed of the run's random streams (:mod:`megen.rng`).
        snr_aware: Receiver-side denoising of noisy received latents
            (:meth:`~megen.models.ldm.StagedLDM.noisy_entry`).
        completion_strength: Strength of the UE's completion of a sketch (stage ``C``).
        ue_parts: Model parts the UE holds (``"unet_es"`` added by ``--ue-model es``).
        es_parts: Model parts every ES holds.
    """

    num_steps: int = 25
    strength: float | None = None
    guidance: float = 4.0
    seed: int = 0
    snr_aware: bool = True
    completion_strength: float = 0.5
    ue_parts: frozenset[str] = frozenset({"text", "vae", "unet_ue"})
    es_parts: frozenset[str] = frozenset({"text", "vae", "unet_es"})

    def parts(self, node: str) -> frozenset[str]:
        """Model parts ``node`` holds."""
        return self.ue_parts if node == "UE" else self.es_parts

    @classmethod
    def of(cls, cfg: RunConfig) -> EngineConfig:
        """The engine's view of a run configuration (``task`` and the receiver options of ``protocol``;
        the UE also holds the ES denoiser when ``protocol.ue_model`` is ``es``)."""
        task, proto = cfg.task, cfg.protocol
        ue_parts = {"text", "vae", "unet_ue"} | ({"unet_es"} if proto.ue_model == "es" else set())
        return cls(
            num_steps=task.steps,
            strength=task.strength,
            guidance=task.guidance,
            seed=task.seed,
            snr_aware=proto.snr_aware,
            completion_strength=proto.completion_strength,
            ue_parts=frozenset(ue_parts),
        )


class Engine:
    """Executes plans on one model with one set of links and profiles.

    Args:
        model: The staged model.
        links: Channel and transmission settings per link kind (``None``: plans without transfers).
        profiles: Device and link cost profiles.
        flop_meter: Shared FLOP cache (FLOPs depend only on shapes).
        memo: Shared stage memo (:mod:`megen.protocols.memo`): deterministic stages whose inputs were
            seen before reuse their output; costs are accounted all the same. ``None``: always compute.
    """

    def __init__(
        self,
        model: StagedLDM,
        links: LinkSet | None,
        profiles: Profiles,
        flop_meter: FlopMeter | None = None,
        memo: StageMemo | None = None,
        *,
        node_models: Mapping[str, StagedLDM] | None = None,
    ) -> None:
        self.model = model
        self.links = links
        self.profiles = profiles
        self.meter = flop_meter or FlopMeter()
        self.memo = memo
        self.node_models = dict(node_models or {})

    def model_of(self, node: str) -> StagedLDM:
        """The model object (and so the device) ``node`` runs on: ``node_models["UE"]`` for the UE,
        ``node_models["ES"]`` for every edge server, else the engine's ``model``."""
        return self.node_models.get("UE" if node == "UE" else "ES", self.model)

    def executor(self, node: str, cfg: EngineConfig) -> NodeExecutor:
        """The executor of ``node`` for one run (override to place nodes elsewhere)."""
        return LocalExecutor(node, self.model_of(node), cfg.parts(node), self.links, self.meter, self.memo)

    def run_stages(
        self, nodes: Mapping[str, NodeExecutor], ops: Sequence[Stage], ctx: RunContext
    ) -> list[StageDone]:
        """Run stages of distinct nodes (a parallel step); in order here, concurrently in remote engines."""
        return [nodes[op.node].run_stage(op, ctx) for op in ops]

    def run(
        self,
        plan: Plan,
        prompts: Sequence[str],
        cfg: EngineConfig,
        reference: torch.Tensor | None = None,
    ) -> EngineOutput:
        """Run ``plan`` for a batch of prompts (and reference images ``[B, C, H, W]``, image-to-image)."""
        prompts = list(prompts)
        if not prompts:
            raise MegenError("no prompts given")
        if reference is not None and reference.shape[0] != len(prompts):
            raise MegenError(f"{reference.shape[0]} reference images for {len(prompts)} prompts")
        rng.derive(cfg.seed)  # rejects a bad seed before anything runs
        i2i = reference is not None
        validate_plan(plan, cfg, image_to_image=i2i)
        if plan.transfers() and self.links is None:
            raise MegenError(f"plan {plan.name!r} sends items but the engine has no links")
        start = self.model.start_step(cfg.num_steps, cfg.strength if i2i else None)
        ctx = RunContext(cfg, len(prompts), i2i, start)
        nodes = {n: self.executor(n, cfg) for n in ("UE", *plan.nodes())}
        nodes["UE"].put(ItemRef("prompt"), prompts)
        if reference is not None:
            nodes["UE"].put(ItemRef("reference"), reference)
        return _Run(self, plan, ctx, nodes).execute()


def pro_rata(sent: Sent, share: float) -> Sent:
    """``sent`` with its channel uses, bits and transmissions scaled to the ``share`` of the batch
    actually sent (items already in outage are not sent; per-image costs are batch averages anyway)."""
    if share >= 1.0:
        return sent
    return dataclasses.replace(
        sent,
        channel_uses=round(sent.channel_uses * share),
        payload_bits=round(sent.payload_bits * share),
        transmissions=round(sent.transmissions * share),
    )


class _Run:
    """The interpreter's state for one execution: executors, tile geometry, ledger, final latent."""

    def __init__(self, engine: Engine, plan: Plan, ctx: RunContext, nodes: dict[str, NodeExecutor]) -> None:
        self.engine = engine
        self.plan = plan
        self.ctx = ctx
        self.nodes = nodes
        self.ledger = Ledger(engine.profiles)
        self.windows: list[Window] = []
        self.final_latent: torch.Tensor | None = None
        self.entries: list[tuple[str, int, int]] = []
        self.sent: Counter[tuple[str, str, ItemRef]] = Counter()
        self.outage = torch.zeros(ctx.batch_size, dtype=torch.bool)
        self.outage_known_s: float | None = None
        self.in_fallback = False

    def share(self) -> float:
        """Fraction of the batch the current path still serves, whose costs are booked pro rata: the
        main path drops an image whose earlier transfer failed (its receiver knows: HARQ gave up), the
        fallback serves only the images in outage."""
        served = self.outage if self.in_fallback else ~self.outage
        return float(served.float().mean())

    def execute(self) -> EngineOutput:
        """Run the plan's operations, then its fallback for the images in outage (if it has one)."""
        for op in self.plan.ops:
            self.dispatch(op)
        node = self.plan.result_node
        image = self.nodes[node].get(IMAGE)
        fallback = torch.zeros_like(self.outage)
        if self.plan.fallback and bool(self.outage.any()):
            image, fallback = self.run_fallback(image), self.outage.clone()
        out = self.ledger.output(image, self.final_latent, self.ledger.ready_at(node, IMAGE))
        out.snr_aware_entries = self.entries
        out.outage = (self.outage & ~fallback).tolist()
        out.fallback = fallback.tolist()
        out.delivered_to = node
        return out

    def dispatch(self, op: Op) -> None:
        if isinstance(op, Stage):
            self.stage(op)
        elif isinstance(op, Transfer):
            self.transfer(op)
        elif isinstance(op, Tile):
            self.tile(op)
        elif isinstance(op, Stitch):
            self.stitch(op)
        else:
            self.parallel(op)

    def run_fallback(self, planned: torch.Tensor) -> torch.Tensor:
        """Run the plan's fallback once the outage is known; images in outage show its image.

        The result node starts the fallback when the first failed transfer has ended (HARQ gave up),
        not before; its stages are booked like any other (FLOPs, seconds, joules), pro rata for the
        images in outage only.
        """
        node = self.plan.result_node
        known = self.outage_known_s or 0.0
        self.ledger.node_free[node] = max(self.ledger.node_free.get(node, 0.0), known)
        self.in_fallback = True
        for op in self.plan.fallback:
            self.dispatch(op)
        own = self.nodes[node].get(IMAGE)
        mask = self.outage.to(own.device).view(-1, *([1] * (own.dim() - 1)))
        return torch.where(mask, own, planned.to(own.device))

    def note_outage(self, sent: Sent, end_s: float) -> None:
        """Mark the images a transfer left in outage (failed after HARQ): per item when the link says
        which items failed (``Sent.item_ok``), else every image of the batch."""
        if sent.item_ok and len(sent.item_ok) == self.outage.numel():
            failed = ~torch.tensor(sent.item_ok, dtype=torch.bool)
        else:
            failed = torch.full_like(self.outage, not sent.ok)
        if bool(failed.any()):
            self.outage |= failed
            self.outage_known_s = min(end_s, self.outage_known_s or end_s)

    def stage(self, op: Stage, done: StageDone | None = None) -> None:
        reads, write = op.io(self.ctx.image_to_image)
        ex = self.nodes[op.node]
        done = ex.run_stage(op, self.ctx) if done is None else done
        end = self.ledger.stage(done.name, op.node, round(done.flops * self.share()), reads)
        self.ledger.mark(op.node, [write], end)
        if done.entry is not None:
            self.entries.append((op.node, *done.entry))
        if op.tile is None and op.kind in ("D", "G"):
            self.final_latent = ex.get(LATENT)

    def transfer(self, op: Transfer) -> None:
        window = self.windows[op.item.tile] if op.core_only and op.item.tile is not None else None
        out = self.nodes[op.src].transmit(op.item, window=window)
        key = (op.src, op.dst, op.item)
        stream = rng.derive(self.ctx.cfg.seed, "transfer", op.src, op.dst, str(op.item), self.sent[key])
        self.sent[key] += 1
        sent = self.nodes[op.dst].receive(op.item, out, mode=op.mode, link=op.link, stream_seed=stream)
        ready = self.ledger.ready_at(op.src, op.item)
        end = self.ledger.transfer(
            str(op.item), op.src, op.dst, op.link, op.mode, pro_rata(sent, self.share()), ready
        )
        self.ledger.mark(op.dst, [op.item], end)
        self.note_outage(sent, end)

    def tile(self, op: Tile) -> None:
        self.windows = tile_windows(self.engine.model.latent_shape[2], op.k, op.halo)
        self.nodes[op.node].tile(op, self.windows)
        t = self.ledger.ready_at(op.node, op.item)
        self.ledger.mark(op.node, [op.item.at(i) for i in range(op.k)], t)

    def stitch(self, op: Stitch) -> None:
        ex = self.nodes[op.node]
        ex.stitch(op, self.windows, self.ctx.cfg.num_steps)
        t = max(self.ledger.ready_at(op.node, op.item.at(i)) for i in range(op.k))
        self.ledger.mark(op.node, [op.item], t)
        if op.item == LATENT:
            self.final_latent = ex.get(LATENT)

    def parallel(self, op: ParallelDenoise) -> None:
        """Denoise the tiles on their nodes in chunks of ``sync_every`` steps, exchanging halos between."""
        n = self.ctx.cfg.num_steps
        step = self.ctx.start_step if op.start is None else op.start
        stop = n if op.stop is None else op.stop
        exchanges = halo_exchange(self.windows)
        while step < stop:
            chunk = (stop - step) if op.sync_every <= 0 else min(op.sync_every, stop - step)
            ops = [op.tile_stage(i, step, step + chunk) for i in range(len(op.nodes))]
            for st, done in zip(ops, self.engine.run_stages(self.nodes, ops, self.ctx), strict=True):
                self.stage(st, done)
            step += chunk
            if op.sync_every > 0 and step < stop:
                self.exchange_halos(op, exchanges, step)

    def exchange_halos(
        self, op: ParallelDenoise, exchanges: list[tuple[int, int, slice, slice]], step: int
    ) -> None:
        """Send every halo strip over the backhaul (analog) into the destination window's halo.

        A strip is the source's *core* columns and lands in the destination's *halo* columns, so the
        order of the exchanges does not matter; each starts when the source tile was ready.
        """
        tiles = [LATENT.at(i) for i in range(len(op.nodes))]
        ready = [self.ledger.ready_at(node, tiles[i]) for i, node in enumerate(op.nodes)]
        arrived = list(ready)
        for d, s, dcols, scols in exchanges:
            src, dst = op.nodes[s], op.nodes[d]
            out = self.nodes[src].transmit(tiles[s], cols=scols)
            stream = rng.derive(self.ctx.cfg.seed, "halo", src, dst, s, d, step)
            sent = self.nodes[dst].receive(
                tiles[d], out, mode="analog", link="backhaul", stream_seed=stream, into=dcols
            )
            t = self.ledger.transfer(
                f"halo@{s}->{d}", src, dst, "backhaul", "analog", pro_rata(sent, self.share()), ready[s]
            )
            self.note_outage(sent, t)
            arrived[d] = max(arrived[d], t)
        for d, node in enumerate(op.nodes):
            self.ledger.mark(node, [tiles[d]], arrived[d])


__all__ = ["Engine", "EngineConfig", "EngineOutput", "StageRecord", "TransferRecord"]
