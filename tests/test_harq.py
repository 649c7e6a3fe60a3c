"""HARQ: chase combining gains 10 log10(R) dB, incremental redundancy does at least as well, and every
transmission is counted (channel uses, pilots, transmissions; control data and side information too)."""

from __future__ import annotations

import math

import pytest
import torch

from megen.config import RunConfig
from megen.errors import MegenError
from megen.link.channels import ChannelConfig, channel_uses_for
from megen.link.digital import transmit_bits
from megen.link.harq import NO_HARQ, Harq
from megen.link.mcs_tables import lookup
from megen.protocols.links import LinkSet

SCHEME = lookup("qam64", 4)  # QPSK 308/1024
TB_BITS = 256


def _residual_bler(harq: Harq, snr_db: float, blocks: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    payloads = [torch.randint(0, 2, (TB_BITS,), generator=g) for _ in range(blocks)]
    results = transmit_bits(payloads, SCHEME, ChannelConfig("awgn", snr_db), g, harq=harq)
    return sum(not r.ok for r in results) / blocks


def _threshold_db(harq: Harq, low: float, high: float, blocks: int, steps: int = 6) -> float:
    """10%-BLER SNR by bisection on [low, high] (the residual BLER falls with SNR)."""
    for step in range(steps):
        mid = (low + high) / 2
        if _residual_bler(harq, mid, blocks, seed=1000 * step + int(mid * 100) + 7) > 0.1:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def test_policy_and_validation() -> None:
    assert [Harq("ir", 6).redundancy_version(t) for t in range(6)] == [0, 2, 3, 1, 0, 2]
    assert [Harq("chase", 3).redundancy_version(t) for t in range(3)] == [0, 0, 0]
    assert (Harq("off", 8).attempts, Harq("chase", 3).attempts, NO_HARQ.attempts) == (1, 3, 1)
    for bad, match in [({"mode": "arq"}, "unknown HARQ mode"), ({"max_transmissions": 0}, "1..16")]:
        with pytest.raises(MegenError, match=match):
            Harq(**bad)


@pytest.mark.theory
def test_two_fold_chase_gains_3_db() -> None:
    """Fast variant of the issue's bar (R = 2; R = 4 in the slow test)."""
    single = _threshold_db(NO_HARQ, -4.0, 2.0, blocks=120, steps=5)
    chase = _threshold_db(Harq("chase", 2), -7.0, -1.0, blocks=120, steps=5)
    assert abs(single - chase - 10 * math.log10(2)) <= 0.7, (single, chase)


@pytest.mark.slow
@pytest.mark.theory
@pytest.mark.parametrize("copies", [2, 4])
def test_chase_gains_10_log10_r_and_ir_is_at_least_as_good(copies: int) -> None:
    single = _threshold_db(NO_HARQ, -4.0, 2.0, blocks=400, steps=7)
    chase = _threshold_db(Harq("chase", copies), -10.0, 0.0, blocks=400, steps=7)
    assert abs(single - chase - 10 * math.log10(copies)) <= 0.7, (single, chase)
    for offset in (-1.0, -0.5, 0.0, 0.5):
        snr = chase + offset
        b_chase = _residual_bler(Harq("chase", copies), snr, 300, seed=11)
        b_ir = _residual_bler(Harq("ir", copies), snr, 300, seed=12)
        sigma = math.sqrt(max(b_chase, 1 / 300) * (1 - b_chase) / 300)
        assert b_ir <= b_chase + 3 * sigma, (snr, b_ir, b_chase)


def test_ir_beats_chase_at_one_point() -> None:
    snr = -4.0  # chase(2) is near its threshold here; IR's new parity (RV 2) decodes nearly all
    b_chase = _residual_bler(Harq("chase", 2), snr, 80, seed=5)
    b_ir = _residual_bler(Harq("ir", 2), snr, 80, seed=6)
    assert b_ir <= b_chase


@pytest.mark.parametrize("mode", ["chase", "ir"])
def test_every_transmission_is_counted_pilots_included(mode: str) -> None:
    channel = ChannelConfig("rayleigh", -25.0, coherence_symbols=50, csi="estimated", pilots_per_block=4)
    g = torch.Generator().manual_seed(2)
    payloads = [torch.randint(0, 2, (n,), generator=g) for n in (300, 700)]
    results = transmit_bits(payloads, SCHEME, channel, g, harq=Harq(mode, 3))
    for r in results:  # hopeless SNR: every block fails all three transmissions (an outage)
        assert not r.ok and r.transmissions == 3
        assert r.channel_uses == 3 * channel_uses_for(r.plan.num_symbols, channel)
        assert r.pilot_symbols == r.channel_uses - 3 * r.plan.num_symbols > 0
    good = transmit_bits(payloads, SCHEME, ChannelConfig("awgn", 20.0), g, harq=Harq(mode, 3))
    assert all(r.ok and r.transmissions == 1 for r in good)
    assert [r.channel_uses for r in good] == [r.plan.num_symbols for r in good]


def test_off_sends_once_and_stays_failed() -> None:
    g = torch.Generator().manual_seed(4)
    r = transmit_bits([torch.ones(200)], SCHEME, ChannelConfig("awgn", -15.0), g, harq=Harq("off", 4))[0]
    assert not r.ok and r.transmissions == 1 and r.channel_uses == r.plan.num_symbols


def _links(**paths) -> LinkSet:
    return LinkSet(RunConfig.from_paths(paths).links)


def test_control_data_uses_harq_and_fails_honestly() -> None:
    prompts = ["a red bicycle", "a cat"]
    bad = _links(channel="awgn", snr_db=-25.0, harq="chase", max_transmissions=3)
    sent = bad.send("prompt", prompts, "digital", "uplink", torch.Generator().manual_seed(0))
    assert not sent.ok and sent.transmissions == 3 * len(prompts) and sent.failures >= len(prompts)
    one = bad.send_control(
        [p.encode() + bytes(8) for p in prompts], "uplink", torch.Generator().manual_seed(0)
    )
    assert sent.channel_uses == one.channel_uses  # same sizes, same number of transmissions
    good = _links(channel="awgn", snr_db=10.0)
    sent = good.send("prompt", prompts, "digital", "uplink", torch.Generator().manual_seed(0))
    assert sent.ok and sent.transmissions == len(prompts) and sent.value == prompts
    assert (
        good.control_mcs_for("uplink").spectral_efficiency > bad.control_mcs_for("uplink").spectral_efficiency
    )


def test_analog_side_information_costs_channel_uses() -> None:
    links = _links(channel="awgn", snr_db=5.0)
    x = torch.randn(2, 4, 8, 8)
    sent = links.send("latent", x, "analog", "uplink", torch.Generator().manual_seed(0))
    analog_uses = 2 * x[0].numel() // 2
    # one control block per item's power scale; a short block at the edge of its MCS may need a retry
    assert sent.ok and 2 <= sent.transmissions <= 8
    assert sent.channel_uses > analog_uses and sent.payload_bits >= 2 * 32
    hopeless = _links(channel="awgn", snr_db=-28.0, max_transmissions=2)
    sent = hopeless.send("latent", x, "analog", "uplink", torch.Generator().manual_seed(0))
    assert not sent.ok and sent.transmissions == 4  # side information lost after 2 tries each: outage


def test_fixed_mcs_accepts_table_entries() -> None:
    links = _links(mcs="qam64lowse:0", channel="awgn", snr_db=-10.0)
    assert links.mcs_for("downlink") == lookup("qam64lowse", 0)
    with pytest.raises(MegenError, match="unknown MCS table"):
        _links(mcs="qam16:1")
