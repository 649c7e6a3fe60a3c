"""Baselines matched to where the image lands, outages and the fallback: plans, engine, JSON, rows."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from megen.config import RunConfig
from megen.data import prompt_for
from megen.errors import MegenError
from megen.experiments.sweep import BatchTask, rows_from_run
from megen.protocols.builders import PROTOCOLS, baselines_for, build_plan
from megen.protocols.engine import EngineConfig
from megen.protocols.plan import Plan, Stage
from megen.protocols.runner import run_protocol
from megen.protocols.validate import validate_plan
from megen.store import ResultsStore

PROMPTS = [prompt_for(7), prompt_for(3)]
STEPS = 4


def _cfg(**kw) -> RunConfig:
    base = dict(steps=STEPS, guidance=3.0, seed=4, channel="none", image_codec="png", mcs="16qam-0.5")
    base.update(kw)
    return RunConfig.from_paths(base)


def _eight_bit(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round() / 255


def test_baselines_are_registered_with_their_destinations():
    cfg = _cfg()
    dest = {name: build_plan(name, cfg, 0, False).result_node for name in ("central-es", "local-upload")}
    assert dest == {"central-es": "ES1", "local-upload": "ES1"}
    fb = build_plan("central-fallback", cfg, 0, False)
    assert fb.result_node == "UE" and fb.ops == build_plan("central", cfg, 0, False).ops
    assert [op.kind for op in fb.fallback if isinstance(op, Stage)] == ["T", "Z", "D", "G"]
    assert [op.kind for op in build_plan("central-fallback", cfg, 0, True).fallback][0] == "E"
    assert not any(t.dst == "UE" for t in build_plan("central-es", cfg, 0, True).transfers())
    assert set(baselines_for("ES1")) <= set(PROTOCOLS) and set(baselines_for("UE")) <= set(PROTOCOLS)
    assert build_plan("UIEG", cfg, 0, False).result_node == "ES1"  # UIEG is compared with the ES baselines


def test_a_fallback_that_makes_no_image_is_refused():
    plan = build_plan("central-fallback", _cfg(), 0, False)
    broken = Plan(plan.name, plan.ops, "UE", "", fallback=(Stage("T", "UE"),))
    with pytest.raises(MegenError, match="fallback never makes an image"):
        validate_plan(broken, EngineConfig(num_steps=STEPS), image_to_image=False)


def test_noiseless_central_es_equals_central_and_nothing_comes_down(random_tiny):
    es = run_protocol(_cfg(protocol="central-es"), PROMPTS, model=random_tiny)
    central = run_protocol(_cfg(protocol="central"), PROMPTS, model=random_tiny)
    assert torch.equal(_eight_bit(es.images), central.images)  # PNG over the ideal link: 8-bit pixels
    assert es.output.delivered_to == "ES1" and central.output.delivered_to == "UE"
    uses = es.output.channel_uses()
    assert uses["downlink"] == 0 and uses["uplink"] == central.output.channel_uses()["uplink"] > 0
    assert es.summary()["outage"] == [False, False] and es.summary()["delivered_to"] == "ES1"


def test_local_upload_sends_the_local_image_up(random_tiny, reference):
    up = run_protocol(_cfg(protocol="local-upload"), PROMPTS, reference, model=random_tiny)
    local = run_protocol(_cfg(protocol="local"), PROMPTS, reference, model=random_tiny)
    assert torch.equal(up.images, _eight_bit(local.images))  # PNG over the ideal link; no reference used
    assert [t.item for t in up.output.transfers] == ["image"]
    assert up.output.channel_uses()["uplink"] > 0 and up.output.delivered_to == "ES1"


def test_local_i2i_is_the_ue_alone_from_its_reference(random_tiny, reference):
    """``local-i2i`` = ``central-fallback``'s fallback: image-to-image on the UE, no link."""
    alone = run_protocol(_cfg(protocol="local-i2i"), PROMPTS, reference, model=random_tiny)
    local = run_protocol(_cfg(protocol="local"), PROMPTS, reference, model=random_tiny)
    assert not alone.output.transfers and alone.output.delivered_to == "UE"
    assert not torch.equal(alone.images, local.images)  # the reference enters
    up = run_protocol(_cfg(protocol="local-i2i-upload"), PROMPTS, reference, model=random_tiny)
    assert torch.equal(up.images, _eight_bit(alone.images)) and up.output.delivered_to == "ES1"
    t2i = run_protocol(_cfg(protocol="local-i2i"), PROMPTS, model=random_tiny)  # no reference: local's plan
    assert torch.equal(t2i.images, run_protocol(_cfg(protocol="local"), PROMPTS, model=random_tiny).images)


@pytest.fixture(scope="module")
def reference():
    return (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).round() / 255


@pytest.fixture(scope="module")
def deep_outage(random_tiny):
    """central and central-fallback where 16-QAM r=1/2 cannot work (-25 dB AWGN)."""
    cfg = {"channel": "awgn", "snr_db": -25.0}
    return {
        p: run_protocol(_cfg(protocol=p, **cfg), PROMPTS, model=random_tiny)
        for p in ("central", "central-fallback")
    }


def test_outage_is_reported_and_its_metrics_are_blank(deep_outage):
    run = deep_outage["central"]
    assert run.output.outage == [True, True] and run.output.fallback == [False, False]
    assert all(v is None for vals in run.quality.values() for v in vals)
    summary = run.summary()
    assert summary["outage"] == [True, True] and summary["outage_rate"] == 1.0
    assert summary["quality"]["psnr_fidelity_db"] is None and summary["delivered_to"] == "UE"
    json.dumps(summary)  # still one JSON object


def test_fallback_shows_the_ue_image_after_the_outage_is_known(deep_outage, random_tiny):
    central, fb = deep_outage["central"], deep_outage["central-fallback"]
    local = run_protocol(_cfg(protocol="local"), PROMPTS, model=random_tiny)
    assert fb.output.outage == [False, False] and fb.output.fallback == [True, True]
    assert torch.equal(fb.images.cpu(), local.images.cpu())
    assert fb.quality["psnr_fidelity_db"][0] is not None  # the fallback image is measured
    first_failure = min(t.end_s for t in fb.output.transfers if not t.ok)
    ue_stages = [s for s in fb.output.stages if s.node == "UE"]
    assert [s.name[0] for s in ue_stages] == ["T", "Z", "D", "G"]
    assert min(s.start_s for s in ue_stages) >= first_failure  # generated once the outage is known
    assert fb.output.latency_s == pytest.approx(max(s.end_s for s in ue_stages))
    ue_energy = sum(s.energy_j for s in ue_stages)
    assert fb.output.energy_j == pytest.approx(central.output.energy_j + ue_energy)
    assert fb.output.flops()["UE"] == pytest.approx(local.output.flops()["UE"])


def test_channel_uses_add_up_over_every_transfer_control_included(deep_outage):
    out = deep_outage["central"].output
    assert out.channel_uses()["total"] == sum(t.channel_uses for t in out.transfers)
    prompt = [t for t in out.transfers if t.item == "prompt"]
    assert len(prompt) == 1 and prompt[0].channel_uses > 0
    assert out.payload_bits()["total"] == sum(t.payload_bits for t in out.transfers)


def test_rows_carry_outage_fallback_and_destination(deep_outage):
    task = BatchTask("k", "{}", "t2i", 0, (0, 1), 4, 0)
    rows = rows_from_run(task, deep_outage["central"], [None, None], [7, 3], 0.1)
    assert [(r.outage, r.fallback, r.delivered_to) for r in rows] == [(1, 0, "UE"), (1, 0, "UE")]
    assert rows[0].psnr_fidelity_db is None and rows[0].prompt_match is None
    rows = rows_from_run(task, deep_outage["central-fallback"], [None, None], [7, 3], 0.1)
    assert [(r.outage, r.fallback) for r in rows] == [(0, 1), (0, 1)]
    assert rows[0].psnr_fidelity_db is not None


def test_a_results_file_of_the_old_schema_is_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema", "megen-sweep"), ("schema_version", "1")]
        )
    conn.close()
    with pytest.raises(MegenError, match="schema version 1.*re-run the sweep"):
        ResultsStore.open(path)
