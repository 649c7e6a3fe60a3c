"""The UE side of remote edge servers: an HTTP node executor and an engine that places ES nodes on URLs.

:class:`HttpExecutor` implements :class:`~megen.protocols.executors.NodeExecutor` against one
``megen serve`` server: it opens a run there for its node (``POST /v1/runs`` with the link
configuration), and each call is one ``POST /v1/runs/{run}/{call}`` with a wire message
(:mod:`megen.runtime.wire`). The token travels as ``Authorization: Bearer ...``. A transport failure
(refused, reset, timed out) or a lost run (the server restarted) raises
:class:`~megen.runtime.errors.NodeUnavailable`; a 503 is retried after its ``Retry-After`` a few
times; any other refusal is a :class:`~megen.errors.MegenError` carrying the server's message.

:class:`RemoteEngine` is a :class:`~megen.runtime.faults.FaultTolerantEngine` whose ES nodes run on
the given servers (``es_urls[i]`` serves ``ES<i+1>``) while the UE runs in-process, and which measures
the wall-clock time of every node and transfer (:class:`WallClock`). A call that fails in transport
(refused, reset, timed out, or the server restarted without the run) re-opens the node on a server
that answers (its own first, then a live one) and replays the journal of what the node received and
ran there (see :mod:`megen.runtime.faults`); the run's ``faults`` record it. Every run opens its runs afresh on the servers it was given, so a restarted server is used again
from the next run on; one that is down when a run starts is failed over at its first call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from megen.config import LinksSection
from megen.errors import MegenError
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import NodeExecutor, Outgoing, RunContext, StageDone
from megen.protocols.items import ItemMeta
from megen.protocols.links import Sent
from megen.protocols.plan import ItemRef, Stage, Stitch, Tile
from megen.protocols.tiles import Window
from megen.runtime import wire
from megen.runtime.errors import NodeUnavailable
from megen.runtime.faults import FaultTolerantEngine
from megen.runtime.wire import Packer, Unpacker

#: How often a 503 (server busy) is retried before giving up.
BUSY_RETRIES = 20
#: Seconds an idle connection is kept for reuse: below uvicorn's 5 s keep-alive timeout, so the client
#: never sends a request on a connection the server is closing (an httpx ReadError under load).
KEEPALIVE_S = 2.0


class HttpExecutor:
    """A node on a remote edge server (see the module docstring).

    Args:
        node: The node (``"ES1"`` ...).
        url: Base URL of the server, e.g. ``http://10.0.0.5:8000``.
        links: The run's link configuration (the server runs this node's receivers with it).
        token: Bearer token, or ``None`` for a server without one.
        timeout_s: Per-request timeout in seconds.
        client: An ``httpx.Client`` to use (tests pass one bound to an in-process app); ``None``: own.
    """

    #: Calls block on the remote server: the engine may run several nodes' stages at once.
    concurrent = True

    def __init__(
        self,
        node: str,
        url: str,
        links: LinksSection,
        token: str | None = None,
        *,
        timeout_s: float = 300.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.node = node
        self.url = url.rstrip("/")
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._own = client is None
        self.client = client or httpx.Client(
            timeout=timeout_s, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S)
        )
        self.client.headers.update(headers)
        answer = self._request(
            "POST", "/v1/runs", json={"node": node, "links": links.model_dump(mode="json")}
        )
        self.run_id: str = answer.json()["run"]

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        for _ in range(BUSY_RETRIES):
            try:
                r = self.client.request(method, self.url + path, **kw)
            except httpx.TransportError as exc:  # refused, reset, timed out, DNS ...
                raise NodeUnavailable(self.node, f"{self.url}: {type(exc).__name__}: {exc}") from None
            if r.status_code != 503:
                break
            time.sleep(min(5.0, float(r.headers.get("retry-after", "1") or 1)))
        if r.status_code == 200:
            return r
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        if r.status_code == 404 and path.startswith("/v1/runs/"):
            raise NodeUnavailable(self.node, f"{self.url} lost the run ({message}); was it restarted?")
        if r.status_code in (502, 503, 504):
            raise NodeUnavailable(self.node, f"{self.url} answered {r.status_code}: {message}")
        raise MegenError(f"{self.node} at {self.url} answered {r.status_code}: {message}")

    def _call(
        self, name: str, header: dict[str, Any], pack: Packer | None = None
    ) -> tuple[dict[str, Any], Unpacker]:
        body = (pack or Packer()).message(header)
        r = self._request(
            "POST", f"/v1/runs/{self.run_id}/{name}", content=body, headers={"Content-Type": wire.OCTET}
        )
        head, tensors = wire.decode(r.content, max_bytes=2**40)
        return head, Unpacker(tensors)

    def close(self) -> None:
        """Close the run on the server (best effort) and the client if this executor made it."""
        with contextlib.suppress(httpx.TransportError):
            self.client.request("DELETE", f"{self.url}/v1/runs/{self.run_id}")
        if self._own:
            self.client.close()

    # ------------------------------------------------------------------ NodeExecutor
    def put(self, item: ItemRef, value: Any, meta: ItemMeta = ItemMeta()) -> None:
        pack = Packer()
        self._call("put", {"item": str(item), "value": pack.value(value), "meta": pack.meta(meta)}, pack)

    def get(self, item: ItemRef) -> Any:
        head, u = self._call("get", {"item": str(item)})
        return u.value(head.get("value"))

    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone:
        head, _ = self._call("run_stage", {"stage": wire.op_to_wire(op), "ctx": wire.ctx_to_wire(ctx)})
        entry = head.get("entry")
        return StageDone(
            head["name"], int(head["flops"]), None if entry is None else (int(entry[0]), int(entry[1]))
        )

    def tile(self, op: Tile, windows: Sequence[Window]) -> None:
        self._call("tile", {"op": wire.op_to_wire(op), "windows": wire.windows_to_wire(windows)})

    def stitch(self, op: Stitch, windows: Sequence[Window], step: int) -> None:
        self._call(
            "stitch", {"op": wire.op_to_wire(op), "windows": wire.windows_to_wire(windows), "step": step}
        )

    def transmit(self, item: ItemRef, *, window: Window | None = None, cols: slice | None = None) -> Outgoing:
        header = {
            "item": str(item),
            "window": None if window is None else wire.windows_to_wire([window])[0],
            "cols": None if cols is None else [cols.start, cols.stop],
        }
        head, u = self._call("transmit", header)
        return wire.outgoing_from_wire(head.get("out"), u)

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
        pack = Packer()
        header = {
            "item": str(item),
            "out": wire.outgoing_to_wire(out, pack),
            "mode": mode,
            "link": link,
            "stream_seed": stream_seed,
            "into": None if into is None else [into.start, into.stop],
        }
        head, _ = self._call("receive", header, pack)
        return wire.sent_from_wire(head.get("sent"))


@dataclass
class WallClock:
    """Measured wall-clock seconds of a run: per node (all its calls) and per transfer.

    A transfer's time is its transmitter's call on the source node plus its receiver's call on the
    destination node, transport included.
    """

    total_s: float = 0.0
    nodes: dict[str, float] = field(default_factory=dict)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    _pending: dict[str, tuple[str, float]] = field(default_factory=dict)

    def add(self, node: str, seconds: float) -> None:
        self.nodes[node] = self.nodes.get(node, 0.0) + seconds

    def summary(self) -> dict[str, Any]:
        """``{"total_s", "nodes": {node: s}, "transfers": [{"item", "src", "dst", "wall_s"}]}`` (seconds)."""
        return {
            "total_s": round(self.total_s, 6),
            "nodes": {k: round(v, 6) for k, v in self.nodes.items()},
            "transfers": list(self.transfers),
        }


class TimedExecutor:
    """Wraps any executor and books the wall-clock time of its calls in a :class:`WallClock`."""

    def __init__(self, inner: NodeExecutor, clock: WallClock) -> None:
        self.inner, self.clock, self.node = inner, clock, inner.node
        self.concurrent = bool(getattr(inner, "concurrent", False))

    def _timed(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        result = fn(*args, **kw)
        dt = time.perf_counter() - t0
        self.clock.add(self.node, dt)
        return result, dt

    def put(self, item: ItemRef, value: Any, meta: ItemMeta = ItemMeta()) -> None:
        self._timed(self.inner.put, item, value, meta)

    def get(self, item: ItemRef) -> Any:
        return self._timed(self.inner.get, item)[0]

    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone:
        done: StageDone = self._timed(self.inner.run_stage, op, ctx)[0]
        return done

    def tile(self, op: Tile, windows: Sequence[Window]) -> None:
        self._timed(self.inner.tile, op, windows)

    def stitch(self, op: Stitch, windows: Sequence[Window], step: int) -> None:
        self._timed(self.inner.stitch, op, windows, step)

    def transmit(self, item: ItemRef, *, window: Window | None = None, cols: slice | None = None) -> Outgoing:
        out, dt = self._timed(self.inner.transmit, item, window=window, cols=cols)
        self.clock._pending[str(item)] = (self.node, dt)
        result: Outgoing = out
        return result

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
        sent, dt = self._timed(
            self.inner.receive, item, out, mode=mode, link=link, stream_seed=stream_seed, into=into
        )
        src, tx = self.clock._pending.pop(str(item), ("?", 0.0))
        label = str(item) if into is None else f"halo:{item}"
        self.clock.transfers.append(
            {"item": label, "src": src, "dst": self.node, "wall_s": round(tx + dt, 6)}
        )
        result: Sent = sent
        return result

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


class Unreachable:
    """Stands for a node whose server could not be reached when the run started: every call raises
    :class:`~megen.runtime.errors.NodeUnavailable`, so the fault handling moves the node at once."""

    concurrent = True

    def __init__(self, lost: NodeUnavailable) -> None:
        self.node, self.lost = lost.node, lost

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise NodeUnavailable(self.lost.node, self.lost.reason)

        return fail


class RemoteEngine(FaultTolerantEngine):
    """An engine whose ES nodes run on ``megen serve`` servers (``es_urls[i]`` serves ``ES<i+1>``).

    Args:
        *args: As :class:`~megen.protocols.engine.Engine`.
        es_urls: Server base URLs, in node order.
        links_section: The run's link configuration (sent to each server).
        token: Bearer token of the servers (one for all), or ``None``.
        timeout_s: Per-request timeout in seconds.
        client: A shared ``httpx.Client`` (tests); ``None``: one per executor.
        retries: Times a failed call is resent as it is to its own server (after ``backoff_s``
            seconds, doubling) before the node fails over. Default 0: a call whose answer was lost
            may have run (a stage run twice is wrong), so a lost node is always re-opened with its
            journal replayed, on its own server first if that answers, else on a live one.
        backoff_s: First wait before such a retry, seconds.
        **kwargs: As :class:`~megen.protocols.engine.Engine`.

    After :meth:`run`, :attr:`wall` holds the measured wall-clock times of that run and the output's
    ``faults`` the servers lost during it (``moved_to`` names the node whose server took the work).
    """

    def __init__(
        self,
        *args: Any,
        es_urls: Sequence[str],
        links_section: LinksSection,
        token: str | None = None,
        timeout_s: float = 300.0,
        client: httpx.Client | None = None,
        retries: int = 0,
        backoff_s: float = 0.25,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 1 <= len(es_urls) <= 4:
            raise MegenError(f"give 1..4 edge server URLs (--es), got {len(es_urls)}")
        for u in es_urls:
            if not u.startswith(("http://", "https://")):
                raise MegenError(f"edge server URL must start with http:// or https://, got {u!r}")
        self.es_urls = {f"ES{i + 1}": u for i, u in enumerate(es_urls)}
        self.links_section, self.token, self.timeout_s, self.client = links_section, token, timeout_s, client
        self.retries, self.backoff_s = retries, backoff_s
        self.wall = WallClock()
        self._open: list[TimedExecutor] = []

    def _timed(self, inner: NodeExecutor) -> TimedExecutor:
        ex = TimedExecutor(inner, self.wall)
        self._open.append(ex)
        return ex

    def _http(self, node: str, host: str) -> TimedExecutor:
        """Logical ``node`` opened on the server of ``host`` (an ES name); NodeUnavailable if down."""
        inner = HttpExecutor(
            node,
            self.es_urls[host],
            self.links_section,
            self.token,
            timeout_s=self.timeout_s,
            client=self.client,
        )
        return self._timed(inner)

    def place(self, node: str, cfg: EngineConfig) -> NodeExecutor:
        """The UE (timed) in-process; an ES on its server (or :class:`Unreachable` while it is down)."""
        if node == "UE":
            return self._timed(super().place(node, cfg))
        if node not in self.es_urls:
            raise MegenError(
                f"the plan uses {node} but only {len(self.es_urls)} edge server URL(s) were given"
            )
        try:
            return self._http(node, node)
        except NodeUnavailable as lost:
            return cast(NodeExecutor, Unreachable(lost))

    def replacement(
        self, node: str, failed: str, live: Sequence[str], cfg: EngineConfig
    ) -> tuple[NodeExecutor, str]:
        """``node`` re-opened on its own server if that answers (a glitch, a restart), else on the
        first live server that answers; the journal is then replayed there."""
        reasons = []
        for host in dict.fromkeys([failed, *live]):
            try:
                return self._http(node, host), host
            except NodeUnavailable as exc:
                reasons.append(exc.reason)
        raise NodeUnavailable(node, "no edge server left: " + "; ".join(reasons))

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`FaultTolerantEngine.run`, timing every node and transfer; remote runs closed after."""
        self.wall = WallClock()
        t0 = time.perf_counter()
        try:
            return super().run(*args, **kwargs)
        finally:
            self.wall.total_s = time.perf_counter() - t0
            for ex in self._open:
                ex.close()
            self._open = []


class RemotePlacement:
    """Builds :class:`RemoteEngine` s for ``run_protocol(engine_factory=...)`` and keeps the last one.

    On first use it asks every server's ``GET /info`` and refuses servers whose model differs from
    ``model`` (by fingerprint, :func:`~megen.models.fingerprint.model_fingerprint`).

    Args:
        es_urls: Server base URLs (``es_urls[i]`` serves ``ES<i+1>``).
        links_section: The run's link configuration.
        model: The client's model name (``tiny`` ...).
        token: Bearer token, or ``None``.
        timeout_s: Per-request timeout in seconds.
    """

    def __init__(
        self,
        es_urls: Sequence[str],
        links_section: LinksSection,
        model: str,
        token: str | None,
        timeout_s: float = 300.0,
    ) -> None:
        self.es_urls, self.links_section, self.model = list(es_urls), links_section, model
        self.token, self.timeout_s = token, timeout_s
        self.engine: RemoteEngine | None = None
        self._checked = False

    def check_servers(self) -> None:
        """Every reachable server answers ``/info`` with the client's model (else MegenError).

        Unreachable servers are let through while at least one answers (their nodes fail over at
        their first call, and a server that comes back is used again by later runs); with none
        reachable, :class:`~megen.runtime.errors.NodeUnavailable`.
        """
        from megen.models.fingerprint import model_fingerprint

        want = model_fingerprint(self.model)
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        down: list[NodeUnavailable] = []
        for i, url in enumerate(self.es_urls):
            node = f"ES{i + 1}"
            try:
                r = httpx.get(url.rstrip("/") + "/info", headers=headers, timeout=self.timeout_s)
            except httpx.TransportError as exc:
                down.append(NodeUnavailable(node, f"{url}: {type(exc).__name__}: {exc}"))
                continue
            if r.status_code != 200:
                raise MegenError(f"{node} at {url} answered {r.status_code} to /info: {r.text[:200]}")
            info = r.json()
            if info.get("fingerprint") != want:
                raise MegenError(
                    f"{node} at {url} serves model {info.get('model')!r}, not {self.model!r} (fingerprints differ)"
                )
        if len(down) == len(self.es_urls):
            raise down[0]
        self._checked = True

    def __call__(self, *args: Any, **kwargs: Any) -> RemoteEngine:
        if not self._checked:
            self.check_servers()
        self.engine = RemoteEngine(
            *args,
            es_urls=self.es_urls,
            links_section=self.links_section,
            token=self.token,
            timeout_s=self.timeout_s,
            **kwargs,
        )
        return self.engine


__all__ = ["HttpExecutor", "RemoteEngine", "RemotePlacement", "TimedExecutor", "Unreachable", "WallClock"]
