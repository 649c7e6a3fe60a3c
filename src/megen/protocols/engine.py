"""The plan engine: executes any :class:`~megen.protocols.plan.Plan` on a staged model.

The engine owns everything around the stages: item stores per node, random generators, transfers
over links, receiver-side (SNR-aware) denoising, FLOP measurement, and the cost accounting (channel
uses, bits, seconds, joules) with a timeline that lets parallel edge servers overlap.

Timeline rules (end-to-end latency along the plan's critical path):

* a stage starts when its node is free and all its inputs are present on the node;
* a transfer starts when its item is ready at the source and the directed link ``src -> dst`` is
  free (each ES has its own links, so parallel ESs transmit at the same time);
* the end-to-end latency is the time the final ``image`` is ready at the plan's result node.

Randomness: stage ``Z`` draws from ``torch.Generator().manual_seed(seed)`` (the same draws as the
unsplit pipeline, so a noiseless split run equals it); the completion's noise uses ``seed + 1``;
each transfer's channel uses its own generator seeded from ``(seed, transfer index)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from megen.costs.flops import FlopMeter
from megen.costs.profiles import Profiles
from megen.errors import MegenError
from megen.models.ldm import StagedLDM, TextCondition
from megen.protocols.links import LinkSet, Sent
from megen.protocols.memo import StageMemo
from megen.protocols.plan import (
    ParallelDenoise,
    Plan,
    Stage,
    Stitch,
    Tile,
    Transfer,
)
from megen.protocols.tiles import Window, core, cut, halo_exchange, stitch, tile_windows
from megen.protocols.validate import validate_plan


@dataclass(frozen=True)
class EngineConfig:
    """What a run needs besides the plan.

    Attributes:
        num_steps: ``N``, DDIM steps of the full schedule.
        strength: SDEdit strength (image-to-image); ``None`` for text-to-image.
        guidance: CFG scale.
        seed: Master seed.
        snr_aware: Receiver-side denoising of noisy received latents (see :meth:`Engine._snr_aware_entry`).
        completion_strength: Strength of the UE's completion of a sketch (stage ``C``).
        ue_parts: Model parts the UE holds (``"unet_es"`` added by ``--ue-model es``).
    """

    num_steps: int = 25
    strength: float | None = None
    guidance: float = 4.0
    seed: int = 0
    snr_aware: bool = True
    completion_strength: float = 0.5
    ue_parts: frozenset[str] = frozenset({"text", "vae", "unet_ue"})
    es_parts: frozenset[str] = frozenset({"text", "vae", "unet_es"})


@dataclass(frozen=True)
class StageRecord:
    """One executed stage: FLOPs (measured), seconds and joules from the node's profile."""

    name: str
    node: str
    flops: int
    start_s: float
    end_s: float
    energy_j: float


@dataclass(frozen=True)
class TransferRecord:
    """One executed transfer with its link accounting."""

    item: str
    src: str
    dst: str
    link: str
    mode: str
    channel_uses: int
    payload_bits: int
    ok: bool
    failures: int
    effective_snr_db: float | None
    start_s: float
    end_s: float
    energy_j: float


@dataclass
class EngineOutput:
    """Result of :meth:`Engine.run`.

    Attributes:
        image: Final images ``[B, C, H, W]`` at the plan's result node.
        latent: Final latent at the node that decoded it (``None`` for sketch protocols' completion).
        stages, transfers: Per-operation records, in execution order.
        latency_s: End-to-end latency (critical path), seconds.
        energy_j: Total energy (compute + transmit), joules.
        snr_aware_entries: Receiver-side denoising entries: ``(node, planned_step, entry_step)``.
    """

    image: torch.Tensor
    latent: torch.Tensor | None
    stages: list[StageRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)
    latency_s: float = 0.0
    energy_j: float = 0.0
    snr_aware_entries: list[tuple[str, int, int]] = field(default_factory=list)

    def _per_link(self, field_name: str) -> dict[str, int]:
        out = {"uplink": 0, "downlink": 0, "backhaul": 0}
        for t in self.transfers:
            out[t.link] += getattr(t, field_name)
        out["total"] = sum(out.values())
        return out

    def channel_uses(self) -> dict[str, int]:
        """Complex channel uses per link kind and in total."""
        return self._per_link("channel_uses")

    def payload_bits(self) -> dict[str, int]:
        """Digitally sent bits per link kind and in total."""
        return self._per_link("payload_bits")

    def flops(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.node] = out.get(s.node, 0.0) + float(s.flops)
        return out

    def flops_by_stage(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.stages:
            key = f"{s.node}:{s.name}"
            out[key] = out.get(key, 0.0) + float(s.flops)
        return out

    def latency_breakdown(self) -> dict[str, float]:
        """Busy seconds per node and per link kind (not the critical path)."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.node] = out.get(s.node, 0.0) + (s.end_s - s.start_s)
        for t in self.transfers:
            out[t.link] = out.get(t.link, 0.0) + (t.end_s - t.start_s)
        return out

    def energy_breakdown(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.node] = out.get(s.node, 0.0) + s.energy_j
        for t in self.transfers:
            out[t.link] = out.get(t.link, 0.0) + t.energy_j
        return out

    def failures(self) -> int:
        return sum(t.failures for t in self.transfers)


class Engine:
    """Executes plans on one model with one set of links and profiles.

    Args:
        model: The staged model.
        links: Channel and transmission settings per link kind.
        profiles: Device and link cost profiles.
        flop_meter: Shared FLOP cache (FLOPs depend only on shapes).
        memo: Shared stage memo (:mod:`megen.protocols.memo`): deterministic stages whose inputs were
            seen before reuse their output; costs are accounted all the same. ``None``: always compute.
    """

    def __init__(
        self,
        model: StagedLDM,
        links: LinkSet,
        profiles: Profiles,
        flop_meter: FlopMeter | None = None,
        memo: StageMemo | None = None,
    ) -> None:
        self.model = model
        self.links = links
        self.profiles = profiles
        self.meter = flop_meter or FlopMeter()
        self.memo = memo

    # ------------------------------------------------------------------ public
    def run(
        self,
        plan: Plan,
        prompts: Sequence[str],
        cfg: EngineConfig,
        reference: torch.Tensor | None = None,
    ) -> EngineOutput:
        """Run ``plan`` for a batch of prompts (and reference images, for image-to-image)."""
        prompts = list(prompts)
        if not prompts:
            raise MegenError("no prompts given")
        if reference is not None and reference.shape[0] != len(prompts):
            raise MegenError(f"{reference.shape[0]} reference images for {len(prompts)} prompts")
        validate_plan(plan, cfg, image_to_image=reference is not None)
        run = _Run(self, plan, prompts, cfg, reference)
        return run.execute()


class _Run:
    """State of one execution (stores, metadata, clocks, records)."""

    def __init__(self, engine: Engine, plan: Plan, prompts: list[str], cfg: EngineConfig, reference) -> None:
        self.e = engine
        self.m = engine.model
        self.plan = plan
        self.prompts = prompts
        self.cfg = cfg
        self.i2i = reference is not None
        self.start_step = self.m.start_step(cfg.num_steps, cfg.strength if self.i2i else None)
        self.store: dict[str, dict[str, Any]] = {"UE": {"prompt": prompts}}
        if reference is not None:
            self.store["UE"]["reference"] = reference
        # metadata per (node, item): {"step": int, "noise_var": Tensor[B] (latent units), "core": bool}
        self.meta: dict[tuple[str, str], dict[str, Any]] = {}
        self.ready: dict[tuple[str, str], float] = {("UE", "prompt"): 0.0, ("UE", "reference"): 0.0}
        self.node_free: dict[str, float] = {}
        self.link_free: dict[tuple[str, str], float] = {}
        self.windows: list[Window] | None = None
        self.out = EngineOutput(image=torch.empty(0), latent=None)
        self.transfer_index = 0
        self.final_latent: torch.Tensor | None = None

    # ------------------------------------------------------------------ helpers
    def get(self, node: str, item: str) -> Any:
        try:
            return self.store[node][item]
        except KeyError:  # validated before, so this is an engine bug
            raise MegenError(f"internal: {item!r} is not on {node}") from None

    def put(self, node: str, item: str, value: Any, t: float, meta: dict | None = None) -> None:
        self.store.setdefault(node, {})[item] = value
        self.ready[(node, item)] = t
        self.meta[(node, item)] = meta or {}

    def _stage(
        self,
        name: str,
        node: str,
        inputs: Sequence[str],
        key: tuple,
        fn,
        measure=None,
        memo: tuple | None = None,
    ) -> tuple[Any, float]:
        """Run one stage on ``node`` and account its FLOPs, seconds and joules.

        ``key`` is the FLOP signature (shapes); ``memo`` (optional) holds everything else the result
        depends on (step range, seeds, guidance, input tensors): with an engine memo, a stage seen
        before with equal ``key`` and ``memo`` reuses its output.
        """
        t_in = max([self.ready.get((node, i), 0.0) for i in inputs] + [self.node_free.get(node, 0.0)])
        flop_key = (self.m.name, id(self.m), *key)
        memo_key = None if memo is None or self.e.memo is None else self.e.memo.key(flop_key, memo)
        cached = None if memo_key is None else self.e.memo.get(memo_key)  # type: ignore[union-attr]
        known = self.e.meter.known(flop_key)
        if cached is not None and known is not None:
            result, flops = cached, known
        else:
            result, flops = self.e.meter.run(flop_key, fn, measure)
            if memo_key is not None:
                self.e.memo.put(memo_key, result)  # type: ignore[union-attr]
        dev = self.e.profiles.device(node)
        dt = dev.seconds(flops)
        self.node_free[node] = t_in + dt
        self.out.stages.append(StageRecord(name, node, flops, t_in, t_in + dt, dev.joules(flops)))
        return result, t_in + dt

    def denoiser_name(self, name: str | None, node: str) -> str:
        return name or ("ue" if node == "UE" else "es")

    # ------------------------------------------------------------------ execution
    def execute(self) -> EngineOutput:
        for op in self.plan.ops:
            if isinstance(op, Stage):
                self.run_stage(op)
            elif isinstance(op, Transfer):
                self.run_transfer(op)
            elif isinstance(op, Tile):
                self.run_tile(op)
            elif isinstance(op, Stitch):
                self.run_stitch(op)
            elif isinstance(op, ParallelDenoise):
                self.run_parallel(op)
        node = self.plan.result_node
        self.out.image = self.get(node, "image")
        self.out.latent = self.final_latent
        self.out.latency_s = self.ready[(node, "image")]
        self.out.energy_j = sum(s.energy_j for s in self.out.stages) + sum(
            t.energy_j for t in self.out.transfers
        )
        return self.out

    def item_name(self, base: str, tile: int | None) -> str:
        return base if tile is None else f"{base}@{tile}"

    def run_stage(self, op: Stage) -> None:
        m, cfg, node, B = self.m, self.cfg, op.node, len(self.prompts)
        N = cfg.num_steps
        if op.kind == "T":
            cond, t = self._stage(
                "T",
                node,
                ["prompt"],
                ("T", B),
                lambda: m.encode_text(self.prompts),
                measure=lambda: m.encode_text(self.prompts, cached=False),
            )
            self.put(node, "cond", cond, t)
        elif op.kind == "E":
            ref = self.get(node, "reference")
            z, t = self._stage(
                "E", node, ["reference"], ("E", tuple(ref.shape)), lambda: m.encode_image(ref), memo=(ref,)
            )
            self.put(node, "z_ref", z, t)
        elif op.kind == "Z":
            gen = torch.Generator().manual_seed(cfg.seed)
            if self.i2i:
                z_ref = self.get(node, "z_ref")
                meta = self.meta.get((node, "z_ref"), {})
                lat, t = self._stage(
                    "Z",
                    node,
                    ["z_ref"],
                    ("Z", B),
                    lambda: m.noise(z_ref, num_steps=N, strength=cfg.strength, generator=gen),
                    memo=(N, cfg.strength, cfg.seed, z_ref),
                )
                self.put(node, "latent", lat, t, {**meta, "step": self.start_step})
            else:
                lat, t = self._stage(
                    "Z",
                    node,
                    [],
                    ("Z", B),
                    lambda: m.noise(None, num_steps=N, strength=None, generator=gen, batch_size=B),
                )
                self.put(node, "latent", lat, t, {"step": 0})
        elif op.kind == "D":
            item = self.item_name("latent", op.tile)
            start = self.start_step if op.start is None else op.start
            stop = N if op.stop is None else op.stop
            den = self.denoiser_name(op.denoiser, node)
            self.denoise_on(node, item, start, stop, den, cond_item="cond")
        elif op.kind in ("G", "K"):
            item = self.item_name("latent", op.tile)
            lat = self.get(node, item)
            fn = m.decode if op.kind == "G" else m.sketch
            out, t = self._stage(
                op.kind, node, [item], (op.kind, tuple(lat.shape)), lambda: fn(lat), memo=(lat,)
            )
            name = self.item_name("image" if op.kind == "G" else "sketch", op.tile)
            self.put(node, name, out, t)
            if op.kind == "G" and op.tile is None:
                self.final_latent = lat
        elif op.kind == "C":
            self.complete(node, self.denoiser_name(op.denoiser, node))

    def denoise_on(self, node: str, item: str, start: int, stop: int, den: str, cond_item: str) -> None:
        m, cfg = self.m, self.cfg
        N = cfg.num_steps
        lat = self.get(node, item)
        cond: TextCondition = self.get(node, cond_item)
        meta = self.meta.get((node, item), {})
        entry = None
        if cfg.snr_aware and meta.get("noise_var") is not None:
            entry = self._snr_aware_entry(lat, meta, start, N)
        if entry is not None:
            x_scaled, t_entry, j = entry
            self.out.snr_aware_entries.append((node, start, j))

            def fn() -> torch.Tensor:
                x = m.hop(
                    x_scaled, cond, t_entry, num_steps=N, to_step=j, guidance=cfg.guidance, denoiser=den
                )
                return m.denoise(
                    x, cond, num_steps=N, start=j, stop=stop, guidance=cfg.guidance, denoiser=den
                )

            key: tuple = ("Dhop", den, tuple(lat.shape), stop - j + 1, cfg.guidance > 1)
            memo: tuple = (N, j, stop, cfg.guidance, x_scaled, t_entry, cond)
            start_label = j
        else:

            def fn() -> torch.Tensor:
                return m.denoise(
                    lat, cond, num_steps=N, start=start, stop=stop, guidance=cfg.guidance, denoiser=den
                )

            key = ("D", den, tuple(lat.shape), stop - start, cfg.guidance > 1)
            memo = (N, start, stop, cfg.guidance, lat, cond)
            start_label = start
        out, t = self._stage(f"D[{start_label}:{stop}]({den})", node, [item, cond_item], key, fn, memo=memo)
        self.put(node, item, out, t, {"step": stop, "core": meta.get("core", False)})
        if "@" not in item:
            self.final_latent = out

    def _snr_aware_entry(
        self, lat: torch.Tensor, meta: dict, start: int, N: int
    ) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """Treat a noisy received latent as a diffusion state at the matching noise level.

        A latent entering step ``k`` is ``z_k = sqrt(a_k) x0 + sqrt(1 - a_k) eps``; over the link it
        gains noise of variance ``s2`` (per element, latent units). Scaled by ``1/sqrt(1 + s2)`` it is
        exactly a diffusion state with ``a* = a_k / (1 + s2)``. Each item enters at the integer
        timestep whose ``alphas_cumprod`` is nearest ``a*``; one DDIM hop takes the batch to the first
        grid step at or below the smallest entry timestep, and plain denoising continues from there.
        Returns ``None`` when the channel noise is negligible (the entry would be the planned step).
        """
        s2 = meta["noise_var"].double()  # [B]
        k = int(meta.get("step", start))
        abar = self.m.alphas_cumprod.double()
        timesteps = self.m.timesteps(N)
        a_k = torch.tensor(1.0, dtype=torch.float64) if k >= N else abar[int(timesteps[k])]
        a_star = a_k / (1.0 + s2)
        t_entry = (abar[None, :] - a_star[:, None]).abs().argmin(dim=1)  # [B]
        t_min = int(t_entry.min())
        # first grid step whose timestep is <= t_min (grid is descending)
        j = next((i for i in range(N) if int(timesteps[i]) <= t_min), N)
        j = max(j, 0)
        t_planned = int(timesteps[start]) if start < N else -1
        if int(t_entry.max()) <= t_planned or (k >= N and int(t_entry.max()) == 0):
            return None
        j = min(j, start) if start < N else j
        y = meta.get("unbiased")
        y = lat if y is None else y
        x = y / torch.sqrt(1.0 + s2).float().view(-1, *([1] * (lat.ndim - 1)))
        return x, t_entry, j

    def complete(self, node: str, den: str) -> None:
        """Stage ``C``: upsample the sketch, encode, noise to the completion strength, denoise, decode."""
        m, cfg = self.m, self.cfg
        N = cfg.num_steps
        sketch = self.get(node, "sketch")
        cond = self.get(node, "cond")
        meta = self.meta.get((node, "sketch"), {})
        strength = cfg.completion_strength
        if cfg.snr_aware and meta.get("noise_var") is not None:
            # pixel-domain SNR of the received sketch -> start no later than the step whose diffusion
            # SNR abar/(1-abar) is at or below it (the diffusion noise must cover the channel noise)
            snr_px = float((sketch.pow(2).flatten(1).mean(1) / meta["noise_var"].clamp(min=1e-12)).min())
            abar = self.m.alphas_cumprod
            ts = self.m.timesteps(N)
            for i in range(N):
                a = float(abar[int(ts[i])])
                if a / (1 - a) >= snr_px:
                    strength = max(strength, (N - i) / N)
                    break
            else:
                strength = max(strength, 1.0 / N)
        start = m.start_step(N, strength)
        gen = torch.Generator().manual_seed(cfg.seed + 1)

        def fn() -> torch.Tensor:
            up = m.upsample_sketch(sketch)
            z = m.encode_image(up)
            z = m.noise(z, num_steps=N, strength=strength, generator=gen)
            z = m.denoise(z, cond, num_steps=N, start=start, stop=N, guidance=cfg.guidance, denoiser=den)
            return m.decode(z)

        img, t = self._stage(
            f"C[{start}:{N}]({den})",
            node,
            ["sketch", "cond"],
            ("C", den, tuple(sketch.shape), N - start, cfg.guidance > 1),
            fn,
            memo=(N, strength, cfg.guidance, cfg.seed, sketch, cond),
        )
        self.put(node, "image", img, t)

    # ------------------------------------------------------------------ transfers
    def _geometry_factor(self, item: str) -> float:
        base = item.split("@")[0]
        if base in ("latent", "z_ref"):
            return 1.0
        if base == "image":
            return float(self.m.vae_scale)
        if base == "sketch":
            return self.m.vae_scale / self.m.sketch_factor
        raise MegenError(f"item {item!r} cannot be tiled")

    def run_transfer(self, op: Transfer) -> None:
        value = self.get(op.src, op.item)
        meta = dict(self.meta.get((op.src, op.item), {}))
        if op.core_only and "@" in op.item and not meta.get("core"):
            assert self.windows is not None
            i = int(op.item.split("@")[1])
            value = core(value, self.windows[i].scaled(self._geometry_factor(op.item)))
            meta["core"] = True
        sent = self._send(op.item.split("@")[0], value, op.mode, op.link, self.transfer_index)
        self.transfer_index += 1
        self._record_transfer(op.item, op.src, op.dst, op.mode, op.link, sent, meta)

    def _send(self, kind: str, value: Any, mode: str, link: str, gen_index: int) -> Sent:
        gen = torch.Generator().manual_seed(_mix(self.cfg.seed, gen_index))
        return self.e.links.send(kind, value, mode, link, gen)

    def _account(
        self, item: str, src: str, dst: str, mode: str, link: str, sent: Sent, ready_s: float
    ) -> float:
        """Book a transfer on the directed link's clock; returns when it has arrived (seconds)."""
        prof = self.e.profiles.link(link)
        t0 = max(ready_s, self.link_free.get((src, dst), 0.0))
        dt = prof.seconds(sent.channel_uses)
        self.link_free[(src, dst)] = t0 + dt
        self.out.transfers.append(
            TransferRecord(
                item,
                src,
                dst,
                link,
                mode,
                sent.channel_uses,
                sent.payload_bits,
                sent.ok,
                sent.failures,
                sent.effective_snr_db,
                t0,
                t0 + dt,
                prof.joules(sent.channel_uses),
            )
        )
        return t0 + dt

    def _record_transfer(
        self, item: str, src: str, dst: str, mode: str, link: str, sent: Sent, meta: dict
    ) -> None:
        t = self._account(item, src, dst, mode, link, sent, self.ready.get((src, item), 0.0))
        new_meta = {k: v for k, v in meta.items() if k in ("step", "core")}
        if sent.noise_var is not None:
            prev = meta.get("noise_var")
            new_meta["noise_var"] = sent.noise_var if prev is None else prev + sent.noise_var
            new_meta["unbiased"] = sent.unbiased
        self.put(dst, item, sent.value, t, new_meta)

    # ------------------------------------------------------------------ tiles
    def run_tile(self, op: Tile) -> None:
        value = self.get(op.node, op.item)
        width_latent = self.m.latent_shape[2]
        self.windows = tile_windows(width_latent, op.k, op.halo)
        f = self._geometry_factor(op.item)
        meta = self.meta.get((op.node, op.item), {})
        t = self.ready[(op.node, op.item)]
        for i, w in enumerate(self.windows):
            self.put(op.node, f"{op.item}@{i}", cut(value, w.scaled(f)), t, dict(meta))

    def run_stitch(self, op: Stitch) -> None:
        assert self.windows is not None
        f = self._geometry_factor(op.item)
        cores, t = [], 0.0
        for i in range(op.k):
            name = f"{op.item}@{i}"
            v = self.get(op.node, name)
            meta = self.meta.get((op.node, name), {})
            cores.append(v if meta.get("core") else core(v, self.windows[i].scaled(f)))
            t = max(t, self.ready[(op.node, name)])
        self.put(op.node, op.item, stitch(cores), t, {"step": self.cfg.num_steps})
        if op.item == "latent":
            self.final_latent = self.get(op.node, op.item)

    def run_parallel(self, op: ParallelDenoise) -> None:
        assert self.windows is not None
        N = self.cfg.num_steps
        start = self.start_step if op.start is None else op.start
        stop = N if op.stop is None else op.stop
        geometry = self.windows
        exchanges = halo_exchange(geometry)
        step = start
        while step < stop:
            chunk = (stop - step) if op.sync_every <= 0 else min(op.sync_every, stop - step)
            for i, node in enumerate(op.nodes):
                self.denoise_on(node, f"latent@{i}", step, step + chunk, op.denoiser, cond_item="cond")
            step += chunk
            if op.sync_every > 0 and step < stop:
                self._exchange_halos(op, exchanges)

    def _exchange_halos(self, op: ParallelDenoise, exchanges: list[tuple[int, int, slice, slice]]) -> None:
        """Send every halo strip over the backhaul (analog) and write it into the destination window."""
        updates: list[tuple[int, slice, torch.Tensor, float]] = []
        for d, s, dcols, scols in exchanges:
            src, dst = op.nodes[s], op.nodes[d]
            strip = self.get(src, f"latent@{s}")[..., scols].contiguous()
            sent = self._send("latent", strip, "analog", "backhaul", self.transfer_index)
            self.transfer_index += 1
            t = self._account(
                f"halo@{s}->{d}", src, dst, "analog", "backhaul", sent, self.ready[(src, f"latent@{s}")]
            )
            updates.append((d, dcols, sent.value, t))
        for d, dcols, value, t in updates:
            node, name = op.nodes[d], f"latent@{d}"
            win = self.get(node, name).clone()
            win[..., dcols] = value
            meta = self.meta.get((node, name), {})
            self.put(node, name, win, max(t, self.ready[(node, name)]), meta)


def _mix(seed: int, index: int) -> int:
    """A generator seed for transfer ``index`` of a run with ``seed`` (64-bit mix)."""
    x = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFF
    return int(x ^ (x >> 29)) & 0x7FFFFFFFFFFF


__all__ = ["Engine", "EngineConfig", "EngineOutput", "StageRecord", "TransferRecord"]
