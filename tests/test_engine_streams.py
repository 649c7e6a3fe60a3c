"""The engine's random streams are keyed by names: inserting an operation changes no other draw."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.data import prompt_for
from megen.protocols.builders import build_plan
from megen.protocols.engine import Engine, EngineConfig
from megen.protocols.plan import ItemRef, Plan, Stage, Transfer
from megen.protocols.runner import make_links

PROMPTS = [prompt_for(1), prompt_for(6)]
STEPS = 5


@pytest.fixture(scope="module")
def reference():
    return (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(9)) * 255).round() / 255


def _engine(model, **kw):
    cfg = RunConfig.from_paths(dict(steps=STEPS, channel="awgn", snr_db=3.0, mcs="qpsk-0.5", **kw))
    return Engine(model, make_links(cfg), load_profiles(None))


def _records(out, skip: str | None = None):
    """Transfer records without times (an inserted op may delay later ones), optionally without one item."""
    return [
        dataclasses.replace(t, start_s=0.0, end_s=0.0)
        for t in out.transfers
        if skip is None or not (t.item == skip and t.dst == "ES4")
    ]


def _insert(plan: Plan, at: int, op) -> Plan:
    return dataclasses.replace(plan, ops=(*plan.ops[:at], op, *plan.ops[at:]))


@pytest.mark.parametrize("protocol", ["CIAG", "ESUC", "DIUG"])
def test_an_extra_transfer_changes_no_other_draw(random_tiny, reference, protocol):
    cfg = EngineConfig(num_steps=STEPS, strength=0.6, guidance=3.0, seed=5)
    start = random_tiny.start_step(STEPS, 0.6)
    plan = build_plan(protocol, RunConfig.from_paths({"steps": STEPS}), start, True)
    engine = _engine(random_tiny)
    base = engine.run(plan, PROMPTS, cfg, reference)
    # an analog transfer of an unrelated item, early in the plan (before every noisy transfer)
    extra = Transfer(ItemRef("reference"), "UE", "ES4", "analog")
    more = engine.run(_insert(plan, 0, extra), PROMPTS, cfg, reference)
    assert len(more.transfers) == len(base.transfers) + 1
    assert torch.equal(more.image, base.image)
    assert _records(more, skip="reference") == _records(base)


def test_an_extra_stage_changes_no_draw(random_tiny, reference):
    cfg = EngineConfig(num_steps=STEPS, strength=0.6, guidance=3.0, seed=5)
    plan = build_plan(
        "CIAG", RunConfig.from_paths({"steps": STEPS}), random_tiny.start_step(STEPS, 0.6), True
    )
    engine = _engine(random_tiny)
    base = engine.run(plan, PROMPTS, cfg, reference)
    more = engine.run(_insert(plan, 0, Stage("T", "UE")), PROMPTS, cfg, reference)
    assert torch.equal(more.image, base.image)
    assert len(more.stages) == len(base.stages) + 1


def test_the_transfer_streams_are_live(random_tiny, reference):
    """A different master seed changes the noisy result (the check above is not vacuous)."""
    plan = build_plan(
        "CIAG", RunConfig.from_paths({"steps": STEPS}), random_tiny.start_step(STEPS, 0.6), True
    )
    engine = _engine(random_tiny)
    a = engine.run(
        plan, PROMPTS, EngineConfig(num_steps=STEPS, strength=0.6, guidance=3.0, seed=5), reference
    )
    b = engine.run(
        plan, PROMPTS, EngineConfig(num_steps=STEPS, strength=0.6, guidance=3.0, seed=6), reference
    )
    assert not torch.equal(a.image, b.image)
