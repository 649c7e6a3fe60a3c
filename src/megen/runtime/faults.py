"""Surviving a lost edge server: journal every node's inputs, replay them elsewhere, record the fault.

The engine drives nodes through :class:`~megen.protocols.executors.NodeExecutor`; a remote executor
raises :class:`~megen.runtime.errors.NodeUnavailable` when its node is lost (actor dead, server
down). :class:`FaultTolerantEngine` wraps every edge server's executor in a :class:`ResilientExecutor`
that keeps a *journal*: every call that changed the node's state (items put or received with their
random stream, stages, tiling, stitching). When a call raises ``NodeUnavailable``, the wrapper asks the
engine for a replacement executor for the *same logical node* hosted on a live edge server
(:meth:`FaultTolerantEngine.replacement`), replays the journal into it, and retries the call.

Why results do not change: every random draw is named by logical node and item
(:mod:`megen.rng`: ``("transfer", src, dst, item, n)``, ``("stage", "Z")`` ...), never by where it
runs, and the replay feeds the replacement the very values the lost node received (the engine holds
them: they crossed the driver) with the same stream seeds. The replacement therefore reaches the lost
node's state bit for bit and the run ends as a fault-free run would. For a parallel protocol (DIUG,
DSUC, UIDG) a live ES takes over the lost ES's tile; for a cooperative one (UIDCG, DCSUC) it reruns
the lost ES's step range. The ledger (latency, energy, channel uses) stays the plan's: the replay is
recovery work, reported in :attr:`Fault.replayed` and the fault's wall-clock time, not in the model.

Only edge servers fail over; the UE is the client that runs the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from megen.errors import MegenError
from megen.protocols.engine import Engine, EngineConfig, EngineOutput
from megen.protocols.executors import NodeExecutor, Outgoing, RunContext, StageDone
from megen.protocols.items import ItemMeta
from megen.protocols.links import Sent
from megen.protocols.plan import ItemRef, Plan, Stage, Stitch, Tile
from megen.protocols.tiles import Window
from megen.runtime.errors import NodeUnavailable

#: Most failovers of one node in one run (a replacement may die too).
MAX_FAILOVERS = 3


@dataclass(frozen=True)
class Fault:
    """One lost node, as recorded in a run's ``faults``.

    Attributes:
        node: The logical node that was lost (``"ES2"``).
        op: The call that found it lost (``"run_stage D[3:4](es)@1"``, ``"transmit latent@1"``).
        time_s: Wall-clock seconds since the run started when the loss was detected.
        moved_to: Where the node's work went (a live node's name, or a new host such as ``"ES2*"``).
        replayed: Journal entries replayed on the replacement before the call was retried.
        reason: What the executor reported.
        recovery_s: Wall-clock seconds the failover took (replacement and replay).
    """

    node: str
    op: str
    time_s: float
    moved_to: str
    replayed: int
    reason: str
    recovery_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: A failover hook: ``(lost node, its failed host) -> (replacement executor, where it runs)``.
Failover = Callable[[str, str], tuple[NodeExecutor, str]]


class ResilientExecutor:
    """A node's executor that journals its inputs and moves to a replacement when its node is lost.

    Args:
        inner: The executor now running the node.
        where: Name of what hosts it (the node itself at first).
        failover: Called with ``(node, where)`` on a loss; returns the replacement and its host.
        record: Called with every :class:`Fault`.
        clock: Seconds since the run started.
        retries: Times a call is retried on the same executor before failing over (a restarted
            server is picked up again), after ``backoff_s``, doubling each time.
        backoff_s: First wait before a retry, seconds.
    """

    def __init__(
        self,
        inner: NodeExecutor,
        where: str,
        failover: Failover,
        record: Callable[[Fault], None],
        clock: Callable[[], float],
        *,
        retries: int = 0,
        backoff_s: float = 0.5,
    ) -> None:
        self.node = inner.node
        self.inner = inner
        self.where = where
        self.failover = failover
        self.record = record
        self.clock = clock
        self.journal: list[tuple[str, tuple, dict[str, Any]]] = []
        self.failovers = 0
        self.retries, self.backoff_s = retries, backoff_s
        #: Remote executors block on their node: the engine may run several of them concurrently.
        self.concurrent = bool(getattr(inner, "concurrent", False))

    def _call(self, name: str, args: tuple, kwargs: dict[str, Any], *, journal: bool, what: str) -> Any:
        """``inner.name(*args, **kwargs)``, failing over (and retrying) while the node is lost."""
        attempt = 0
        while True:
            try:
                out = getattr(self.inner, name)(*args, **kwargs)
            except NodeUnavailable as exc:
                if attempt < self.retries:  # the same node may come back (a restarted server)
                    time.sleep(self.backoff_s * 2**attempt)
                    attempt += 1
                    continue
                lost: NodeUnavailable | None = exc
                while lost is not None:  # the replacement may be lost too, even during the replay
                    try:
                        self._recover(what, lost)
                        lost = None
                    except NodeUnavailable as again:
                        lost = again
                attempt = 0
                continue
            if journal:
                self.journal.append((name, args, kwargs))
            return out

    def _recover(self, what: str, exc: NodeUnavailable) -> None:
        """Replace the lost executor by a live one holding the same state (journal replayed)."""
        self.failovers += 1
        if self.failovers > MAX_FAILOVERS:
            raise MegenError(f"node {self.node} lost {self.failovers} times; giving up ({exc.reason})")
        t0 = time.perf_counter()
        detected = self.clock()
        inner, where = self.failover(self.node, self.where)
        for name, args, kwargs in self.journal:
            getattr(inner, name)(*args, **kwargs)  # a loss here propagates: _call recovers again
        self.inner, self.where = inner, where
        self.concurrent = bool(getattr(inner, "concurrent", False))
        self.record(
            Fault(self.node, what, round(detected, 6), where, len(self.journal), exc.reason,
                  round(time.perf_counter() - t0, 6))
        )  # fmt: skip

    # ------------------------------------------------------------------ NodeExecutor
    def put(self, item: ItemRef, value: Any, meta: ItemMeta = ItemMeta()) -> None:
        self._call("put", (item, value, meta), {}, journal=True, what=f"put {item}")

    def get(self, item: ItemRef) -> Any:
        return self._call("get", (item,), {}, journal=False, what=f"get {item}")

    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone:
        done: StageDone = self._call(
            "run_stage", (op, ctx), {}, journal=True, what=f"run_stage {op.describe()}"
        )
        return done

    def tile(self, op: Tile, windows: Sequence[Window]) -> None:
        self._call("tile", (op, list(windows)), {}, journal=True, what=op.describe())

    def stitch(self, op: Stitch, windows: Sequence[Window], step: int) -> None:
        self._call("stitch", (op, list(windows), step), {}, journal=True, what=op.describe())

    def transmit(self, item: ItemRef, *, window: Window | None = None, cols: slice | None = None) -> Outgoing:
        out: Outgoing = self._call(
            "transmit", (item,), {"window": window, "cols": cols}, journal=False, what=f"transmit {item}"
        )
        return out

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
        sent: Sent = self._call("receive", (item, out), kwargs, journal=True, what=f"receive {item}")
        return sent


class FaultTolerantEngine(Engine):
    """An engine whose edge servers survive being lost mid-run (see the module docstring).

    Subclasses place nodes with :meth:`place` (default: in process) and say where a lost node's work
    goes with :meth:`replacement`. The run's output lists the faults (``EngineOutput.faults``).

    Attributes:
        retries: Retries of a failed call on the same node before failing over (0: fail over at once,
            right for Ray actors, which do not come back; an HTTP engine may retry a restarting server).
        backoff_s: First wait between retries, seconds (doubling).
    """

    retries: int = 0
    backoff_s: float = 0.5

    def place(self, node: str, cfg: EngineConfig) -> NodeExecutor:
        """The executor that runs ``node`` at first (override; default: in process)."""
        return super().executor(node, cfg)

    def replacement(
        self, node: str, failed: str, live: Sequence[str], cfg: EngineConfig
    ) -> tuple[NodeExecutor, str]:
        """A fresh executor for logical ``node`` on a live host, and the host's name.

        Args:
            node: The lost logical node.
            failed: The host that was lost.
            live: Hosts of this run's edge servers not known to be lost, in plan order.
            cfg: The run's settings.

        The default hosts it in this process, named after the first live edge server.
        """
        where = live[0] if live else f"{node}*"
        return super().executor(node, cfg), where

    def executor(self, node: str, cfg: EngineConfig) -> NodeExecutor:
        inner = self.place(node, cfg)
        if node == "UE":
            return inner
        failover: Failover = lambda n, w: self._failover(n, w, cfg)  # noqa: E731
        ex = ResilientExecutor(
            inner, node, failover, self._record, self._clock, retries=self.retries, backoff_s=self.backoff_s
        )
        self._resilient.append(ex)
        return ex

    def run(
        self, plan: Plan, prompts: Sequence[str], cfg: EngineConfig, reference: Any = None
    ) -> EngineOutput:
        self._faults: list[Fault] = []
        self._resilient: list[ResilientExecutor] = []
        self._lost: set[str] = set()
        self._lock = threading.RLock()
        self._t0 = time.perf_counter()
        out = super().run(plan, prompts, cfg, reference)
        out.faults = [f.as_dict() for f in self._faults]
        return out

    def run_stages(self, nodes: Any, ops: Sequence[Stage], ctx: RunContext) -> list[StageDone]:
        from megen.runtime.dispatch import run_stages_concurrently

        return run_stages_concurrently(nodes, ops, ctx)

    def _clock(self) -> float:
        return time.perf_counter() - self._t0

    def _record(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _failover(self, node: str, failed: str, cfg: EngineConfig) -> tuple[NodeExecutor, str]:
        with self._lock:
            self._lost.add(failed)
            live = [ex.where for ex in self._resilient if ex.where not in self._lost]
            live = list(dict.fromkeys(live))
            return self.replacement(node, failed, live, cfg)


__all__ = ["MAX_FAILOVERS", "Fault", "FaultTolerantEngine", "ResilientExecutor"]
