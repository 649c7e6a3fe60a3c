"""A `megen serve` process SIGKILLed mid-protocol: the image is still delivered, equal to the in-process
run, the fault is recorded, and a server restarted on the same port is used again by the next run.

Two real server subprocesses on loopback (:mod:`megen.testing.serve`); the kill is deterministic: a
wrapper around ES2's executor kills its server right after ES2's first stage has answered, so ES2's
next call finds the process gone. Every process started here is stopped in the fixture's teardown.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from typer.testing import CliRunner

from megen.cli.main import app
from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.protocols.builders import build_plan
from megen.protocols.engine import Engine, EngineConfig, EngineOutput
from megen.protocols.executors import NodeExecutor, RunContext, StageDone
from megen.protocols.plan import Stage
from megen.protocols.runner import make_links
from megen.runtime.http_executor import RemoteEngine
from megen.testing.serve import free_port, kill_server, start_servers, stop_server

TOKEN = "fault-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPTS = ["a photo of a bag"]
STEPS = 2


class Servers:
    """Two edge servers; :meth:`revive` restarts a killed one on its port."""

    def __init__(self, token_file: Path) -> None:
        self.token_file = token_file
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        for proc, url in start_servers(token_file, 2):
            self.procs.append(proc)
            self.urls.append(url)

    def revive(self, i: int) -> None:
        if self.procs[i].poll() is None:
            return
        port = int(self.urls[i].rsplit(":", 1)[1])
        ((self.procs[i], _),) = start_servers(self.token_file, 1, ports=[port])

    def stop(self) -> None:
        for proc in self.procs:
            stop_server(proc)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    token_file = tmp_path_factory.mktemp("tok") / "token"
    token_file.write_text(TOKEN + "\n")
    started = Servers(token_file)
    try:
        yield started
    finally:
        started.stop()


class KillAfterFirstStage:
    """ES executor wrapper: SIGKILLs the node's server once its first stage has answered."""

    def __init__(self, inner: NodeExecutor, proc: subprocess.Popen[bytes]) -> None:
        self.inner, self.proc, self.node = inner, proc, inner.node
        self.concurrent = bool(getattr(inner, "concurrent", False))

    def run_stage(self, op: Stage, ctx: RunContext) -> StageDone:
        done = self.inner.run_stage(op, ctx)
        kill_server(self.proc)
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class KillingRemoteEngine(RemoteEngine):
    """A :class:`RemoteEngine` whose ``victim`` server dies after the victim's first stage."""

    def __init__(self, *args: Any, victim: str, proc: subprocess.Popen[bytes], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victim, self.proc = victim, proc

    def place(self, node: str, cfg: EngineConfig) -> NodeExecutor:
        inner = super().place(node, cfg)
        if node != self.victim:
            return inner
        wrapped: Any = KillAfterFirstStage(inner, self.proc)
        return wrapped


def _run(engine: Engine, proto: str) -> EngineOutput:
    cfg = RunConfig.from_paths(
        {"protocol.name": proto, "task.steps": STEPS, "links.*.channel.kind": "awgn", "protocol.num_es": 2}
    )
    return engine.run(build_plan(proto, cfg, 0, False), PROMPTS, EngineConfig.of(cfg))


def _parts(model: Any) -> tuple[Any, Any, Any]:
    cfg = RunConfig.from_paths({"links.*.channel.kind": "awgn"})
    return model, make_links(cfg), load_profiles(None)


def _assert_same(a: EngineOutput, b: EngineOutput) -> None:
    assert torch.equal(a.image, b.image)
    if a.latent is not None:
        assert b.latent is not None and torch.equal(a.latent, b.latent)
    assert a.stages == b.stages and a.transfers == b.transfers
    assert (a.latency_s, a.energy_j) == (b.latency_s, b.energy_j)


def _stage_requests(url: str) -> float:
    metrics = httpx.get(url + "/metrics", headers=AUTH, timeout=10).text
    line = 'megen_requests_total{endpoint="run_stage",status="200"}'
    return sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(line))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("proto", ["DIUG", pytest.param("UIDCG", marks=pytest.mark.slow)])
def test_killed_server_fails_over_and_is_picked_up_again(tiny, servers, proto):
    """ES2's server SIGKILLed after its first stage: same result, fault recorded; restarted: used again."""
    servers.revive(1)
    want = _run(Engine(*_parts(tiny)), proto)
    cfg = RunConfig.from_paths({"links.*.channel.kind": "awgn"})
    common = {"es_urls": servers.urls, "links_section": cfg.links, "token": TOKEN}
    killer = KillingRemoteEngine(*_parts(tiny), victim="ES2", proc=servers.procs[1], **common)
    got = _run(killer, proto)
    assert servers.procs[1].poll() is not None  # the server really died mid-run
    _assert_same(want, got)
    (fault,) = got.faults
    assert fault["node"] == "ES2" and fault["moved_to"] == "ES1" and fault["replayed"] >= 1
    assert fault["op"] and fault["reason"] and fault["recovery_s"] >= 0
    assert 0 < fault["time_s"] <= killer.wall.total_s

    servers.revive(1)  # a new process on the same port, holding none of the old runs
    assert _stage_requests(servers.urls[1]) == 0
    again = _run(RemoteEngine(*_parts(tiny), **common), proto)
    _assert_same(want, again)
    assert again.faults == []
    assert _stage_requests(servers.urls[1]) >= 1  # the restarted server ran ES2's stages


@pytest.mark.timeout(300)
def test_cli_generate_with_a_dead_server(tiny, servers, tmp_path):
    """`megen generate --es LIVE --es DEAD`: delivered, equal to in-process, the fault in the JSON."""
    from megen.protocols.runner import run_protocol

    servers.revive(0)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    dead = f"http://127.0.0.1:{free_port()}"
    args = [
        "--protocol",
        "DIUG",
        "--model",
        "tiny",
        "--steps",
        str(STEPS),
        "--channel",
        "awgn",
        "--seed",
        "3",
    ]
    cmd = ["generate", "-p", PROMPTS[0], "--out", str(tmp_path / "x.png"), "--json", *args]
    cmd += ["--es", servers.urls[0], "--es", dead, "--token-file", str(token_file)]
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    (fault,) = summary["faults"]
    assert fault["node"] == "ES2" and fault["moved_to"] == "ES1" and dead in fault["reason"]
    cfg = RunConfig.from_paths(
        {"protocol.name": "DIUG", "task.steps": STEPS, "links.*.channel.kind": "awgn", "task.seed": 3}
    )
    local = run_protocol(cfg, PROMPTS, model=tiny).summary()
    for key in ("channel_uses", "payload_bits", "flops", "latency_s", "energy_j", "quality"):
        assert summary[key] == pytest.approx(local[key]), key

    cmd[cmd.index(dead)] = f"http://127.0.0.1:{free_port()}"
    cmd[cmd.index(servers.urls[0])] = dead  # no server reachable: one line, exit 2
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 2 and "unavailable" in r.output
