"""Typed items, declared reads/writes, generic validation, node executors and the unsplit plan."""

from __future__ import annotations

import pytest
import torch

from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.data import prompt_for
from megen.errors import MegenError
from megen.protocols.builders import PROMPT_ONLY, PROTOCOLS, build_plan, build_unsplit_plan
from megen.protocols.engine import Engine, EngineConfig
from megen.protocols.executors import LocalExecutor
from megen.protocols.plan import (
    Access,
    ItemRef,
    ParallelDenoise,
    Plan,
    Stage,
    Stitch,
    Tile,
    Transfer,
    default_denoiser,
)
from megen.protocols.plan_io import plan_from_dict, plan_to_dict
from megen.protocols.runner import make_links
from megen.protocols.unsplit import run_unsplit
from megen.protocols.validate import validate_plan
from megen.session import Session

PROMPTS = [prompt_for(4), prompt_for(8)]
STEPS = 4


def test_item_refs_parse_and_print():
    assert ItemRef.parse("latent@2") == ItemRef("latent", 2)
    assert str(ItemRef("sketch", 0)) == "sketch@0" and str(ItemRef("cond")) == "cond"
    assert Transfer("image@1", "ES2", "ES1").item == ItemRef("image", 1)  # text is parsed once
    for bad in ("latnet", "latent@x", "latent@-1", "@1"):
        with pytest.raises(MegenError):
            ItemRef.parse(bad)


def test_ops_declare_reads_writes_and_parts():
    d = Stage("D", "UE", tile=1)
    assert d.accesses(False) == (
        Access("UE", (ItemRef("latent", 1), ItemRef("cond")), (ItemRef("latent", 1),), ("unet_ue",)),
    )
    assert Stage("Z", "ES1").accesses(True)[0].reads == (ItemRef("z_ref"),)
    assert Stage("Z", "ES1").accesses(False)[0].reads == ()
    t = Transfer("latent", "UE", "ES1")
    assert [(a.node, a.reads, a.writes) for a in t.accesses(False)] == [
        ("UE", (ItemRef("latent"),), ()),
        ("ES1", (), (ItemRef("latent"),)),
    ]
    assert Tile("UE", "latent", 2, 1).accesses(False)[0].writes == (
        ItemRef("latent", 0),
        ItemRef("latent", 1),
    )
    assert Stitch("UE", "sketch", 2).accesses(False)[0].reads == (ItemRef("sketch", 0), ItemRef("sketch", 1))
    par = ParallelDenoise(("ES1", "ES2"), None, None, "es", 1, 2)
    assert [a.node for a in par.accesses(False)] == ["ES1", "ES2"]
    assert all(a.parts == ("unet_es",) for a in par.accesses(False))
    assert default_denoiser("UE") == "ue" and default_denoiser("ES3") == "es"
    assert Stage("C", "ES1").parts() == ("vae", "text", "unet_es")


@pytest.mark.parametrize(
    "ops,message",
    [
        ((Stage("D", "UE", tile=0),), "needs 'latent@0' on UE"),
        ((Stage("T", "UE"), Stage("T", "UE", tile=1)), "only D, G and K"),
        ((Transfer("cond", "UE", "ES1"),), "send the prompt"),
        ((Tile("UE", "cond", 2, 1),), "cannot be tiled"),
        ((Stage("Z", "UE"), Tile("UE", "latent", 1, 1)), "k >= 2"),
        ((Stage("T", "ES9"),), "unknown node"),
        ((Stage("Z", "UE"), ParallelDenoise(("ES1",), 0, 2, "es", -1, 1)), "sync_every"),
    ],
)
def test_generic_validation_names_the_problem(ops, message):
    with pytest.raises(MegenError, match=message):
        validate_plan(Plan("bad", ops), EngineConfig(num_steps=STEPS), image_to_image=False)


@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.parametrize("i2i", [False, True])
def test_every_built_plan_validates_and_round_trips(name, i2i):
    i2i = i2i and name not in PROMPT_ONLY  # the UE alone has no reference (run_protocol drops it)
    plan = build_plan(name, RunConfig.from_paths({"steps": 10}), 4 if i2i else 0, i2i)
    cfg = EngineConfig(num_steps=10, strength=0.6 if i2i else None)
    validate_plan(plan, cfg, image_to_image=i2i)
    assert plan_from_dict(plan_to_dict(plan)) == plan


class _Recording(LocalExecutor):
    calls: list[tuple[str, str, str]] = []

    def run_stage(self, op, ctx):
        self.calls.append((self.node, "stage", op.kind))
        return super().run_stage(op, ctx)

    def transmit(self, item, **kw):
        self.calls.append((self.node, "transmit", str(item)))
        return super().transmit(item, **kw)

    def receive(self, item, out, **kw):
        self.calls.append((self.node, "receive", str(item)))
        return super().receive(item, out, **kw)


class _RecordingEngine(Engine):
    def executor(self, node, cfg):
        return _Recording(node, self.model, cfg.parts(node), self.links, self.meter, self.memo)


def test_engine_dispatches_to_node_executors(random_tiny):
    links = make_links(RunConfig.from_paths(dict(steps=STEPS, channel="none", mcs="16qam-0.5")))
    engine = _RecordingEngine(random_tiny, links, load_profiles(None))
    _Recording.calls = []
    plan = build_plan("CIAG", RunConfig.from_paths({"steps": STEPS}), 0, False)
    engine.run(plan, PROMPTS, EngineConfig(num_steps=STEPS, guidance=2.0))
    calls = _Recording.calls
    # the transmitter runs on the source, channel and receiver on the destination
    assert ("UE", "transmit", "latent") in calls and ("ES1", "receive", "latent") in calls
    assert ("ES1", "transmit", "latent") in calls and ("UE", "receive", "latent") in calls
    stages = [(n, k) for n, what, k in calls if what == "stage"]
    assert stages == [("UE", "Z"), ("ES1", "T"), ("ES1", "D"), ("UE", "T"), ("UE", "D"), ("UE", "G")]


def test_unsplit_is_a_one_node_plan_run_by_the_engine(random_tiny):
    plan = build_unsplit_plan(False)
    assert plan.nodes() == ("UE",) and not plan.transfers()
    with pytest.raises(MegenError, match="the UE"):
        build_unsplit_plan(False, node="ES1")
    session = Session()
    kw = dict(num_steps=STEPS, strength=None, guidance=2.0, seed=3, session=session)
    out = run_unsplit(random_tiny, PROMPTS, **kw)
    assert out.image.shape == (2, 1, 32, 32) and out.latent is not None
    assert [s.name for s in out.stages] == ["T", "Z", f"D[0:{STEPS}](es)", "G"]
    assert out.flops()["UE"] > 0 and out.channel_uses()["total"] == 0
    again = run_unsplit(random_tiny, PROMPTS, **kw)
    assert torch.equal(out.image, again.image)
    other = run_unsplit(random_tiny, PROMPTS, **{**kw, "seed": 4})
    assert not torch.equal(out.image, other.image)


def test_a_plan_of_too_many_operations_is_refused_before_running():
    """A Python-built plan of 10^5 operations is refused at validation, not run (the TOML loader caps too)."""
    from megen.errors import MegenError
    from megen.protocols.engine import EngineConfig
    from megen.protocols.plan import MAX_PLAN_OPS, Plan, Stage
    from megen.protocols.validate import validate_plan

    huge = Plan("huge", tuple(Stage("T", "UE") for _ in range(100_000)), "UE")
    with pytest.raises(MegenError, match=f"at most {MAX_PLAN_OPS}"):
        validate_plan(huge, EngineConfig(num_steps=4), image_to_image=False)
