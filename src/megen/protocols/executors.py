"""Node executors: each node of a plan runs its stages on its own model parts.

The engine (:mod:`megen.protocols.engine`) interprets a plan and dispatches every operation to the
executor of the node it runs on, through the small :class:`NodeExecutor` interface: stages, tiling,
and both ends of a transfer (the transmitter on the source node, the channel and the receiver on the
destination node). A later runtime can put a node in another process behind the same interface; the
:class:`LocalExecutor` here runs in the engine's process.

An executor holds the items of its node (values with :class:`~megen.protocols.items.ItemMeta`), the
model parts it may use, the shared FLOP meter and the stage memo (:mod:`megen.protocols.memo`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import torch

from megen import rng
from megen.costs.flops import FlopMeter
from megen.errors import MegenError
from megen.models.ldm import StagedLDM
from megen.protocols.items import Item, ItemMeta
from megen.protocols.links import LinkSet, Sent
from megen.protocols.memo import StageMemo
from megen.protocols.plan import ItemRef, Stage, Stitch, Tile
from megen.protocols.tiles import Window, core, cut, stitch

if TYPE_CHECKING:
    from megen.protocols.engine import EngineConfig

#: Names of the random streams of the stages that draw noise (see :mod:`megen.rng`). The initial
#: noise is one stream whatever node draws it, so a split plan draws what the unsplit one draws.
NOISE_STREAM = ("stage", "Z")
COMPLETION_STREAM = ("stage", "C")


@dataclass(frozen=True)
class RunContext:
    """What every node knows about the run: settings, batch size and where denoising starts."""

    cfg: EngineConfig
    batch_size: int
    image_to_image: bool
    start_step: int


@dataclass(frozen=True)
class StageDone:
    """What a node reports after a stage: its record name, measured FLOPs, and receiver-side entry.

    Attributes:
        name: Record name, e.g. ``"D[3:6](es)"``.
        flops: FLOPs of the stage (measured once per shape, see :class:`~megen.costs.flops.FlopMeter`).
        entry: ``(planned_step, entry_step)`` when receiver-side denoising moved the start, else ``None``.
    """

    name: str
    flops: int
    entry: tuple[int, int] | None = None


@dataclass(frozen=True)
class Outgoing:
    """What a transmitter hands to the link: the value to send and its metadata."""

    value: Any
    meta: ItemMeta


class NodeExecutor(Protocol):
    """The interface the engine drives; one object per node of a run."""

    node: str

    def put(self, item: ItemRef, value: Any, meta: ItemMeta = ...) -> None: ...

    def get(self, item: ItemRef) -> Any: ...

    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone: ...

    def tile(self, op: Tile, windows: Sequence[Window]) -> None: ...

    def stitch(self, op: Stitch, windows: Sequence[Window], step: int) -> None: ...

    def transmit(
        self, item: ItemRef, *, window: Window | None = None, cols: slice | None = None
    ) -> Outgoing: ...

    def receive(
        self,
        item: ItemRef,
        out: Outgoing,
        *,
        mode: str,
        link: str,
        stream_seed: int,
        into: slice | None = None,
    ) -> Sent: ...


class LocalExecutor:
    """A node in the engine's process.

    Args:
        node: The node's name (``"UE"``, ``"ES1"`` ...).
        model: The staged model (the node uses only ``parts`` of it; validation checks that).
        parts: Model parts the node holds (``"text"``, ``"vae"``, ``"unet_es"``, ``"unet_ue"``).
        links: The links whose channel and receiver this node runs for items sent to it.
        meter: Shared FLOP cache (FLOPs depend only on shapes).
        memo: Shared stage memo, or ``None`` (always compute).
    """

    def __init__(
        self,
        node: str,
        model: StagedLDM,
        parts: frozenset[str],
        links: LinkSet | None,
        meter: FlopMeter,
        memo: StageMemo | None = None,
    ) -> None:
        self.node = node
        self.model = model
        self.parts = parts
        self.links = links
        self.meter = meter
        self.memo = memo
        self.items: dict[ItemRef, Item] = {}
        #: Outputs of stages ``D`` already computed for this node's inputs in a fused batch
        #: (:mod:`megen.runtime.fusion`): used once instead of the model; FLOPs stay the unfused ones.
        self.precomputed: dict[Stage, torch.Tensor] = {}

    # ------------------------------------------------------------------ items
    def put(self, item: ItemRef, value: Any, meta: ItemMeta = ItemMeta()) -> None:
        self.items[item] = Item(value, meta)

    def get(self, item: ItemRef) -> Any:
        return self._item(item).value

    def meta(self, item: ItemRef) -> ItemMeta:
        return self._item(item).meta

    def _item(self, item: ItemRef) -> Item:
        try:
            return self.items[item]
        except KeyError:  # validated before, so this is an engine bug
            raise MegenError(f"internal: {item} is not on {self.node}") from None

    # ------------------------------------------------------------------ stages
    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone:
        """Run stage ``op`` on this node's items; its output replaces the item it writes."""
        missing = sorted(set(op.parts()) - self.parts)
        if missing:  # validated before, so this is an engine bug
            raise MegenError(f"internal: {op.describe()} needs {missing} on {self.node}")
        handlers: dict[str, Callable[[Stage, RunContext], StageDone]] = {
            "T": self._text,
            "E": self._encode,
            "Z": self._noise,
            "D": self._denoise,
            "G": self._decode,
            "K": self._decode,
            "C": self._complete,
        }
        return handlers[op.kind](op, ctx)

    def _compute(
        self,
        key: tuple,
        fn: Callable[[], Any],
        measure: Callable[[], Any] | None = None,
        memo: tuple | None = None,
        per_call: tuple[tuple, int] | None = None,
    ) -> tuple[Any, int]:
        """``fn()`` and its FLOPs: ``key`` is the FLOP signature (shapes); ``memo`` (optional) holds
        everything else the result depends on (step range, stream seeds, guidance, input tensors): a
        stage seen before with equal ``key`` and ``memo`` reuses its output. ``per_call = (call
        signature, calls)``: ``fn`` repeats one call (:meth:`~megen.costs.flops.FlopMeter.run`)."""
        flop_key = (self.model.name, id(self.model), *key)
        calls = None if per_call is None else ((self.model.name, id(self.model), *per_call[0]), per_call[1])
        memo_key: Hashable | None = None
        if memo is not None and self.memo is not None:
            memo_key = self.memo.key(flop_key, memo)
            cached = self.memo.get(memo_key)
            known = self.meter.known(flop_key)
            if cached is not None and known is not None:
                return cached, known
        result, flops = self.meter.run(flop_key, fn, measure, per_call=calls)
        if memo_key is not None and self.memo is not None:
            self.memo.put(memo_key, result)
        return result, flops

    def _text(self, op: Stage, ctx: RunContext) -> StageDone:
        prompts = list(self.get(ItemRef("prompt")))
        m = self.model
        cond, flops = self._compute(
            ("T", len(prompts)),
            lambda: m.encode_text(prompts),
            measure=lambda: m.encode_text(prompts, cached=False),
        )
        self.put(ItemRef("cond"), cond)
        return StageDone("T", flops)

    def _encode(self, op: Stage, ctx: RunContext) -> StageDone:
        ref = self.get(ItemRef("reference"))
        z, flops = self._compute(("E", tuple(ref.shape)), lambda: self.model.encode_image(ref), memo=(ref,))
        self.put(ItemRef("z_ref"), z)
        return StageDone("E", flops)

    def _noise(self, op: Stage, ctx: RunContext) -> StageDone:
        m, cfg, n, b = self.model, ctx.cfg, ctx.cfg.num_steps, ctx.batch_size
        stream = rng.derive(cfg.seed, *NOISE_STREAM)
        gen = torch.Generator().manual_seed(stream)
        if ctx.image_to_image:
            z_ref = self.get(ItemRef("z_ref"))
            lat, flops = self._compute(
                ("Z", b),
                lambda: m.noise(z_ref, num_steps=n, strength=cfg.strength, generator=gen),
                memo=(n, cfg.strength, stream, z_ref),
            )
            meta = self._noised_meta(self.meta(ItemRef("z_ref")), ctx, stream)
        else:
            lat, flops = self._compute(
                ("Z", b), lambda: m.noise(None, num_steps=n, strength=None, generator=gen, batch_size=b)
            )
            meta = ItemMeta(step=0)
        self.put(ItemRef("latent"), lat, meta)
        return StageDone("Z", flops)

    def _noised_meta(self, ref: ItemMeta, ctx: RunContext, stream: int) -> ItemMeta:
        """The metadata of ``Z(z_ref)`` where ``z_ref`` arrived over a noisy link (``noise_at`` receiver).

        ``sqrt(a) (x0 + n) + sqrt(1 - a) eps`` carries the link noise ``n`` (variance ``s2``) scaled by
        ``sqrt(a)``: variance ``a s2`` on top of the schedule's; the unbiased estimate is noised with
        the same ``eps`` (the stream is shared), so receiver-side denoising enters at the right level.
        """
        meta = replace(ref, step=ctx.start_step)
        if ref.noise_var is None:
            return meta
        n = ctx.cfg.num_steps
        a = self.model.alpha_bar_at(n, ctx.start_step)
        unbiased = None
        if ref.unbiased is not None:
            gen = torch.Generator().manual_seed(stream)
            unbiased = self.model.noise(ref.unbiased, num_steps=n, strength=ctx.cfg.strength, generator=gen)
        return replace(meta, noise_var=ref.noise_var * a, unbiased=unbiased)

    def _denoise(self, op: Stage, ctx: RunContext) -> StageDone:
        """Stage ``D``, with receiver-side denoising of a noisy received latent (``cfg.snr_aware``)."""
        m, cfg, n = self.model, ctx.cfg, ctx.cfg.num_steps
        item, cond_ref = ItemRef("latent", op.tile), ItemRef("cond")
        start = ctx.start_step if op.start is None else op.start
        stop = n if op.stop is None else op.stop
        den, g = op.denoiser_name, cfg.guidance
        lat, meta = self.get(item), self.meta(item)
        cond = self.get(cond_ref)
        entry = None
        unet_call: tuple = ("unet call", den, tuple(lat.shape), g > 1)
        if cfg.snr_aware and meta.noise_var is not None:
            received = lat if meta.unbiased is None else meta.unbiased
            k = start if meta.step is None else meta.step
            entry = m.noisy_entry(received, meta.noise_var, entered_step=k, start=start, num_steps=n)
        if entry is not None:
            e = entry
            key: tuple = ("Dhop", den, tuple(lat.shape), stop - e.step + 1, g > 1)
            memo: tuple = (n, e.step, stop, g, e.latents, e.timesteps, cond)
            out, flops = self._compute(
                key,
                lambda: m.denoise_noisy(e, cond, num_steps=n, stop=stop, guidance=g, denoiser=den),
                memo=memo,
                per_call=(unet_call, stop - e.step + 1),  # one hop, then a call per step
            )
            first = e.step
        else:
            key = ("D", den, tuple(lat.shape), stop - start, g > 1)
            run = lambda: m.denoise(lat, cond, num_steps=n, start=start, stop=stop, guidance=g, denoiser=den)  # noqa: E731
            pre = self.precomputed.pop(op, None)
            out, flops = self._compute(
                key,
                run if pre is None else lambda: pre,
                measure=None if pre is None else run,
                memo=(n, start, stop, g, lat, cond) if pre is None else None,
                per_call=(unet_call, stop - start),
            )
            first = start
        self.put(item, out, ItemMeta(step=stop, core=meta.core, cols=meta.cols))
        return StageDone(f"D[{first}:{stop}]({den})", flops, None if entry is None else (start, first))

    def _decode(self, op: Stage, ctx: RunContext) -> StageDone:
        """Stage ``G`` (image) or ``K`` (sketch) of the latent (or its tile)."""
        lat = self.get(ItemRef("latent", op.tile))
        fn = self.model.decode if op.kind == "G" else self.model.sketch
        out, flops = self._compute((op.kind, tuple(lat.shape)), lambda: fn(lat), memo=(lat,))
        self.put(ItemRef("image" if op.kind == "G" else "sketch", op.tile), out)
        return StageDone(op.kind, flops)

    def _complete(self, op: Stage, ctx: RunContext) -> StageDone:
        """Stage ``C``: complete the sketch (a noisier sketch is completed from an earlier step)."""
        m, cfg, n = self.model, ctx.cfg, ctx.cfg.num_steps
        sketch, meta = self.get(ItemRef("sketch")), self.meta(ItemRef("sketch"))
        cond = self.get(ItemRef("cond"))
        den, g = op.denoiser_name, cfg.guidance
        noise_var = meta.noise_var if cfg.snr_aware else None
        strength = m.completion_strength(sketch, noise_var, strength=cfg.completion_strength, num_steps=n)
        start = m.start_step(n, strength)
        stream = rng.derive(cfg.seed, *COMPLETION_STREAM)
        gen = torch.Generator().manual_seed(stream)
        img, flops = self._compute(
            ("C", den, tuple(sketch.shape), n - start, g > 1),
            lambda: m.complete(
                sketch, cond, num_steps=n, strength=strength, guidance=g, generator=gen, denoiser=den
            ),
            memo=(n, strength, g, stream, sketch, cond),
        )
        self.put(ItemRef("image"), img)
        return StageDone(f"C[{start}:{n}]({den})", flops)

    # ------------------------------------------------------------------ tiles
    def _geometry_factor(self, base: str) -> float:
        """Pixels (or latent columns) of ``base`` per latent column."""
        if base in ("latent", "z_ref"):
            return 1.0
        if base == "image":
            return float(self.model.vae_scale)
        if base == "sketch":
            return self.model.vae_scale / self.model.sketch_factor
        raise MegenError(f"item {base!r} cannot be tiled")

    def tile(self, op: Tile, windows: Sequence[Window]) -> None:
        """Cut ``op.item`` into the windows ``op.item@i`` (metadata kept, cut alongside)."""
        whole = self._item(op.item)
        f = self._geometry_factor(op.item.base)
        for i, w in enumerate(windows):
            ws = w.scaled(f)
            meta = replace(whole.meta, cols=(w.win_lo, w.win_hi))
            if meta.unbiased is not None:
                meta = replace(meta, unbiased=cut(meta.unbiased, ws))
            self.put(op.item.at(i), cut(whole.value, ws), meta)

    def stitch(self, op: Stitch, windows: Sequence[Window], step: int) -> None:
        """Assemble the cores of ``op.item@0..k-1`` into ``op.item``, entering step ``step``."""
        f = self._geometry_factor(op.item.base)
        cores = []
        for i in range(op.k):
            it = self._item(op.item.at(i))
            cores.append(it.value if it.meta.core else core(it.value, windows[i].scaled(f)))
        self.put(op.item, stitch(cores), ItemMeta(step=step))

    # ------------------------------------------------------------------ transfers
    def transmit(self, item: ItemRef, *, window: Window | None = None, cols: slice | None = None) -> Outgoing:
        """The transmitter: what leaves this node for ``item`` (its core for ``window``, or ``cols``)."""
        it = self._item(item)
        value, meta = it.value, it.meta
        if cols is not None:
            value = value[..., cols].contiguous()
            at = None if meta.cols is None else (meta.cols[0] + cols.start, meta.cols[0] + cols.stop)
            meta = replace(meta, cols=at)
        elif window is not None and item.tile is not None and not meta.core:
            value = core(value, window.scaled(self._geometry_factor(item.base)))
            meta = replace(meta, core=True, cols=(window.core_lo, window.core_hi))
        return Outgoing(value, meta)

    def receive(
        self,
        item: ItemRef,
        out: Outgoing,
        *,
        mode: str,
        link: str,
        stream_seed: int,
        into: slice | None = None,
    ) -> Sent:
        """Channel and receiver: send ``out`` over ``link`` in ``mode`` and keep what arrives as ``item``.

        ``stream_seed`` seeds the channel's CPU generator (:mod:`megen.rng`); ``into`` writes the arrival
        into columns of the item already held (halo exchange) instead of replacing it.
        """
        if self.links is None:
            raise MegenError(f"internal: node {self.node} has no links to receive {item} over")
        gen = torch.Generator().manual_seed(stream_seed)
        value = out.value.cpu() if isinstance(out.value, torch.Tensor) else out.value  # the wire is host data
        sent = self.links.send(item.base, value, mode, link, gen, out.meta.cols)
        if into is None:
            self.put(item, sent.value, out.meta.after_link(sent.noise_var, sent.unbiased))
        else:
            held = self._item(item)
            win = held.value.clone()
            win[..., into] = sent.value
            self.put(item, win, held.meta)
        return sent


__all__ = ["LocalExecutor", "NodeExecutor", "Outgoing", "RunContext", "StageDone"]
