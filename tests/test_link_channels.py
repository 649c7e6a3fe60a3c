"""Channels: conventions checked against theory (SNR, E|h|^2, equaliser noise) and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from megen.errors import MegenError
from megen.link.channels import (
    ChannelConfig,
    channel_uses_for,
    draw_fading,
    ebno_db_to_snr_db,
    pilot_symbols_for,
    snr_db_to_ebno_db,
    transmit_symbols,
)


def _qpsk(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    bits = torch.randint(0, 2, (batch, n, 2), generator=generator).to(torch.float32)
    return torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2.0)


@pytest.mark.theory
@pytest.mark.parametrize("snr_db", [-3.0, 10.0, 25.0])
def test_awgn_empirical_snr_within_0p1_db(snr_db: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = _qpsk(4, 300_000, g)  # 1.2e6 symbols
    rx = transmit_symbols(x, ChannelConfig("awgn", snr_db, equalizer="zf", noise="genie"), g)
    noise = rx.symbols - x
    measured_db = 10 * math.log10(float(x.abs().square().mean()) / float(noise.abs().square().mean()))
    assert abs(measured_db - snr_db) < 0.1
    n0 = 10 ** (-snr_db / 10)
    # circular: N0/2 per real dimension, uncorrelated
    assert float(noise.real.var()) == pytest.approx(n0 / 2, rel=0.01)
    assert float(noise.imag.var()) == pytest.approx(n0 / 2, rel=0.01)
    assert abs(float((noise.real * noise.imag).mean())) < 0.01 * n0
    assert float(rx.noise_var.mean()) == pytest.approx(n0)
    assert rx.channel_uses == x.numel()


@pytest.mark.theory
def test_awgn_mmse_is_scaled_unbiased_estimate() -> None:
    g = torch.Generator().manual_seed(2)
    x = _qpsk(2, 200_000, g)
    rx = transmit_symbols(x, ChannelConfig("awgn", 0.0, equalizer="mmse", noise="genie"), g)
    assert float(rx.gain.mean()) == pytest.approx(0.5)  # 1 / (1 + N0) with N0 = 1
    residual = rx.unbiased - x
    assert float(residual.abs().square().mean()) == pytest.approx(1.0, rel=0.01)


@pytest.mark.theory
@pytest.mark.parametrize("kind", ["rayleigh", "rician"])
def test_fading_unit_mean_power_within_2_percent(kind: str) -> None:
    g = torch.Generator().manual_seed(3)
    cfg = ChannelConfig(kind, 10.0, k_factor_db=6.0)
    h = draw_fading(cfg, 50, 4_000, g)  # 2e5 coefficients: std of the mean power ~0.2%
    assert float(h.abs().square().mean()) == pytest.approx(1.0, rel=0.02)
    if kind == "rayleigh":
        # CN(0, 1): E h = 0, |h|^2 exponential with variance 1
        assert abs(complex(h.mean())) < 0.01
        assert float(h.abs().square().var()) == pytest.approx(1.0, rel=0.03)
    else:
        k = 10**0.6
        assert float(h.real.mean()) == pytest.approx(math.sqrt(k / (k + 1)), rel=0.01)


@pytest.mark.theory
def test_block_fading_constant_within_coherence_block() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.ones(3, 250, dtype=torch.complex64)
    cfg = ChannelConfig("rayleigh", 100.0, coherence_symbols=50, equalizer="zf")
    rx = transmit_symbols(x, cfg, g)
    nv = rx.noise_var.reshape(3, 5, 50)  # noise_var = N0 / |h|^2 is constant inside each block
    assert torch.allclose(nv, nv[:, :, :1].expand_as(nv), rtol=1e-6, atol=0.0)
    assert not torch.allclose(nv[:, 0], nv[:, 1], rtol=1e-3, atol=0.0)
    assert torch.allclose(rx.symbols, x, atol=1e-3)


@pytest.mark.theory
def test_estimated_csi_reported_noise_matches_residual() -> None:
    g = torch.Generator().manual_seed(5)
    x = _qpsk(8, 20_000, g)
    cfg = ChannelConfig(
        "rayleigh", 5.0, coherence_symbols=20, csi="estimated", pilots_per_block=2, equalizer="zf"
    )
    rx = transmit_symbols(x, cfg, g)
    normalised = (rx.unbiased - x).abs().square() / rx.noise_var
    assert float(normalised.mean()) == pytest.approx(1.0, rel=0.03)
    blocks = math.ceil(20_000 / 18)
    assert rx.pilot_symbols == 8 * blocks * 2
    assert rx.channel_uses == 8 * (20_000 + blocks * 2)


def test_ideal_link_is_exact_passthrough() -> None:
    g = torch.Generator().manual_seed(6)
    x = _qpsk(2, 100, g)
    rx = transmit_symbols(x, ChannelConfig("none", math.inf), g)
    assert torch.equal(rx.symbols, x)
    assert float(rx.noise_var.max()) == 0.0
    assert math.isinf(float(rx.effective_snr_db[0]))


def test_pilot_accounting() -> None:
    cfg = ChannelConfig("rician", 10.0, coherence_symbols=10, csi="estimated", pilots_per_block=3)
    assert pilot_symbols_for(14, cfg) == 6  # 7 data symbols per block -> 2 blocks
    assert channel_uses_for(14, cfg) == 20
    assert pilot_symbols_for(14, ChannelConfig("rayleigh", 10.0)) == 0
    assert channel_uses_for(0, cfg) == 0


def test_ebno_conversion() -> None:
    assert ebno_db_to_snr_db(0.0, 4, 0.5) == pytest.approx(10 * math.log10(2.0))
    assert snr_db_to_ebno_db(ebno_db_to_snr_db(3.0, 6, 0.75), 6, 0.75) == pytest.approx(3.0)
    with pytest.raises(MegenError):
        ebno_db_to_snr_db(float("nan"), 2)
    with pytest.raises(MegenError):
        ebno_db_to_snr_db(1.0, 2, 1.5)


def test_config_roundtrip() -> None:
    cfg = ChannelConfig(
        "rician", 3.0, coherence_symbols=64, k_factor_db=9.0, csi="estimated", pilots_per_block=2
    )
    assert ChannelConfig(**cfg.to_dict()) == cfg
    assert cfg.with_snr_db(7.0).snr_db == 7.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"snr_db": float("nan")},
        {"snr_db": float("inf")},
        {"kind": "awgn", "snr_db": -float("inf")},
        {"kind": "fading"},
        {"equalizer": "ml"},
        {"csi": "genie"},
        {"coherence_symbols": 0},
        {"coherence_symbols": -5},
        {"kind": "rayleigh", "csi": "estimated", "pilots_per_block": 0},
        {"kind": "rayleigh", "csi": "estimated", "coherence_symbols": 4, "pilots_per_block": 4},
        {"k_factor_db": float("nan")},
        {"snr_db": "loud"},
    ],
)
def test_bad_channel_config_is_a_clear_error(kwargs: dict) -> None:
    with pytest.raises(MegenError):
        ChannelConfig(**kwargs)


def test_transmit_rejects_real_input() -> None:
    with pytest.raises(MegenError, match="complex"):
        transmit_symbols(torch.ones(2, 3), ChannelConfig(), torch.Generator())
