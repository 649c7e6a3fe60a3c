"""The plan engine and the named protocols: equivalence with channel none, accounting, validation."""

from __future__ import annotations

import math

import pytest
import torch

from megen.config import RunConfig
from megen.costs.profiles import load_profiles
from megen.data import prompt_for
from megen.errors import MegenError
from megen.protocols.builders import PROTOCOLS, build_plan
from megen.protocols.engine import EngineConfig
from megen.protocols.plan import Plan, Stage, Transfer
from megen.protocols.runner import make_links, run_protocol
from megen.protocols.unsplit import run_unsplit

PROMPTS = [prompt_for(7), prompt_for(3)]
STEPS = 6


@pytest.fixture(scope="module")
def reference():
    # 8-bit values, as from an image file, so a lossless PNG uplink returns them exactly
    return (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).round() / 255


def _cfg(**kw) -> RunConfig:
    base = dict(
        steps=STEPS, strength=0.5, guidance=3.0, seed=4, channel="none", image_codec="png", mcs="16qam-0.5"
    )
    base.update(kw)
    return RunConfig.from_paths(base)


def _unsplit(model, reference, cfg):
    """The unsplit pipeline (a one-node plan on the engine): ``(final latent, images)``."""
    out = run_unsplit(
        model,
        PROMPTS,
        reference,
        num_steps=cfg.task.steps,
        strength=cfg.task.strength,
        guidance=cfg.task.guidance,
        seed=cfg.task.seed,
    )
    return out.latent, out.image


@pytest.mark.equivalence
@pytest.mark.parametrize("protocol", ["central", "EIUG", "UIDCG", "DCSUC", "UIEG"])
@pytest.mark.parametrize("i2i", [False, True])
def test_noiseless_protocols_equal_unsplit(random_tiny, reference, protocol, i2i):
    ref = reference if i2i else None
    cfg = _cfg(protocol=protocol)
    run = run_protocol(cfg, PROMPTS, ref, model=random_tiny)
    lat, img = _unsplit(random_tiny, ref, cfg)
    assert run.output.latent is not None
    assert torch.allclose(run.output.latent, lat, atol=1e-6), protocol
    if protocol != "DCSUC":  # DCSUC's image is the UE's completion of a sketch
        # PNG over an error-free link: 8-bit quantisation only
        assert torch.allclose(run.images, img, atol=0.5 / 255 + 1e-6)


@pytest.mark.equivalence
def test_ciag_with_es_denoiser_equals_unsplit_at_every_split(random_tiny, reference):
    lat, img = _unsplit(random_tiny, reference, _cfg())
    start = random_tiny.start_step(STEPS, 0.5)
    for k in range(start, STEPS + 1):
        run = run_protocol(
            _cfg(protocol="CIAG", ue_model="es", split_step=k), PROMPTS, reference, model=random_tiny
        )
        assert torch.allclose(run.output.latent, lat, atol=1e-6), f"split {k}"
        assert torch.allclose(run.images, img, atol=1e-6)


def test_ciag_default_small_ue_denoiser_differs(random_tiny, reference):
    lat, _ = _unsplit(random_tiny, reference, _cfg())
    run = run_protocol(_cfg(protocol="CIAG"), PROMPTS, reference, model=random_tiny)
    assert not torch.allclose(run.output.latent, lat, atol=1e-4)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_every_protocol_runs_on_a_noisy_channel(random_tiny, reference, protocol):
    cfg = _cfg(protocol=protocol, channel="rayleigh", snr_db=5.0, image_codec="jpeg")
    run = run_protocol(cfg, PROMPTS, reference, model=random_tiny)
    assert run.images.shape == (2, 1, 32, 32)
    assert torch.isfinite(run.images).all()
    s = run.summary()
    cu = s["channel_uses"]
    assert cu["total"] == cu["uplink"] + cu["downlink"] + cu["backhaul"]
    assert cu["total"] == sum(t.channel_uses for t in run.output.transfers)
    assert s["latency_s"] > 0 and s["energy_j"] > 0
    if protocol not in ("local", "local-i2i", "unsplit"):
        assert cu["total"] > 0
    else:
        assert cu["total"] == 0 and set(s["flops"]) == {"UE"}


def test_analog_seed_channel_uses_are_half_the_reals(random_tiny, reference):
    run = run_protocol(
        _cfg(protocol="EIUG", channel="awgn", snr_db=10.0), PROMPTS, reference, model=random_tiny
    )
    seeds = [t for t in run.output.transfers if t.item == "latent"]
    assert len(seeds) == 1
    numel = 4 * 8 * 8
    analog = len(PROMPTS) * math.ceil(numel / 2)
    # plus the power scales (float32 per item), sent digitally as control data (issue 10)
    side_info = seeds[0].channel_uses - analog
    assert 0 < side_info < analog and seeds[0].payload_bits == len(PROMPTS) * (32 + 32)


def test_pilots_are_counted_for_estimated_csi(random_tiny, reference):
    run = run_protocol(
        _cfg(protocol="UIEG", channel="rayleigh", csi="estimated", coherence_symbols=50, snr_db=10.0),
        PROMPTS,
        reference,
        model=random_tiny,
    )
    seed = next(t for t in run.output.transfers if t.item == "latent")
    data = len(PROMPTS) * 128
    assert seed.channel_uses > data


def test_parallel_latency_overlaps(random_tiny, reference):
    run = run_protocol(
        _cfg(protocol="DIUG", channel="awgn", snr_db=20.0), PROMPTS, reference, model=random_tiny
    )
    busy = run.output.latency_breakdown()
    assert run.output.latency_s < sum(busy.values())  # ES1 and ES2 worked at the same time


def test_parallel_sync_every_trades_backhaul_for_quality(random_tiny, reference):
    never = run_protocol(_cfg(protocol="UIDG", sync_every=0), PROMPTS, reference, model=random_tiny)
    every = run_protocol(_cfg(protocol="UIDG", sync_every=1), PROMPTS, reference, model=random_tiny)
    assert every.output.channel_uses()["backhaul"] > never.output.channel_uses()["backhaul"]


def test_snr_aware_changes_the_entry_step(random_tiny, reference):
    on = run_protocol(
        _cfg(protocol="CIAG", channel="awgn", snr_db=-5.0), PROMPTS, reference, model=random_tiny
    )
    off = run_protocol(
        _cfg(protocol="CIAG", channel="awgn", snr_db=-5.0, snr_aware=False),
        PROMPTS,
        reference,
        model=random_tiny,
    )
    assert on.output.snr_aware_entries and not off.output.snr_aware_entries
    node, planned, entry = on.output.snr_aware_entries[-1]
    assert entry <= planned


def test_flops_measured_per_node(random_tiny, reference):
    run = run_protocol(_cfg(protocol="CIAG", channel="none"), PROMPTS, reference, model=random_tiny)
    flops = run.output.flops()
    assert flops["UE"] > 0 and flops["ES1"] > 0


def test_invalid_plans_are_rejected_before_running(random_tiny):
    from megen.protocols.engine import Engine

    engine = Engine(random_tiny, make_links(_cfg()), load_profiles(None))
    cfg = EngineConfig(num_steps=STEPS)
    missing = Plan("bad", (Stage("T", "ES1"),), "UE")
    with pytest.raises(MegenError, match="needs 'prompt' on ES1"):
        engine.run(missing, PROMPTS, cfg)
    no_denoiser = Plan(
        "bad", (Stage("T", "UE"), Stage("Z", "UE"), Stage("D", "UE", denoiser="es"), Stage("G", "UE"))
    )
    with pytest.raises(MegenError, match="no ES denoiser"):
        engine.run(no_denoiser, PROMPTS, cfg)
    out_of_range = Plan(
        "bad", (Stage("T", "UE"), Stage("Z", "UE"), Stage("D", "UE", stop=99), Stage("G", "UE"))
    )
    with pytest.raises(MegenError, match="outside"):
        engine.run(out_of_range, PROMPTS, cfg)
    no_image = Plan("bad", (Transfer("prompt", "UE", "ES1", "digital"),))
    with pytest.raises(MegenError, match="never delivers"):
        engine.run(no_image, PROMPTS, cfg)


def test_custom_plan_any_split(random_tiny):
    """A user-built plan: ES runs steps 0..2, UE (with the ES denoiser) finishes."""
    from megen.protocols.engine import Engine

    plan = Plan(
        "custom",
        (
            Transfer("prompt", "UE", "ES1", "digital"),
            Stage("T", "ES1"),
            Stage("Z", "ES1"),
            Stage("D", "ES1", start=0, stop=2, denoiser="es"),
            Transfer("latent", "ES1", "UE", "analog"),
            Stage("T", "UE"),
            Stage("D", "UE", start=2, denoiser="es"),
            Stage("G", "UE"),
        ),
    )
    engine = Engine(random_tiny, make_links(_cfg()), load_profiles(None))
    cfg = EngineConfig(num_steps=STEPS, guidance=3.0, seed=4, ue_parts=frozenset({"text", "vae", "unet_es"}))
    out = engine.run(plan, PROMPTS, cfg)
    _, img = _unsplit(random_tiny, None, _cfg(seed=4))
    assert torch.allclose(out.image, img, atol=1e-6)


def test_bad_configs(random_tiny):
    with pytest.raises(ValueError, match="unknown protocol"):
        RunConfig.from_paths({"protocol": "nope"})
    with pytest.raises(MegenError, match="at least 2 edge servers"):
        run_protocol(_cfg(protocol="UIDG", num_es=1), PROMPTS, model=random_tiny)
    with pytest.raises(MegenError, match="split-step"):
        run_protocol(_cfg(protocol="CIAG", split_step=STEPS + 1), PROMPTS, model=random_tiny)
    with pytest.raises(MegenError, match="snr_db"):
        run_protocol(_cfg(protocol="CIAG", snr_db=500.0, channel="awgn"), PROMPTS, model=random_tiny)


def test_plans_are_plain_frozen_data():
    plan = build_plan("CIAG", RunConfig.from_paths({"steps": 25}), 10, True)
    with pytest.raises(AttributeError):
        plan.name = "x"  # type: ignore[misc]
    assert plan == build_plan("CIAG", RunConfig.from_paths({"steps": 25}), 10, True)


def test_central_link_adaptation_spends_fewer_channel_uses_at_high_snr(random_tiny, reference):
    uses = []
    for snr in (0.0, 10.0, 25.0):
        cfg = _cfg(protocol="central", channel="awgn", snr_db=snr, mcs=None, image_codec="jpeg")
        run = run_protocol(cfg, PROMPTS, reference, model=random_tiny)
        uses.append(run.output.channel_uses()["downlink"])
    assert uses[0] > uses[1] > uses[2]
