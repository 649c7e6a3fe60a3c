"""Start and stop `megen serve` subprocesses on loopback, for tests and benchmarks.

One helper for every test and benchmark that needs real edge-server processes: each server is
``python -m megen.cli.main serve`` on ``127.0.0.1`` (a free port, or a given one to restart a server
where it was), started in parallel with the others and returned once ``GET /health`` answers. A server
that does not come up in time is killed together with the others; :func:`stop_server` always reaps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

#: The stderr file of each started server, by process id (closed when it is stopped).
_LOGS: dict[int, IO[bytes]] = {}

#: Seconds a server may take to answer /health (imports and model load; a few s on an idle machine).
START_TIMEOUT_S = 300.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url``'s ``GET /health`` answers 200 now."""
    try:
        return httpx.get(url + "/health", timeout=timeout_s).status_code == 200
    except httpx.TransportError:
        return False


def start_servers(
    token_file: Path | None,
    n: int,
    *extra: str,
    model: str | None = "tiny",
    ports: Sequence[int] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``n`` `megen serve` subprocesses on loopback, returned once each answers ``/health``.

    Args:
        token_file: The servers' token file, or ``None`` (no token: loopback only).
        n: How many servers.
        *extra: More ``megen serve`` options (``"--ray"`` ...).
        model: ``--model`` (``None``: the server's default).
        ports: The ports to bind (e.g. a killed server's, to restart it); ``None``: free ones.
        timeout_s: Seconds all of them may take to come up.

    Returns:
        ``(process, base URL)`` per server, in order.

    Raises:
        RuntimeError: a server exited or did not come up in time (all started ones are stopped).
    """
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        for i in range(n):
            port = free_port() if ports is None else ports[i]
            cmd = [sys.executable, "-m", "megen.cli.main", "serve", "--port", str(port)]
            cmd += [] if model is None else ["--model", model]
            cmd += [] if token_file is None else ["--token-file", str(token_file)]
            log = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop_server/kill_server)
            proc = subprocess.Popen([*cmd, *extra], env=env, stdout=subprocess.DEVNULL, stderr=log)
            _LOGS[proc.pid] = log
            started.append((proc, f"http://127.0.0.1:{port}"))
        deadline = time.monotonic() + timeout_s
        for proc, url in started:
            while not healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"server {url} did not come up (exit code {proc.poll()}): {_tail(proc)}"
                    )
                time.sleep(0.2)
    except BaseException:
        for proc, _ in started:
            stop_server(proc)
        raise
    return started


def _tail(proc: subprocess.Popen[bytes], chars: int = 1500) -> str:
    """The last ``chars`` characters of a started server's stderr."""
    log = _LOGS.get(proc.pid)
    if log is None:
        return ""
    log.seek(0)
    return log.read().decode(errors="replace")[-chars:].strip()


def _close_log(proc: subprocess.Popen[bytes]) -> None:
    log = _LOGS.pop(proc.pid, None)
    if log is not None:
        log.close()


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a server: SIGTERM, then SIGKILL after ``timeout_s`` seconds; always reaped."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _close_log(proc)


def kill_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server (a crash: no shutdown, open connections reset) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    _close_log(proc)


__all__ = ["START_TIMEOUT_S", "free_port", "healthy", "kill_server", "start_servers", "stop_server"]
