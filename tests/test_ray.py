"""Edge servers on Ray actors: results equal the in-process run bit for bit; a killed actor is survived.

One local Ray (2 CPUs) for the module; every actor is killed and Ray shut down at the end.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.data import prompt_for
from megen.protocols.builders import build_plan
from megen.protocols.engine import Engine, EngineConfig
from megen.protocols.runner import make_links

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(600)

PROMPTS = [prompt_for(2), prompt_for(7)]
STEPS = 4


@pytest.fixture(scope="module")
def pool():
    from megen.runtime.ray_executor import RayPool, connect

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    started = connect(num_cpus=2)
    p = RayPool(num_cpus=0.5, threads=1)
    try:
        yield p
    finally:
        p.shutdown()
        if started:
            ray.shutdown()


def _run(engine_cls, model, protocol: str, channel: str, **kw):
    cfg = RunConfig.from_paths({"steps": STEPS, "channel": channel, "snr_db": 4.0, "num_es": 2})
    plan = build_plan(protocol, cfg, 0, False)
    engine = engine_cls(model, make_links(cfg), load_profiles(None), **kw)
    return engine.run(plan, PROMPTS, EngineConfig(num_steps=STEPS, guidance=3.0, seed=11)), engine


def _same(a, b) -> None:
    assert torch.equal(a.image, b.image)
    assert (a.latent is None and b.latent is None) or torch.equal(a.latent, b.latent)
    assert a.stages == b.stages and a.transfers == b.transfers
    assert a.latency_s == b.latency_s and a.energy_j == b.energy_j
    assert a.snr_aware_entries == b.snr_aware_entries


@pytest.mark.parametrize("channel", ["none", "awgn"])
@pytest.mark.parametrize("protocol", ["DIUG", "UIDG", "UIDCG", "CIAG"])
def test_ray_actors_equal_in_process_bit_for_bit(pool, random_tiny, protocol, channel):
    from megen.runtime.ray_executor import RayEngine

    local, _ = _run(Engine, random_tiny, protocol, channel)
    remote, _ = _run(RayEngine, random_tiny, protocol, channel, pool=pool)
    _same(remote, local)
    assert remote.faults == []


@pytest.mark.parametrize("protocol", ["DIUG", "UIDCG"])
def test_es_to_es_transfers_go_actor_to_actor(pool, random_tiny, protocol):
    """Every ES -> ES transfer reaches its actor as an ObjectRef (never fetched by the driver)."""
    from megen.runtime.ray_executor import RayEngine

    local, _ = _run(Engine, random_tiny, protocol, "awgn")
    remote, engine = _run(RayEngine, random_tiny, protocol, "awgn", pool=pool)
    _same(remote, local)
    es_to_es = [t for t in remote.transfers if "UE" not in (t.src, t.dst)]
    assert es_to_es
    assert sum(ex.inner.direct for ex in engine._resilient) == len(es_to_es)


def test_an_actor_killed_during_diug_is_survived_and_picked_up_again(pool, random_tiny):
    from megen.runtime.ray_executor import RayEngine

    class KillingRayEngine(RayEngine):
        """Kills ES2's actor before the second parallel denoising step."""

        steps_seen = 0

        def run_stages(self, nodes, ops, ctx):
            KillingRayEngine.steps_seen += 1
            if KillingRayEngine.steps_seen == 2:
                ray.kill(self.pool.handle("ES2"), no_restart=True)
            return super().run_stages(nodes, ops, ctx)

    clean, _ = _run(Engine, random_tiny, "DIUG", "awgn")
    out, engine = _run(KillingRayEngine, random_tiny, "DIUG", "awgn", pool=pool)
    _same(out, clean)
    assert len(out.faults) == 1
    fault = out.faults[0]
    assert fault["node"] == "ES2" and fault["moved_to"] == "ES1"
    assert fault["op"].startswith("run_stage D[1:2]") and fault["replayed"] >= 4
    started = pool.started
    again, _ = _run(RayEngine, random_tiny, "DIUG", "awgn", pool=pool)  # a new ES2 actor
    assert pool.started == started + 1
    _same(again, clean)
    assert again.faults == []


@pytest.mark.slow
def test_cli_generate_backend_ray_equals_local(pool, tmp_path):
    from typer.testing import CliRunner

    from megen.cli.main import app

    pool.shutdown()  # the command starts its own actors (1 CPU each) on the module's Ray
    args = ["generate", "-p", prompt_for(3), "--protocol", "DIUG", "--num-es", "2", "--steps", "3"]
    args += ["--channel", "awgn", "--snr-db", "6", "--json"]
    runner = CliRunner()
    res = {}
    for backend in ("local", "ray"):
        r = runner.invoke(app, [*args, "--backend", backend, "--out", str(tmp_path / f"{backend}.png")])
        assert r.exit_code == 0, r.output
        res[backend] = json.loads(r.stdout[r.stdout.index("{") :])
    for s in res.values():
        s.pop("out"), s.pop("seconds"), s.pop("message")
    assert res["ray"] == res["local"]
    assert (tmp_path / "ray.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    bad = runner.invoke(app, [*args, "--ray-address", "127.0.0.1:1"])
    assert bad.exit_code == 2 and "--ray-address needs --backend ray" in bad.output


def test_backend_flags_are_checked(tmp_path):
    from typer.testing import CliRunner

    from megen.cli.main import app

    runner = CliRunner()
    r = runner.invoke(
        app, ["sweep", "--backend", "bogus", "--samples", "1", "--db", str(tmp_path / "x.sqlite")]
    )
    assert r.exit_code == 2 and "--backend must be local or ray" in r.output
    r = runner.invoke(
        app, ["sweep", "--ray-address", "127.0.0.1:1", "--samples", "1", "--db", str(tmp_path / "x.sqlite")]
    )
    assert r.exit_code == 2 and "--ray-address needs --backend ray" in r.output
    r = runner.invoke(app, ["generate", "-p", "a shirt", "--backend", "spark"])
    assert r.exit_code == 2 and "--backend must be local or ray" in r.output
    assert not (tmp_path / "x.sqlite").exists()
