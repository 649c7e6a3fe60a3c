"""``megen serve``: run one edge server (uvicorn, or Ray Serve with ``--ray``).

See :mod:`megen.runtime.server` for the endpoints and the security model, docs/deployment.md for a
deployment.
"""

from __future__ import annotations

from pathlib import Path

import typer

from megen.cli.common import handle_errors, say
from megen.errors import MegenError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (non-loopback needs --token-file)."),
    port: int = typer.Option(8000, help="TCP port."),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding the bearer token."),
    model: str = typer.Option("tiny", help="Model: tiny | tiny-random | a tiny or Stable Diffusion folder."),
    device: str = typer.Option("cpu", help="cpu | cuda[:i] | mps | auto."),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16 (accelerators only)."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests admitted at once; more answer 503."),
    timeout: float = typer.Option(300.0, "--timeout", help="Per-request limit in seconds (504 beyond)."),
    max_mb: float = typer.Option(256.0, "--max-mb", help="Largest request body in MiB (413 beyond)."),
    ray: bool = typer.Option(False, "--ray", help="Deploy on Ray Serve instead of uvicorn."),
    replicas: int = typer.Option(1, "--replicas", help="Ray Serve: replicas of the server."),
    gpus_per_replica: float = typer.Option(0.0, "--gpus-per-replica", help="Ray Serve: GPUs per replica."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray Serve: cluster address."),
    fuse: bool = typer.Option(
        False, "--fuse", help="Ray Serve: fuse batched denoising stages (float-equal)."
    ),
) -> None:
    """Serve one edge server: stages, tiles and link receivers of ES nodes for remote UEs."""
    from megen.runtime.server import ServerConfig, check_bind, read_token
    from megen.runtime.service import ServiceConfig

    if not 0 < port < 65536:
        raise MegenError(f"--port must be in 1..65535, got {port}")
    if max_queue < 1 or timeout <= 0 or max_mb <= 0:
        raise MegenError("--max-queue must be >= 1, --timeout and --max-mb > 0")
    if replicas < 1 or gpus_per_replica < 0:
        raise MegenError("--replicas must be >= 1 and --gpus-per-replica >= 0")
    if fuse and not ray:
        raise MegenError("--fuse needs --ray (Ray Serve gathers the concurrent calls it fuses)")
    token = read_token(None if token_file is None else str(token_file))
    check_bind(host, token)
    service_cfg = ServiceConfig(model=model, device=device, dtype=dtype, max_bytes=int(max_mb * 2**20))
    server_cfg = ServerConfig(token=token, max_queue=max_queue, timeout_s=timeout)
    if ray:
        from megen.runtime.ray_serve import run_ray_serve

        run_ray_serve(
            service_cfg,
            server_cfg,
            host=host,
            port=port,
            replicas=replicas,
            gpus_per_replica=gpus_per_replica,
            address=ray_address,
            fuse=fuse,
            log=say,
        )
        return
    import uvicorn

    from megen.runtime.server import create_app

    app = create_app(service_cfg, server_cfg)
    say(
        f"megen serve: model {model} on {device}, http://{host}:{port} (token {'required' if token else 'off'})"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
