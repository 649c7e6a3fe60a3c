"""The edge-server logic without a web framework: run sessions of one node and the executor calls.

An :class:`EdgeService` holds one model and a bounded set of *runs* (one per engine run of a client,
keyed by a random run id, dropped after ``run_ttl_s`` seconds unused). Each run holds a
:class:`~megen.protocols.executors.LocalExecutor` for the node the client placed here (``"ES1"`` ...)
with the links of the client's configuration, so the stages, tiling and receivers run here exactly as
they would in the client's process. :meth:`EdgeService.call` takes and returns wire messages
(:mod:`megen.runtime.wire`); the FastAPI app (:mod:`megen.runtime.server`) and the Ray Serve
deployment (:mod:`megen.runtime.ray_serve`) are thin layers over it.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import megen
from megen.config import LINKS, LinksSection
from megen.errors import MegenError
from megen.models.ldm import StagedLDM
from megen.protocols.executors import LocalExecutor, RunContext
from megen.protocols.links import LinkSet
from megen.protocols.plan import NODES, ItemRef, Stage
from megen.runtime import wire
from megen.runtime.fusion import Fusable, fuse_groups, fusion_key, run_fused
from megen.runtime.wire import Packer, Unpacker, WireError

MAX_BATCH = 1024
MAX_PROMPT_CHARS = 10_000


class UnknownRun(MegenError):
    """A run id the server does not hold (never opened, expired, or the server restarted)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one edge server.

    Attributes:
        model: Model name or folder (``tiny``, ``tiny-random``, a Stable Diffusion folder).
        device: Where the model runs (``cpu``, ``cuda``, ``cuda:1`` ...).
        dtype: ``float32`` | ``float16`` | ``bfloat16``.
        max_bytes: Largest request body in bytes.
        run_ttl_s: A run unused for this many seconds is dropped.
        max_runs: Most runs held at once.
    """

    model: str = "tiny"
    device: str = "cpu"
    dtype: str = "float32"
    max_bytes: int = wire.MAX_BYTES
    run_ttl_s: float = 600.0
    max_runs: int = 256


@dataclass
class _Run:
    node: str
    executor: LocalExecutor
    used: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class EdgeService:
    """One edge server's model and runs (thread safe; see the module docstring).

    Args:
        cfg: The server settings.
        model: An already loaded model (tests); ``None``: load ``cfg.model`` on ``cfg.device``.
    """

    def __init__(self, cfg: ServiceConfig, model: StagedLDM | None = None) -> None:
        from megen.session import Session

        self.cfg = cfg
        self.session = Session()
        self.model = model or _load(self.session, cfg)
        self.runs: OrderedDict[str, _Run] = OrderedDict()
        self._lock = threading.Lock()
        self._compute = threading.Lock()  # the model, FLOP meter and memo are used by one call at a time
        self.calls: dict[str, Callable[[_Run, dict[str, Any], Unpacker], bytes]] = {
            "put": self._put,
            "get": self._get,
            "run_stage": self._run_stage,
            "tile": self._tile,
            "stitch": self._stitch,
            "transmit": self._transmit,
            "receive": self._receive,
        }

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` answers: model, fingerprint, device, dtype, version and limits."""
        from megen.devices import resolve_device
        from megen.models.fingerprint import model_fingerprint

        return {
            "model": self.cfg.model,
            "fingerprint": model_fingerprint(self.cfg.model),
            "device": str(resolve_device(self.cfg.device)),
            "dtype": self.cfg.dtype,
            "version": megen.__version__,
            "max_bytes": self.cfg.max_bytes,
            "runs": len(self.runs),
        }

    # ------------------------------------------------------------------ runs
    def open_run(self, data: Any) -> str:
        """Open a run for ``{"node": "ES1", "links": <links section>}``; returns its id."""
        if not isinstance(data, dict) or set(data) - {"node", "links"}:
            raise WireError("a run is opened with {'node': 'ES1', 'links': {...}}")
        node = data.get("node")
        if node not in NODES or node == "UE":
            raise WireError(f"an edge server runs an ES node (ES1..ES4), not {node!r}")
        try:
            links = LinksSection.model_validate(data.get("links", {}))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise WireError(f"bad link configuration: {str(exc).splitlines()[0]}") from None
        parts = frozenset({"text", "vae", "unet_es", "unet_ue"})
        ex = LocalExecutor(
            node, self.model, parts, LinkSet(links), self.session.meter, self.session.memo(self.model)
        )
        with self._lock:
            self._expire()
            if len(self.runs) >= self.cfg.max_runs:
                raise WireError(f"server holds {self.cfg.max_runs} runs; try again later", 503)
            run_id = secrets.token_hex(16)
            self.runs[run_id] = _Run(node, ex, time.monotonic())
        return run_id

    def close_run(self, run_id: str) -> None:
        """Drop a run (unknown ids are ignored: closing is idempotent)."""
        with self._lock:
            self.runs.pop(run_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for rid in [r for r, run in self.runs.items() if now - run.used > self.cfg.run_ttl_s]:
            del self.runs[rid]

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            self._expire()
            run = self.runs.get(run_id)
            if run is None:
                raise UnknownRun(f"unknown or expired run {run_id[:16]!r}")
            run.used = time.monotonic()
            self.runs.move_to_end(run_id)
            return run

    # ------------------------------------------------------------------ calls
    def call(self, run_id: str, name: str, body: bytes) -> bytes:
        """Execute executor call ``name`` of run ``run_id`` on a wire message; returns the answer.

        Raises:
            UnknownRun: the run is not held.
            WireError: a malformed message or an unknown call.
            MegenError: the call failed on this node (a missing item, a bad stage ...).
        """
        fn = self.calls.get(name)
        if fn is None:
            raise WireError(f"unknown call {name!r}; calls are {', '.join(self.calls)}", 404)
        header, tensors = wire.decode(body, self.cfg.max_bytes)
        run = self._run(run_id)
        with run.lock, self._compute:
            return fn(run, header, Unpacker(tensors))

    def call_batch(
        self,
        calls: list[tuple[str, str, bytes]],
        *,
        fuse: bool = False,
        on_fused: Callable[[int], None] | None = None,
    ) -> list[bytes | MegenError]:
        """Several calls ``(run, call, body)``, each answered or failed on its own.

        What Ray Serve's dynamic batching hands over. Without ``fuse`` the calls run back to back on
        one worker, each answering exactly what :meth:`call` would alone. With ``fuse``, fusable
        denoising stages of different runs first run as one batched model call
        (:mod:`megen.runtime.fusion`; equal to unbatched within float rounding, not bit for bit);
        ``on_fused`` is called with the size of every fused group.
        """
        out: list[bytes | MegenError | None] = [None] * len(calls)
        if fuse:
            for i, answer in self._fused_calls(calls, on_fused).items():
                out[i] = answer
        for i, (run_id, name, body) in enumerate(calls):
            if out[i] is None:
                try:
                    out[i] = self.call(run_id, name, body)
                except MegenError as exc:
                    out[i] = exc
        return [a for a in out if a is not None]

    def _fused_calls(
        self, calls: list[tuple[str, str, bytes]], on_fused: Callable[[int], None] | None
    ) -> dict[int, bytes | MegenError]:
        """Answers of the calls that ran in fused groups, by position (the others are not listed)."""
        found: list[Fusable] = []
        runs: dict[int, _Run] = {}
        for i, (run_id, name, body) in enumerate(calls):
            if name != "run_stage":
                continue
            try:
                header, _ = wire.decode(body, self.cfg.max_bytes)
                run = self._run(run_id)
                stage, ctx = self._stage_of(run, header)
            except MegenError:
                continue  # the ordinary path answers it with its error
            key = fusion_key(run.executor, stage, ctx)
            if key is not None:
                found.append(Fusable(i, run.executor, stage, ctx, key))
                runs[id(run.executor)] = run
        answers: dict[int, bytes | MegenError] = {}
        groups = fuse_groups(found)
        with contextlib.ExitStack() as stack:
            for c in (c for g in groups for c in g):
                stack.enter_context(runs[id(c.executor)].lock)
            stack.enter_context(self._compute)
            for group in groups:
                try:
                    run_fused(self.model, group)
                except (MegenError, RuntimeError, ValueError):
                    for c in group:  # left to the ordinary path, which reports its own error
                        c.executor.precomputed.pop(c.stage, None)
                    continue
                if on_fused is not None:
                    on_fused(len(group))
                for c in group:
                    try:
                        answers[c.index] = self._stage_answer(c.executor, c.stage, c.ctx)
                    except MegenError as exc:
                        answers[c.index] = exc
        return answers

    def _item(self, run: _Run, text: Any) -> ItemRef:
        ref = wire.item_from_wire(text)
        if ref.tile is not None and not 0 <= ref.tile < 16:
            raise WireError(f"tile index of {ref} out of range")
        return ref

    def _put(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        ref = self._item(run, h.get("item"))
        value, meta = u.value(h.get("value")), u.meta(h.get("meta", {}))
        self._check_value(ref, value, meta)
        run.executor.put(ref, value, meta)
        return wire.encode({})

    def _get(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        ref = self._item(run, h.get("item"))
        pack = Packer()
        return pack.message({"value": pack.value(run.executor.get(ref))})

    def _run_stage(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        stage, ctx = self._stage_of(run, h)
        return self._stage_answer(run.executor, stage, ctx)

    def _stage_of(self, run: _Run, h: dict[str, Any]) -> tuple[Stage, RunContext]:
        """The stage and context of a ``run_stage`` header, checked against the run's node."""
        stage, ctx = wire.stage_from_wire(h.get("stage")), wire.ctx_from_wire(h.get("ctx"))
        if stage.node != run.node:
            raise WireError(f"stage {stage.describe()} is for {stage.node}; this run is {run.node}")
        missing = sorted(set(stage.parts()) - ctx.cfg.parts(run.node))
        if missing:
            raise WireError(
                f"stage {stage.describe()} needs model parts {missing} that {run.node} does not hold"
            )
        return stage, ctx

    @staticmethod
    def _stage_answer(ex: LocalExecutor, stage: Stage, ctx: RunContext) -> bytes:
        done = ex.run_stage(stage, ctx)
        return wire.encode({"name": done.name, "flops": int(done.flops), "entry": done.entry})

    def _tile(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        op, windows = wire.tile_from_wire(h.get("op")), wire.windows_from_wire(h.get("windows"))
        self._check_tiles(op.k, windows)
        run.executor.tile(op, windows)
        return wire.encode({})

    def _stitch(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        op, windows = wire.stitch_from_wire(h.get("op")), wire.windows_from_wire(h.get("windows"))
        self._check_tiles(op.k, windows)
        step = h.get("step")
        if not isinstance(step, int) or step < 0:
            raise WireError(f"stitch step must be a non-negative integer, got {step!r}")
        run.executor.stitch(op, windows, step)
        return wire.encode({})

    def _check_tiles(self, k: Any, windows: list[Any]) -> None:
        width = self.model.latent_shape[2]
        if not isinstance(k, int) or not 1 <= k <= len(windows) or any(w.win_hi > width for w in windows):
            raise WireError(f"{k} tiles do not fit {len(windows)} windows of a {width}-column latent")

    def _transmit(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        ref = self._item(run, h.get("item"))
        window = h.get("window")
        win = None if window is None else wire.windows_from_wire([window])[0]
        cols = _slice(h.get("cols"))
        out = run.executor.transmit(ref, window=win, cols=cols)
        pack = Packer()
        return pack.message({"out": wire.outgoing_to_wire(out, pack)})

    def _receive(self, run: _Run, h: dict[str, Any], u: Unpacker) -> bytes:
        ref = self._item(run, h.get("item"))
        out = wire.outgoing_from_wire(h.get("out"), u)
        mode, link, seed = h.get("mode"), h.get("link"), h.get("stream_seed")
        if mode not in ("analog", "digital"):
            raise WireError(f"mode must be 'analog' or 'digital', got {mode!r}")
        if link not in LINKS:
            raise WireError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise WireError(f"stream_seed must be an integer in [0, 2**64), got {seed!r}")
        into = _slice(h.get("into"))
        self._check_value(ref, out.value, out.meta)
        if into is not None:
            held = run.executor.get(ref)
            if not isinstance(held, torch.Tensor) or tuple(held[..., into].shape) != tuple(out.value.shape):
                raise WireError(
                    f"halo strip of shape {list(out.value.shape)} does not fit columns {into} of {ref}"
                )
        sent = run.executor.receive(ref, out, mode=mode, link=link, stream_seed=seed, into=into)
        return wire.encode({"sent": wire.sent_to_wire(sent)})

    def _check_value(self, ref: ItemRef, value: Any, meta: Any) -> None:
        """Item ``ref`` may hold ``value``: prompts are texts; tensors have the model's channels and height."""
        if ref.base == "prompt":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_BATCH:
                raise WireError(f"prompt must be a list of 1..{MAX_BATCH} texts")
            if any(len(p) > MAX_PROMPT_CHARS for p in value):
                raise WireError(f"a prompt is longer than {MAX_PROMPT_CHARS} characters")
            return
        if ref.base == "cond":
            raise WireError("text conditioning is computed on the node (stage T), it is not sent")
        if not isinstance(value, torch.Tensor):
            raise WireError(f"{ref} must be a tensor")
        m = self.model
        want = {"latent": m.latent_shape, "z_ref": m.latent_shape, "sketch": m.sketch_shape}.get(
            ref.base, m.image_shape
        )
        shape = tuple(value.shape)
        if (
            len(shape) != 4
            or not 1 <= shape[0] <= MAX_BATCH
            or shape[1:3] != tuple(want[:2])
            or not 1 <= shape[3] <= want[2]
        ):
            raise WireError(
                f"{ref} must have shape [B, {want[0]}, {want[1]}, <={want[2]}], got {list(shape)}"
            )
        if meta.noise_var is not None and tuple(meta.noise_var.shape) != (shape[0],):
            raise WireError(
                f"noise_var of {ref} must have shape [{shape[0]}], got {list(meta.noise_var.shape)}"
            )
        if meta.unbiased is not None and tuple(meta.unbiased.shape) != shape:
            raise WireError(f"unbiased of {ref} must have the value's shape {list(shape)}")


def _load(session: Any, cfg: ServiceConfig) -> StagedLDM:
    """The served model (``tiny-random``: the random-weight tiny model of seed 0, as sweeps build it)."""
    from megen.models.fingerprint import RANDOM_MODEL

    if cfg.model == RANDOM_MODEL:
        from megen.models.tiny import build_random_tiny

        model: StagedLDM = session.model(
            cfg.model, lambda _: build_random_tiny(seed=0), device=cfg.device, dtype=cfg.dtype
        )
        return model
    loaded: StagedLDM = session.model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    return loaded


def _slice(data: Any) -> slice | None:
    if data is None:
        return None
    if not isinstance(data, list) or len(data) != 2 or not all(isinstance(x, int) and x >= 0 for x in data):
        raise WireError(f"columns must be [start, stop] non-negative integers, got {data!r}")
    return slice(data[0], data[1])


__all__ = ["EdgeService", "ServiceConfig", "UnknownRun"]
