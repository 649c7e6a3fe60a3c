"""FLOPs of denoising scaled per UNet call equal the FLOP counter's own count."""

from __future__ import annotations

import pytest
import torch

from megen.config import RunConfig
from megen.costs.flops import FlopMeter, measure_flops
from megen.protocols.runner import run_protocol
from megen.session import Session


def test_meter_scales_a_repeated_call_by_the_number_of_calls():
    a = torch.ones(8, 8)

    def calls(k: int):
        return lambda: [a @ a for _ in range(k)]

    meter = FlopMeter()
    _, two = meter.run(("stage", 2), calls(2), per_call=(("mm",), 2))
    _, five = meter.run(("stage", 5), calls(5), per_call=(("mm",), 5))
    assert five == measure_flops(calls(5))[1] == 5 * two // 2


@pytest.mark.parametrize("protocol", ["CIAG", "UIEG"])
def test_receiver_side_entry_flops_equal_a_fresh_measurement(protocol, random_tiny):
    """The second SNR's hop-and-denoise enters at another step: its FLOPs are derived per call, and
    equal those a fresh session measures with the counter."""

    def cfg(snr):
        paths = {"protocol": protocol, "channel": "awgn", "snr_db": snr, "steps": 8}
        return RunConfig.from_paths(paths)

    shared = Session()
    run_protocol(cfg(0.0), ["a photo of a bag"], model=random_tiny, session=shared)
    derived = run_protocol(cfg(12.0), ["a photo of a bag"], model=random_tiny, session=shared)
    fresh = run_protocol(cfg(12.0), ["a photo of a bag"], model=random_tiny, session=Session())
    assert [(s.name, s.flops) for s in derived.output.stages] == [
        (s.name, s.flops) for s in fresh.output.stages
    ]
    assert any("D[" in s.name for s in derived.output.stages)
