"""An edge server lost mid-protocol: its work moves to a live one, the result equals a fault-free run."""

from __future__ import annotations

import pytest
import torch

from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.data import prompt_for
from megen.errors import MegenError
from megen.protocols.builders import build_plan
from megen.protocols.engine import Engine, EngineConfig
from megen.protocols.executors import LocalExecutor
from megen.protocols.runner import make_links
from megen.runtime.errors import NodeUnavailable
from megen.runtime.faults import MAX_FAILOVERS, FaultTolerantEngine

PROMPTS = [prompt_for(1), prompt_for(6)]
STEPS = 4


class DyingExecutor(LocalExecutor):
    """A local executor whose node is lost at its ``die_at``-th call of ``method`` (and stays lost)."""

    def __init__(self, *args, method: str, die_at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.method, self.die_at, self.calls, self.dead = method, die_at, 0, False
        self.concurrent = True  # exercise the threaded dispatch of parallel steps

    def __getattribute__(self, name: str):
        if name in ("run_stage", "transmit", "receive", "get", "tile", "stitch") and object.__getattribute__(
            self, "dead"
        ):
            raise NodeUnavailable(object.__getattribute__(self, "node"), "test: killed")
        if name == object.__getattribute__(self, "method"):
            self.calls += 1
            if self.calls >= self.die_at:
                self.dead = True
                raise NodeUnavailable(self.node, "test: killed")
        return object.__getattribute__(self, name)


class KillingEngine(FaultTolerantEngine):
    """Places ``victim`` on a :class:`DyingExecutor`; replacements (``always_die``: also dying) in process."""

    def __init__(self, *args, victim: str, method: str, die_at: int, always_die: bool = False, **kw) -> None:
        super().__init__(*args, **kw)
        self.victim, self.method, self.die_at, self.always_die = victim, method, die_at, always_die

    def _dying(self, node: str, cfg: EngineConfig) -> LocalExecutor:
        parts = cfg.parts(node)
        return DyingExecutor(
            node,
            self.model_of(node),
            parts,
            self.links,
            self.meter,
            self.memo,
            method=self.method,
            die_at=self.die_at,
        )

    def place(self, node, cfg):
        return self._dying(node, cfg) if node == self.victim else super().place(node, cfg)

    def replacement(self, node, failed, live, cfg):
        if self.always_die:
            return self._dying(node, cfg), f"{node}*"
        return super().replacement(node, failed, live, cfg)


def _setup(protocol: str, channel: str, **paths):
    cfg = RunConfig.from_paths({"steps": STEPS, "channel": channel, "snr_db": 5.0, "num_es": 2, **paths})
    plan = build_plan(protocol, cfg, 0, False)
    return cfg, plan, EngineConfig(num_steps=STEPS, guidance=3.0, seed=3)


@pytest.mark.parametrize(
    ("protocol", "method", "die_at", "channel"),
    [
        ("DIUG", "run_stage", 3, "awgn"),  # during a parallel denoising step: ES1 takes over tile 1
        ("DIUG", "transmit", 2, "none"),  # after denoising, while sending its tile down
        ("UIDCG", "run_stage", 2, "awgn"),  # cooperative: ES1 reruns ES2's step range
    ],
)
def test_lost_es_work_moves_and_the_result_is_unchanged(random_tiny, protocol, method, die_at, channel):
    cfg, plan, ecfg = _setup(protocol, channel)
    links, profiles = make_links(cfg), load_profiles(None)
    clean = Engine(random_tiny, links, profiles).run(plan, PROMPTS, ecfg)
    engine = KillingEngine(random_tiny, links, profiles, victim="ES2", method=method, die_at=die_at)
    out = engine.run(plan, PROMPTS, ecfg)
    assert torch.equal(out.image, clean.image)
    assert out.latency_s == clean.latency_s and out.channel_uses() == clean.channel_uses()
    assert len(out.faults) == 1
    fault = out.faults[0]
    assert fault["node"] == "ES2" and fault["moved_to"] == "ES1"
    assert fault["op"].startswith(method) and fault["replayed"] > 0
    assert fault["reason"] == "test: killed" and fault["time_s"] >= 0.0


def test_a_fault_free_run_records_no_fault(random_tiny):
    cfg, plan, ecfg = _setup("DIUG", "awgn")
    out = FaultTolerantEngine(random_tiny, make_links(cfg), load_profiles(None)).run(plan, PROMPTS, ecfg)
    assert out.faults == []


def test_a_node_lost_again_and_again_fails_clearly(random_tiny):
    cfg, plan, ecfg = _setup("DIUG", "none")
    engine = KillingEngine(
        random_tiny,
        make_links(cfg),
        load_profiles(None),
        victim="ES2",
        method="run_stage",
        die_at=1,
        always_die=True,
    )
    with pytest.raises(MegenError, match=f"node ES2 lost {MAX_FAILOVERS + 1} times"):
        engine.run(plan, PROMPTS, ecfg)


def test_the_run_json_carries_the_faults(random_tiny):
    from functools import partial

    from megen.protocols.runner import run_protocol

    cfg = RunConfig.from_paths(
        {"model": "tiny", "protocol": "DIUG", "steps": STEPS, "num_es": 2, "channel": "none"}
    )
    factory = partial(KillingEngine, victim="ES2", method="run_stage", die_at=2)
    summary = run_protocol(cfg, PROMPTS, model=random_tiny, engine_factory=factory).summary()
    assert [f["node"] for f in summary["faults"]] == ["ES2"]
    clean = run_protocol(cfg, PROMPTS, model=random_tiny).summary()
    assert clean["faults"] == [] and clean["quality"] == summary["quality"]


def test_a_parallel_step_runs_concurrent_executors_at_the_same_time():
    """Two stages of a parallel step meet at a barrier: a sequential dispatch would time out."""
    import threading

    from megen.protocols.executors import StageDone
    from megen.protocols.plan import Stage
    from megen.runtime.dispatch import run_stages_concurrently

    barrier = threading.Barrier(2, timeout=10)

    class Waiting:
        concurrent = True

        def __init__(self, node: str) -> None:
            self.node = node

        def run_stage(self, op, ctx):
            barrier.wait()
            return StageDone(op.describe(), 1)

    ops = [Stage("D", "ES1", 0, 1, tile=0), Stage("D", "ES2", 0, 1, tile=1)]
    done = run_stages_concurrently({"ES1": Waiting("ES1"), "ES2": Waiting("ES2")}, ops, None)
    assert [d.name for d in done] == ["D[0:1]@0", "D[0:1]@1"]


def test_a_restarted_node_is_retried_before_failing_over(random_tiny):
    """A node down for two calls and back (a restarting server): retried with backoff, no failover."""

    class Flaky(LocalExecutor):
        downs = 2

        def run_stage(self, op, ctx):
            if op.kind == "D" and Flaky.downs > 0:
                Flaky.downs -= 1
                raise NodeUnavailable(self.node, "test: restarting")
            return super().run_stage(op, ctx)

    class RetryingEngine(FaultTolerantEngine):
        retries, backoff_s = 3, 0.01

        def place(self, node, cfg):
            if node != "ES2":
                return super().place(node, cfg)
            return Flaky(node, self.model_of(node), cfg.parts(node), self.links, self.meter, self.memo)

    cfg, plan, ecfg = _setup("DIUG", "none")
    links, profiles = make_links(cfg), load_profiles(None)
    clean = Engine(random_tiny, links, profiles).run(plan, PROMPTS, ecfg)
    out = RetryingEngine(random_tiny, links, profiles).run(plan, PROMPTS, ecfg)
    assert Flaky.downs == 0 and out.faults == []
    assert torch.equal(out.image, clean.image)
