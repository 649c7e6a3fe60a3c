"""The receiver's noise-variance estimate (no genie by default): bias, use, pilots, genie option."""

from __future__ import annotations

import math

import pytest
import torch

from megen.config import RunConfig
from megen.link.analog import transmit_analog
from megen.link.channels import ChannelConfig, complex_normal, estimate_noise_variance, transmit_symbols


@pytest.mark.theory
@pytest.mark.parametrize("csi", [None, "perfect", "estimated"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_noise_estimate_is_unbiased(csi, snr_db):
    """AWGN (``csi`` None) and Rayleigh: mean over 64 items within 4 sigma of N0, each item within 6.

    ``sigma`` per item is ``sqrt(2 / N0 + 1) / sqrt(n)`` relative (the cross term ``2 Re(x w*)``
    dominates at high SNR), so a pure noise estimate from 4000 unit-power symbols is within ~7% at 10 dB.
    """
    g = torch.Generator().manual_seed(3)
    b, n, pilots = 64, 4000, 4
    n0 = 10 ** (-snr_db / 10)
    x = torch.polar(torch.ones(b, n), torch.rand(b, n, generator=g) * 2 * math.pi)
    h = torch.ones(b, n, dtype=torch.complex64) if csi is None else complex_normal((b, n), 1.0, g)
    y = h * x + complex_normal((b, n), n0, g)
    g_rx = h if csi != "estimated" else h + complex_normal((b, n), n0 / pilots, g)
    share = 1.0 / pilots if csi == "estimated" else 0.0
    power = None if csi is None else g_rx.abs().square()
    est = estimate_noise_variance(y, x != 0, power, share).reshape(b) / n0
    sigma = math.sqrt(2 / n0 + 1) / math.sqrt(n) * (1 if csi is None else 1.5)
    assert abs(float(est.mean()) - 1) < 4 * sigma / math.sqrt(b)
    assert float((est - 1).abs().max()) < 6 * sigma


def test_padding_symbols_do_not_bias_the_estimate():
    g = torch.Generator().manual_seed(4)
    x = torch.polar(torch.ones(2, 8000), torch.rand(2, 8000, generator=g) * 6.28)
    x[1, 4000:] = 0  # item 1 is half as long: the rest of its row is padding, sent with no energy
    rx = transmit_symbols(x, ChannelConfig("awgn", 5.0, equalizer="zf"), g)
    assert torch.allclose(rx.noise_var.reshape(2), torch.full((2,), 10**-0.5), rtol=0.1)


def test_pilots_are_counted_in_channel_uses():
    g = torch.Generator().manual_seed(5)
    cfg = ChannelConfig("rayleigh", 5.0, coherence_symbols=100, csi="estimated", pilots_per_block=4)
    rx = transmit_symbols(torch.ones(3, 960, dtype=torch.complex64), cfg, g)
    assert rx.pilot_symbols == 3 * 10 * 4 and rx.channel_uses == 3 * 960 + rx.pilot_symbols


def test_estimate_used_and_genie_optional():
    g = torch.Generator().manual_seed(1)
    x = torch.polar(torch.ones(2, 5000), torch.rand(2, 5000, generator=g) * 6.28)
    est = transmit_symbols(x, ChannelConfig("awgn", 3.0), torch.Generator().manual_seed(2))
    genie = transmit_symbols(x, ChannelConfig("awgn", 3.0, noise="genie"), torch.Generator().manual_seed(2))
    n0 = 10 ** (-0.3)
    assert torch.equal(genie.noise_var, torch.full((2, 1), n0, dtype=torch.float32))
    assert not torch.equal(est.noise_var, genie.noise_var)
    assert torch.allclose(est.noise_var, genie.noise_var, rtol=0.05)
    assert torch.allclose(est.gain, 1.0 / (1.0 + est.noise_var))  # MMSE uses the estimate
    assert torch.allclose(est.unbiased, genie.unbiased, atol=1e-5)  # same draws, same channel


def test_run_defaults_estimate_and_count_pilots():
    cfg = RunConfig.from_paths({"channel": "rayleigh"})
    ch = cfg.links.uplink.channel_config()
    assert (ch.csi, ch.noise) == ("estimated", "estimated")
    assert RunConfig.from_paths({"noise": "genie"}).links.downlink.receiver.noise == "genie"
    out = transmit_analog(torch.randn(1, 2 * 960), ch, torch.Generator().manual_seed(0))
    assert out.pilot_symbols == math.ceil(960 / 96) * 4 and out.channel_uses == 960 + out.pilot_symbols


def test_estimated_noise_costs_uieg_under_half_a_db_at_0_db(random_tiny):
    from megen.data import prompt_for
    from megen.protocols.runner import run_protocol

    prompts = [prompt_for(i) for i in range(4)]
    psnr = {}
    for noise in ("genie", "estimated"):
        cfg = RunConfig.from_paths(
            {"protocol": "UIEG", "channel": "awgn", "snr_db": 0.0, "steps": 6, "seed": 2, "noise": noise}
        )
        run = run_protocol(cfg, prompts, model=random_tiny)
        values = run.quality["psnr_fidelity_db"]
        assert None not in values
        psnr[noise] = sum(v for v in values if v is not None) / len(values)
    assert psnr["genie"] != psnr["estimated"]  # the estimate is really used
    assert abs(psnr["genie"] - psnr["estimated"]) < 0.5
