"""``megen serve``: one edge server as an HTTP service (FastAPI; served by uvicorn or Ray Serve).

Endpoints (OpenAPI at ``/openapi.json``):

* ``GET /health`` — liveness, no token.
* ``GET /info`` — model, fingerprint, device, dtype, megen version, limits.
* ``GET /metrics`` — Prometheus text (:mod:`megen.runtime.metrics`).
* ``POST /v1/runs`` — open a run for one ES node: JSON ``{"node": "ES1", "links": {...}}`` ->
  ``{"run": id}``; ``DELETE /v1/runs/{run}`` closes it.
* ``POST /v1/runs/{run}/{call}`` with ``call`` one of ``put get run_stage tile stitch transmit
  receive``: one executor call; body and answer are wire messages (:mod:`megen.runtime.wire`).

Security and robustness: every endpoint but ``/health`` and ``/openapi.json`` needs
``Authorization: Bearer <token>`` when the server has a token (compared in constant time); the CLI
refuses a non-loopback host without one. Bodies over ``max_bytes`` answer 413, malformed messages 400
with a one-line ``{"error": ...}``; an unknown run 404. At most ``max_queue`` requests are admitted at
once (the rest answer 503 with ``Retry-After``); a call that takes longer than ``timeout_s`` answers
504 and its run is dropped (the computation cannot be interrupted, its result would be stale).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from megen.errors import MegenError
from megen.runtime.metrics import Metrics
from megen.runtime.service import EdgeService, ServiceConfig, UnknownRun
from megen.runtime.wire import OCTET, WireError

_WIRE_BODY = {
    "requestBody": {"required": True, "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}}}
}
_WIRE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}},
        "description": "A wire message.",
    }
}


@dataclass(frozen=True)
class ServerConfig:
    """HTTP settings of an edge server (the model settings are a :class:`ServiceConfig`).

    Attributes:
        token: Bearer token clients must send; ``None``: no authentication (loopback only).
        max_queue: Most requests admitted at once (running or waiting); more answer 503.
        timeout_s: Per-request limit in seconds on the executor call (504 beyond).
        retry_after_s: The ``Retry-After`` of a 503, in whole seconds.
    """

    token: str | None = None
    max_queue: int = 64
    timeout_s: float = 300.0
    retry_after_s: int = 1


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _Gate:
    """Authentication, admission (bounded queue), timeout, metrics and error mapping of /v1 calls."""

    def __init__(self, service: EdgeService, cfg: ServerConfig, metrics: Metrics) -> None:
        self.service, self.cfg, self.metrics = service, cfg, metrics
        self.limiter = anyio.CapacityLimiter(1)

    def authorized(self, request: Request) -> bool:
        if self.cfg.token is None:
            return True
        given = request.headers.get("authorization", "")
        expected = f"Bearer {self.cfg.token}"
        return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))

    async def read(self, request: Request) -> bytes:
        """The body, refused (413) as soon as it exceeds the limit."""
        limit = self.service.cfg.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise WireError(f"body of {declared} bytes exceeds the limit of {limit} bytes", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WireError(f"body exceeds the limit of {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(
        self,
        request: Request,
        endpoint: str,
        work: Callable[[], Awaitable[Response]],
        run_id: str | None = None,
    ) -> Response:
        """Run ``work`` under the gate; every outcome is an HTTP answer, the server keeps serving."""
        t0 = time.perf_counter()
        if not self.authorized(request):
            resp: Response = _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        elif self.metrics.queue_depth >= self.cfg.max_queue:
            resp = _error(
                503,
                f"server busy ({self.cfg.max_queue} requests queued)",
                {"Retry-After": str(self.cfg.retry_after_s)},
            )
        else:
            self.metrics.queue_depth += 1
            try:
                with anyio.fail_after(self.cfg.timeout_s):
                    resp = await work()
            except TimeoutError:
                if run_id is not None:
                    self.service.close_run(run_id)
                resp = _error(504, f"call took longer than {self.cfg.timeout_s:g} s; run dropped")
            except UnknownRun as exc:
                resp = _error(404, str(exc))
            except WireError as exc:
                resp = _error(
                    exc.status,
                    str(exc),
                    {"Retry-After": str(self.cfg.retry_after_s)} if exc.status == 503 else None,
                )
            except MegenError as exc:
                resp = _error(400, str(exc))
            except Exception as exc:  # a bug must not take the server down; the client sees one line
                resp = _error(500, f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self.metrics.queue_depth -= 1
                self.metrics.runs_active = len(self.service.runs)
        self.metrics.request(endpoint, resp.status_code, time.perf_counter() - t0)
        return resp

    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on a worker thread (one at a time), abandoned (not awaited) on timeout."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter, abandon_on_cancel=True)


def create_app(
    service_cfg: ServiceConfig | None = None,
    cfg: ServerConfig | None = None,
    *,
    service: EdgeService | None = None,
    runner: Callable[[str, str, bytes], Awaitable[bytes]] | None = None,
) -> FastAPI:
    """The FastAPI application of one edge server.

    Args:
        service_cfg: Model and run settings (ignored when ``service`` is given).
        cfg: HTTP settings (token, queue, timeout).
        service: An existing :class:`EdgeService` (tests share one loaded model).
        runner: Executes one call ``(run, call, body) -> answer`` (Ray Serve passes a batching one);
            ``None``: :meth:`EdgeService.call` on a worker thread, one call per batch.

    Returns:
        The app; serve it with uvicorn (``megen serve``) or Ray Serve (:mod:`megen.runtime.ray_serve`).
    """
    import megen

    cfg = cfg or ServerConfig()
    service = service or EdgeService(service_cfg or ServiceConfig())
    metrics = Metrics()
    gate = _Gate(service, cfg, metrics)
    app = FastAPI(title="megen edge server", version=megen.__version__, docs_url=None, redoc_url=None)
    app.state.service, app.state.metrics, app.state.gate = service, metrics, gate

    async def one_call(run: str, call: str, body: bytes) -> bytes:
        metrics.batch_size(1)
        answer: bytes = await gate.in_thread(lambda: service.call(run, call, body))
        return answer

    _status_routes(app, service, gate, metrics)
    _run_routes(app, service, gate, runner or one_call)
    return app


def _status_routes(app: FastAPI, service: EdgeService, gate: _Gate, metrics: Metrics) -> None:
    """``/health``, ``/info``, ``/metrics``."""

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness (no token)."""
        return {"status": "ok"}

    @app.get("/info")
    async def info(request: Request) -> Response:
        """Model, fingerprint, device, dtype, version, limits."""

        async def work() -> Response:
            return JSONResponse(service.info())

        return await gate.handle(request, "info", work)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text(request: Request) -> Response:
        """Prometheus text format."""

        async def work() -> Response:
            return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

        return await gate.handle(request, "metrics", work)


def _run_routes(
    app: FastAPI, service: EdgeService, gate: _Gate, execute: Callable[[str, str, bytes], Awaitable[bytes]]
) -> None:
    """``/v1/runs`` (open, close) and ``/v1/runs/{run}/{call}`` (executor calls)."""

    @app.post("/v1/runs")
    async def open_run(request: Request) -> Response:
        """Open a run: ``{"node": "ES1", "links": {...}}`` -> ``{"run": id}``."""

        async def work() -> Response:
            try:
                data = await request.json()
            except ValueError:
                raise WireError("body must be JSON: {'node': 'ES1', 'links': {...}}") from None
            return JSONResponse({"run": await gate.in_thread(lambda: service.open_run(data))})

        return await gate.handle(request, "open_run", work)

    @app.delete("/v1/runs/{run}")
    async def close_run(run: str, request: Request) -> Response:
        """Close a run (idempotent)."""

        async def work() -> Response:
            service.close_run(run)
            return JSONResponse({"closed": run})

        return await gate.handle(request, "close_run", work)

    @app.post("/v1/runs/{run}/{call}", openapi_extra=_WIRE_BODY, responses=_WIRE_ANSWER)
    async def call(run: str, call: str, request: Request) -> Response:
        """One executor call (put, get, run_stage, tile, stitch, transmit, receive) on a wire message."""
        endpoint = call if call in service.calls else "unknown"

        async def work() -> Response:
            body = await gate.read(request)
            answer = await execute(run, call, body)
            return Response(answer, media_type=OCTET)

        return await gate.handle(request, endpoint, work, run_id=run)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (``localhost``, ``127.x``, ``::1``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: str | None) -> str | None:
    """The token in file ``path`` (surrounding whitespace stripped), ``None`` for no file.

    Raises:
        MegenError: a missing, unreadable or empty file, or a token with spaces or control characters.
    """
    if path is None:
        return None
    from pathlib import Path

    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise MegenError(f"cannot read token file {path}: {exc}") from None
    if not token:
        raise MegenError(f"token file {path} is empty")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise MegenError(f"token in {path} must be one word of printable characters")
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback ``host`` without a token."""
    if token is None and not is_loopback(host):
        raise MegenError(
            f"refusing to listen on {host} without a token; pass --token-file (or use 127.0.0.1)"
        )


__all__ = ["ServerConfig", "check_bind", "create_app", "is_loopback", "read_token"]
