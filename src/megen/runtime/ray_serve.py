"""The edge server on Ray Serve: replicas, GPUs per replica, and dynamic batching of concurrent calls.

``megen serve --ray`` deploys the same FastAPI app as the uvicorn server (:mod:`megen.runtime.server`)
as a Ray Serve deployment: each replica loads the model once (``num_gpus`` per replica where GPUs are
asked for) and answers the same endpoints with the same token, validation, queue and metrics.
Concurrent executor calls reaching one replica are gathered by ``@serve.batch`` (up to
``max_batch_size`` calls, waiting at most ``batch_wait_s``) and executed back to back by
:meth:`~megen.runtime.service.EdgeService.call_batch` on one worker; the batch sizes are reported in
``megen_batch_size``. Each call's answer is then exactly its unbatched answer. With ``fuse``
(``megen serve --ray --fuse``) the denoising stages of different runs in one batch run as one batched
model call (:mod:`megen.runtime.fusion`; sizes in ``megen_fused_batch_size``): faster, equal to the
unbatched answers within float rounding (about 1e-5 on CPU), not bit for bit.

A run's calls must reach the replica that holds the run: with more than one replica, Ray Serve's
default routing does not guarantee that, so use one replica per server URL (``--replicas 1``) for
clients that run plans, or put a session-affine proxy in front.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from megen.errors import MegenError
from megen.runtime.server import ServerConfig
from megen.runtime.service import ServiceConfig


def build_deployment(
    service_cfg: ServiceConfig,
    server_cfg: ServerConfig,
    *,
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    max_batch_size: int = 16,
    batch_wait_s: float = 0.005,
    fuse: bool = False,
) -> Any:
    """The bound Ray Serve application of one edge server (pass it to ``serve.run``)."""
    from ray import serve

    @serve.deployment(
        num_replicas=replicas,
        ray_actor_options={"num_gpus": gpus_per_replica, "num_cpus": 1},
        max_ongoing_requests=max(server_cfg.max_queue, max_batch_size),
    )
    @serve.ingress()
    class EdgeServer:
        def __init__(self) -> None:
            from megen.runtime.service import EdgeService

            self.service = EdgeService(service_cfg)
            self.asgi: Any = None

        def __serve_build_asgi_app__(self) -> Any:
            from megen.runtime.server import create_app

            self.asgi = create_app(cfg=server_cfg, service=self.service, runner=self.run_call)
            return self.asgi

        async def run_call(self, run: str, call: str, body: bytes) -> bytes:
            result = await self.batched((run, call, body))
            if isinstance(result, MegenError):
                raise result
            answer: bytes = result
            return answer

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_s)
        async def batched(self, calls: list[tuple[str, str, bytes]]) -> list[bytes | MegenError]:
            import functools

            import anyio

            metrics = self.asgi.state.metrics
            metrics.batch_size(len(calls))
            run = functools.partial(self.service.call_batch, calls, fuse=fuse, on_fused=metrics.fused_size)
            results: list[bytes | MegenError] = await anyio.to_thread.run_sync(run)
            return results

    return EdgeServer.bind()  # type: ignore[attr-defined]


def run_ray_serve(
    service_cfg: ServiceConfig,
    server_cfg: ServerConfig,
    *,
    host: str,
    port: int,
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    address: str | None = None,
    fuse: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Start (or join) Ray, deploy the edge server on ``host:port`` and block until interrupted."""
    import os
    import signal
    import sys
    import time

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the local Ray is shut down below
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(
            build_deployment(
                service_cfg, server_cfg, replicas=replicas, gpus_per_replica=gpus_per_replica, fuse=fuse
            ),
            name="megen-es",
            route_prefix="/",
        )
        log(
            f"megen serve (Ray Serve): {replicas} replica(s), model {service_cfg.model}, "
            f"{'fused' if fuse else 'unfused'} batching, http://{host}:{port}"
        )
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


__all__ = ["build_deployment", "run_ray_serve"]
