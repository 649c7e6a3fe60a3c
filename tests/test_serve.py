"""Equivalence: protocols with their edge servers behind two `megen serve` processes equal in-process runs.

The servers are real subprocesses (`python -m megen.cli.main serve`) on free loopback ports, with a
token; they are killed in teardown. The in-process run and the remote run use the same embedded
tiny model.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from typer.testing import CliRunner

from megen.cli.main import app
from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.protocols.builders import build_plan
from megen.protocols.engine import Engine, EngineConfig
from megen.protocols.runner import make_links
from megen.runtime.errors import NodeUnavailable
from megen.runtime.http_executor import HttpExecutor, RemoteEngine
from megen.testing.serve import free_port, start_servers, stop_server

TOKEN = "s3cret-token-for-tests"
PROMPTS = ["a photo of a bag"]


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def servers(token_file) -> Iterator[list[str]]:
    """Two edge servers (ES1, ES2)."""
    started = start_servers(token_file, 2)
    try:
        yield [url for _, url in started]
    finally:
        for proc, _ in started:
            stop_server(proc)


def _run(engine: Engine, proto: str, channel: str, steps: int = 2):
    cfg = RunConfig.from_paths(
        {"protocol.name": proto, "task.steps": steps, "links.*.channel.kind": channel, "protocol.num_es": 2}
    )
    plan = build_plan(proto, cfg, 0, False)
    return engine.run(plan, PROMPTS, EngineConfig.of(cfg))


def _engines(model, urls, channel: str, **kw):
    cfg = RunConfig.from_paths({"links.*.channel.kind": channel})
    local = Engine(model, make_links(cfg), load_profiles(None))
    remote = RemoteEngine(
        model, make_links(cfg), load_profiles(None), es_urls=urls, links_section=cfg.links, token=TOKEN, **kw
    )
    return local, remote


@pytest.mark.timeout(300)
@pytest.mark.parametrize("channel", ["none", "awgn"])
@pytest.mark.parametrize("proto", ["DIUG", "UIDG", "UIDCG", "CIAG"])
def test_two_servers_equal_in_process(tiny, servers, proto, channel):
    local, remote = _engines(tiny, servers, channel)
    a, b = _run(local, proto, channel), _run(remote, proto, channel)
    assert torch.equal(a.image, b.image)
    assert (a.latent is None) == (b.latent is None)
    if a.latent is not None:
        assert torch.equal(a.latent, b.latent)
    assert a.stages == b.stages  # names, nodes, FLOPs, modelled times and energy
    assert a.transfers == b.transfers  # channel uses, bits, SNRs, modelled times
    assert (a.latency_s, a.energy_j) == (b.latency_s, b.energy_j)
    wall = remote.wall.summary()
    remote_nodes = {t.node for t in a.stages} - {"UE"}
    assert remote_nodes <= set(wall["nodes"]) and wall["total_s"] > 0
    assert len(wall["transfers"]) == len(a.transfers)
    assert all(t["wall_s"] >= 0 for t in wall["transfers"])


@pytest.mark.timeout(300)
def test_32_concurrent_clients(tiny, servers):
    """32 UE clients at once against one server: every one gets the in-process image."""
    local, _ = _engines(tiny, servers[:1], "awgn")
    want = _run(local, "CIAG", "awgn").image

    def client(_: int) -> torch.Tensor:
        _, remote = _engines(tiny, servers[:1], "awgn")
        return _run(remote, "CIAG", "awgn").image

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        images = list(pool.map(client, range(32)))
    assert all(torch.equal(img, want) for img in images)
    metrics = httpx.get(servers[0] + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'megen_requests_total{endpoint="run_stage",status="200"}' in metrics


def test_token_required(servers):
    url = servers[0]
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/info").status_code == 401
    assert httpx.get(url + "/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.post(url + "/v1/runs", json={"node": "ES1"})
    assert r.status_code == 401 and "token" in r.json()["error"]
    info = httpx.get(url + "/info", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert info["model"] == "tiny" and info["device"] == "cpu" and info["version"]
    assert httpx.get(url + "/openapi.json").json()["info"]["title"] == "megen edge server"


def test_dead_server_is_node_unavailable():
    cfg = RunConfig()
    with pytest.raises(NodeUnavailable, match="ES1"):
        HttpExecutor("ES1", f"http://127.0.0.1:{free_port()}", cfg.links, TOKEN, timeout_s=5)


@pytest.mark.timeout(300)
def test_cli_generate_on_servers(tiny, servers, token_file, tmp_path):
    """`megen generate --es URL --es URL` writes the in-process image and adds wall-clock times."""
    from megen.images import load_image
    from megen.protocols.runner import run_protocol

    args = ["--protocol", "DIUG", "--model", "tiny", "--steps", "2", "--channel", "awgn", "--seed", "5"]
    out = tmp_path / "remote.png"
    cmd = ["generate", "-p", PROMPTS[0], "--out", str(out), "--json", *args]
    cmd += ["--es", servers[0], "--es", servers[1], "--token-file", str(token_file)]
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary["wall_s"]["nodes"]) >= {"UE", "ES1", "ES2"}
    assert summary["wall_s"]["transfers"] and summary["latency_s"] > 0
    cfg = RunConfig.from_paths(
        {"protocol.name": "DIUG", "task.steps": 2, "links.*.channel.kind": "awgn", "task.seed": 5}
    )
    want = run_protocol(cfg, PROMPTS, model=tiny)
    got, _ = load_image(out, channels=tiny.image_channels, size=tiny.image_size)
    assert torch.allclose(got, want.images, atol=1 / 255)  # the PNG holds 8-bit pixels
    local = want.summary()
    for key in ("channel_uses", "payload_bits", "flops", "latency_s", "energy_j", "quality"):
        assert summary[key] == pytest.approx(local[key]), key


def test_cli_refuses_public_bind_without_token():
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "8000"])
    assert r.exit_code == 2 and "without a token" in r.output


def test_client_refuses_a_server_with_another_model(servers):
    from megen.errors import MegenError
    from megen.runtime.http_executor import RemotePlacement

    with pytest.raises(MegenError, match="fingerprints differ"):
        RemotePlacement(servers, RunConfig().links, "tiny-random", TOKEN).check_servers()
    RemotePlacement(servers, RunConfig().links, "tiny", TOKEN).check_servers()
    with pytest.raises(MegenError, match="401"):
        RemotePlacement(servers, RunConfig().links, "tiny", "wrong").check_servers()
