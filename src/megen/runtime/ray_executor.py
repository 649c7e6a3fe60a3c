"""Edge servers on Ray actors: each ES of a plan runs in its own process (or machine), the UE in the driver.

* :class:`NodeHost` is the actor: it loads the model once (by name, on the node's device) and holds a
  :class:`~megen.protocols.executors.LocalExecutor` per logical node it hosts (its own ES, and any lost
  ES whose work it took over, :mod:`megen.runtime.faults`).
* :class:`RayExecutor` is the engine-side proxy implementing
  :class:`~megen.protocols.executors.NodeExecutor`: every call is one actor method call; a dead actor
  raises :class:`~megen.runtime.errors.NodeUnavailable`. It is ``concurrent``: the stages of a
  parallel step are submitted to all ES actors at once (:mod:`megen.runtime.dispatch`).
* :class:`RayPool` keeps one actor per ES across runs (``num_cpus`` per actor, and ``num_gpus=1`` when
  the node's device is CUDA; the device itself comes from the run configuration) and starts a new
  actor when an old one died, so a lost ES is picked up again by the next run.
* :class:`RayEngine` is the plan engine with those placements; :func:`ray_backend` is what
  ``megen generate --backend ray [--ray-address ADDR]`` uses.

A transfer is still the transmitter on the source node and the channel plus receiver on the
destination, with the engine's named stream seed, so images, metrics and accounting equal the
in-process run bit for bit (CPU). Between two actors the value goes *directly*: the source's
transmitter leaves it in Ray's object store and the driver hands only its ``ObjectRef`` to the
destination actor, which Ray resolves there (:class:`RemoteOutgoing`); the driver fetches a value only
when the destination is in the driver (the UE). The model is loaded by name in each actor: a model object built in
memory (not loadable by name) cannot be placed on Ray.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, cast

import torch

from megen.errors import MegenError
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import LocalExecutor, NodeExecutor, Outgoing, RunContext, StageDone
from megen.protocols.items import ItemMeta
from megen.protocols.links import LinkSet, Sent
from megen.protocols.plan import ItemRef, Stage, Stitch, Tile
from megen.protocols.tiles import Window
from megen.runtime.errors import NodeUnavailable
from megen.runtime.faults import FaultTolerantEngine

#: Seconds one actor call may take before its node counts as lost.
CALL_TIMEOUT_S = 600.0


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray: an existing cluster at ``address``, or a new local Ray.

    Args:
        address: ``"HOST:PORT"`` of a running cluster (``ray start --head``), ``"auto"``, or ``None``
            for a local Ray started here (with ``num_cpus`` CPUs; ``None``: all).

    Returns:
        True when this call started or connected Ray (the caller then shuts it down), False when the
        process was already connected.

    Raises:
        MegenError: the cluster cannot be reached.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            num_cpus=num_cpus if address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            runtime_env={"env_vars": _worker_env()},
        )
    except Exception as exc:  # Ray raises bare Exception when its processes do not come up in time
        raise MegenError(f"cannot connect to Ray at {address or 'a new local instance'}: {exc}") from exc
    return True


def _worker_env() -> dict[str, str]:
    """Environment of Ray workers: this process's source path and offline switches."""
    keys = ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")
    return {k: os.environ[k] for k in keys if k in os.environ}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"`` (the configuration's spelling)."""
    return str(dtype).removeprefix("torch.")


class NodeHost:
    """The Ray actor of one edge server: one model, the executors of the logical nodes it hosts.

    Args:
        model_name: Model to load (a registry name such as ``"tiny"``, a folder, or ``"tiny-random"``).
        device: Where it runs (``"cpu"``, ``"cuda"`` ...; inside a GPU actor Ray shows one GPU, cuda:0).
        dtype: ``"float32"`` ...
        threads: torch CPU threads of this process.
    """

    def __init__(self, model_name: str, device: str, dtype: str, threads: int) -> None:
        from megen.experiments.sweep import load_sweep_model
        from megen.session import Session

        torch.set_num_threads(max(1, threads))
        self.session = Session()
        self.model = self.session.placed(load_sweep_model(model_name, device, self.session), device, dtype)
        self.executors: dict[str, LocalExecutor] = {}

    def host(self, node: str, parts: frozenset[str], links: LinkSet | None) -> str:
        """Start (or restart) logical ``node`` here with empty items; returns the process id."""
        memo = self.session.memo(self.model)
        self.executors[node] = LocalExecutor(node, self.model, parts, links, self.session.meter, memo)
        return str(os.getpid())

    def call(self, node: str, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """``executor(node).method(*args, **kwargs)``."""
        return getattr(self.executors[node], method)(*args, **kwargs)

    def transmit(self, node: str, item: ItemRef, kwargs: dict[str, Any]) -> tuple[bool, Outgoing]:
        """The transmitter of ``node`` (called with two returns: a small ack and the value's ref)."""
        return True, self.executors[node].transmit(item, **kwargs)

    def receive(self, node: str, item: ItemRef, out: Outgoing, kwargs: dict[str, Any]) -> Sent:
        """The receiver of ``node``; ``out`` arrives resolved from its ``ObjectRef`` (another actor's)."""
        return self.executors[node].receive(item, out, **kwargs)

    def pid(self) -> int:
        return os.getpid()


class RemoteOutgoing:
    """What a transmitter on an actor handed to the link, still in Ray's object store.

    Behaves as an :class:`~megen.protocols.executors.Outgoing` (``value``, ``meta``), fetched into
    this process on first access (a destination in the driver); a :class:`RayExecutor` destination
    passes :attr:`ref` to its actor instead, so the value moves actor to actor.

    Args:
        ref: The ``ObjectRef`` of the source actor's ``Outgoing``.
        node: The source node (named when fetching fails).
        timeout_s: Seconds a fetch may take.
    """

    def __init__(self, ref: Any, node: str, timeout_s: float) -> None:
        self.ref, self.node, self.timeout_s = ref, node, timeout_s
        self._out: Outgoing | None = None

    def resolve(self) -> Outgoing:
        """The value in this process (fetched once)."""
        if self._out is None:
            self._out = _get(self.ref, self.node, "transmit", self.timeout_s)
        return self._out

    @property
    def fetched(self) -> bool:
        """Whether the value was ever fetched into this process."""
        return self._out is not None

    @property
    def value(self) -> Any:
        return self.resolve().value

    @property
    def meta(self) -> ItemMeta:
        return self.resolve().meta


def _get(ref: Any, node: str, method: str, timeout_s: float) -> Any:
    """``ray.get(ref)`` with a node's failure mapped: its own error, or NodeUnavailable when lost."""
    import ray
    from ray import exceptions as rex

    try:
        return ray.get(ref, timeout=timeout_s)
    except rex.RayTaskError as exc:  # the call failed on the node: the node's own error
        cause = exc.cause if isinstance(exc.cause, Exception) else None
        raise (cause or MegenError(f"{node}: {method} failed: {exc}")) from None
    except (rex.RayActorError, rex.GetTimeoutError, rex.ObjectLostError) as exc:
        reason = type(exc).__name__ + (": timed out" if isinstance(exc, rex.GetTimeoutError) else "")
        raise NodeUnavailable(node, reason) from exc


class RayExecutor:
    """A node whose executor lives in a :class:`NodeHost` actor (implements ``NodeExecutor``).

    Args:
        handle: The actor.
        node: The logical node (``"ES2"``).
        timeout_s: Seconds one call may take before the node counts as lost.
    """

    concurrent = True

    def __init__(self, handle: Any, node: str, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.handle = handle
        self.node = node
        self.timeout_s = timeout_s
        #: Items received as a reference to another actor's value (never through the driver).
        self.direct = 0

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _get(
            self.handle.call.remote(self.node, method, args, kwargs), self.node, method, self.timeout_s
        )

    def put(self, item: ItemRef, value: Any, meta: ItemMeta = ItemMeta()) -> None:
        self._call("put", item, value, meta)

    def get(self, item: ItemRef) -> Any:
        return self._call("get", item)

    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone:
        done: StageDone = self._call("run_stage", op, ctx)
        return done

    def tile(self, op: Tile, windows: Sequence[Window]) -> None:
        self._call("tile", op, list(windows))

    def stitch(self, op: Stitch, windows: Sequence[Window], step: int) -> None:
        self._call("stitch", op, list(windows), step)

    def transmit(self, item: ItemRef, *, window: Window | None = None, cols: slice | None = None) -> Outgoing:
        """The transmitter on the actor; the value stays there (:class:`RemoteOutgoing`).

        Waits for a small acknowledgement, so a lost source is reported here, as this node's loss.
        """
        kwargs = {"window": window, "cols": cols}
        ack, ref = self.handle.transmit.options(num_returns=2).remote(self.node, item, kwargs)
        _get(ack, self.node, "transmit", self.timeout_s)
        return cast(Outgoing, RemoteOutgoing(ref, self.node, self.timeout_s))

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
        kwargs = {"mode": mode, "link": link, "stream_seed": stream_seed, "into": into}
        payload: Any = out
        if isinstance(out, RemoteOutgoing) and not out.fetched:
            payload = out.ref  # resolved by Ray inside this node's actor: actor to actor
            self.direct += 1
        sent: Sent = _get(
            self.handle.receive.remote(self.node, item, payload, kwargs), self.node, "receive", self.timeout_s
        )
        return sent


class RayPool:
    """One :class:`NodeHost` actor per edge server, kept across runs and restarted when it died.

    Args:
        num_cpus: CPUs Ray reserves per actor.
        threads: torch threads per actor (default: this process's).
        timeout_s: Seconds one call may take before its node counts as lost.
    """

    def __init__(
        self, *, num_cpus: float = 1.0, threads: int | None = None, timeout_s: float = CALL_TIMEOUT_S
    ):
        self.num_cpus = num_cpus
        self.threads = threads or torch.get_num_threads()
        self.timeout_s = timeout_s
        self.actors: dict[str, tuple[Any, tuple[str, str, str]]] = {}
        self.started = 0

    def _start(self, host: str, key: tuple[str, str, str]) -> Any:
        import ray

        name, device, dtype = key
        gpus = 1 if device.startswith("cuda") else 0
        actor_device = "cuda" if gpus else device  # Ray shows the actor its one GPU as cuda:0
        cls = ray.remote(NodeHost).options(num_cpus=self.num_cpus, num_gpus=gpus, max_restarts=0)
        handle = cls.remote(name, actor_device, dtype, self.threads)
        self.actors[host] = (handle, key)
        self.started += 1
        return handle

    def executor(
        self, host: str, node: str, key: tuple[str, str, str], parts: frozenset[str], links: LinkSet | None
    ) -> RayExecutor:
        """Logical ``node`` on the actor of ``host`` (started, or restarted if it died or holds another
        model/device ``key`` = ``(model name, device, dtype)``)."""
        import ray
        from ray import exceptions as rex

        held = self.actors.get(host)
        handle = held[0] if held is not None and held[1] == key else self._start(host, key)
        try:
            ray.get(handle.host.remote(node, parts, links), timeout=self.timeout_s)
        except (rex.RayActorError, rex.GetTimeoutError) as exc:
            if held is None or held[0] is not handle:
                raise NodeUnavailable(node, f"a new actor for {host} failed: {type(exc).__name__}") from exc
            handle = self._start(host, key)  # the old actor died: a new one picks the ES up again
            ray.get(handle.host.remote(node, parts, links), timeout=self.timeout_s)
        return RayExecutor(handle, node, self.timeout_s)

    def handle(self, host: str) -> Any:
        """The actor of ``host`` (tests kill it with ``ray.kill``)."""
        return self.actors[host][0]

    def shutdown(self) -> None:
        """Kill every actor of the pool."""
        import ray

        for handle, _ in self.actors.values():
            ray.kill(handle, no_restart=True)
        self.actors.clear()


class RayEngine(FaultTolerantEngine):
    """The plan engine with every edge server on its own Ray actor and the UE in this process.

    Takes :class:`~megen.protocols.engine.Engine`'s arguments plus ``pool``. A lost ES actor hands
    its work to a live ES actor (the journal is replayed there); with none left, a new actor starts.
    """

    def __init__(self, *args: Any, pool: RayPool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool

    def _key(self, node: str) -> tuple[str, str, str]:
        model = self.model_of(node)
        return (model.name, str(model.device), dtype_name(model.dtype))

    def place(self, node: str, cfg: EngineConfig) -> NodeExecutor:
        if node == "UE":
            return super().place(node, cfg)
        return self.pool.executor(node, node, self._key(node), cfg.parts(node), self.links)

    def replacement(
        self, node: str, failed: str, live: Sequence[str], cfg: EngineConfig
    ) -> tuple[NodeExecutor, str]:
        for host in live:
            try:
                return self.pool.executor(host, node, self._key(node), cfg.parts(node), self.links), host
            except NodeUnavailable:
                continue
        return self.pool.executor(
            failed, node, self._key(node), cfg.parts(node), self.links
        ), f"{failed} (new actor)"


@contextmanager
def ray_backend(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """An engine factory placing edge servers on Ray actors, for ``run_protocol(engine_factory=...)``.

    Connects to ``address`` (or starts a local Ray), yields the factory, then kills the actors (and
    shuts Ray down if this call started it).
    """
    import ray

    started = connect(address, num_cpus=num_cpus)
    pool = RayPool()
    try:
        yield partial(RayEngine, pool=pool)
    finally:
        pool.shutdown()
        if started:
            ray.shutdown()


__all__ = [
    "NodeHost",
    "RayEngine",
    "RayExecutor",
    "RayPool",
    "RemoteOutgoing",
    "connect",
    "dtype_name",
    "ray_backend",
]
