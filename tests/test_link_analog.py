"""Analog transmission: exactness at high SNR, channel-use accounting, per-item normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from megen.errors import MegenError
from megen.link.analog import SIDE_INFO_BITS_PER_ITEM, analog_channel_uses, transmit_analog
from megen.link.channels import ChannelConfig


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 7), (1, 3, 5, 5)])
def test_high_snr_returns_the_tensor(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3.0 + 1.0
    out = transmit_analog(x, ChannelConfig("awgn", 100.0), g)
    assert out.received.shape == x.shape and out.received.dtype == x.dtype
    assert torch.allclose(out.received, x, rtol=1e-4, atol=1e-4)
    per_item = x[0].numel()
    assert out.channel_uses == shape[0] * math.ceil(per_item / 2) == analog_channel_uses(per_item, shape[0])
    assert out.side_info_bits == SIDE_INFO_BITS_PER_ITEM * shape[0]
    assert out.pilot_symbols == 0


def test_ideal_link_is_exact() -> None:
    x = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    out = transmit_analog(x, ChannelConfig("none"), torch.Generator())
    assert torch.equal(out.received, x)
    assert float(out.noise_var.max()) == 0.0


@pytest.mark.theory
def test_reported_noise_matches_empirical_per_item() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 128, 128, generator=g)  # 8192 symbols per item: SNR estimate std ~0.05 dB
    x[1] *= 1000.0  # normalisation is per item: a loud item must not change the others' SNR
    x[2] *= 1e-3
    out = transmit_analog(x, ChannelConfig("awgn", 5.0, equalizer="zf", noise="genie"), g)
    err = (out.received - x).reshape(4, -1)
    measured = err.square().mean(dim=1)
    expected = out.noise_var.expand_as(x).reshape(4, -1).mean(dim=1)
    assert torch.allclose(measured, expected, rtol=0.05)
    rel_snr_db = 10 * torch.log10(x.reshape(4, -1).square().mean(dim=1) * 2 / (measured * 2))
    assert torch.allclose(rel_snr_db, torch.full((4,), 5.0), atol=0.15)
    assert torch.allclose(out.effective_snr_db, torch.full((4,), 5.0), atol=1e-4)


@pytest.mark.theory
def test_mmse_shrinks_and_lowers_mse_on_fading() -> None:
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = torch.randn(8, 4096, generator=torch.Generator().manual_seed(4))
    zf = transmit_analog(x, ChannelConfig("rayleigh", 5.0, coherence_symbols=16, equalizer="zf"), g1)
    mmse = transmit_analog(x, ChannelConfig("rayleigh", 5.0, coherence_symbols=16, equalizer="mmse"), g2)
    assert float((mmse.received - x).square().mean()) < float((zf.received - x).square().mean())
    assert float(mmse.gain.max()) <= 1.0
    # the unbiased view of the MMSE output is the ZF output (same noise draws)
    assert torch.allclose(mmse.received / mmse.gain, zf.received, rtol=1e-3, atol=1e-3)


def test_estimated_csi_counts_pilots() -> None:
    x = torch.randn(2, 100)
    cfg = ChannelConfig("rayleigh", 20.0, coherence_symbols=10, csi="estimated", pilots_per_block=2)
    out = transmit_analog(x, cfg, torch.Generator().manual_seed(5))
    assert out.pilot_symbols == 2 * math.ceil(50 / 8) * 2
    assert out.channel_uses == 2 * 50 + out.pilot_symbols


def test_zero_item_survives() -> None:
    x = torch.zeros(2, 6)
    x[1] = 1.0
    out = transmit_analog(x, ChannelConfig("awgn", 30.0), torch.Generator().manual_seed(6))
    assert torch.equal(out.received[0], torch.zeros(6))  # scale 0 in the side information
    assert float(out.noise_var.reshape(2, -1)[0].max()) == 0.0
    assert torch.allclose(out.received[1], x[1], atol=0.2)


@pytest.mark.parametrize(
    "x",
    [
        torch.tensor([[1.0, float("nan")]]),
        torch.tensor([[1.0, float("inf")]]),
        torch.ones(2, 3, dtype=torch.int64),
        torch.ones(2, 3, dtype=torch.complex64),
        torch.ones(0, 3),
        torch.ones(2, 0),
    ],
)
def test_bad_tensor_is_a_clear_error(x: torch.Tensor) -> None:
    with pytest.raises(MegenError):
        transmit_analog(x, ChannelConfig(), torch.Generator())
