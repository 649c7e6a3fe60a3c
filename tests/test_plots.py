"""Statistics behind the figures and the report: capacity bounds, thresholds, equal-quality comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from megen.analysis import equal_quality, threshold_snr
from megen.link.theory import capacity_channel_uses, ergodic_capacity
from megen.report.plots import _pareto

pytestmark = pytest.mark.theory


def test_awgn_capacity_closed_form():
    assert ergodic_capacity(0.0, "awgn") == pytest.approx(1.0)
    assert ergodic_capacity(10 * math.log10(3), "awgn") == pytest.approx(2.0)
    assert capacity_channel_uses(1000.0, 0.0, "awgn") == pytest.approx(1000.0)


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0, 20.0])
def test_rayleigh_capacity_matches_monte_carlo(snr_db: float):
    snr = 10 ** (snr_db / 10)
    rng = np.random.default_rng(1)
    n = 400_000
    g = rng.exponential(1.0, n)  # |h|^2 of CN(0, 1)
    samples = np.log2(1 + g * snr)
    tol = 4 * samples.std() / math.sqrt(n)
    assert ergodic_capacity(snr_db, "rayleigh") == pytest.approx(samples.mean(), abs=tol)
    assert ergodic_capacity(snr_db, "rayleigh") < ergodic_capacity(snr_db, "awgn")  # Jensen


def test_rician_between_rayleigh_and_awgn():
    for snr_db in (0.0, 10.0):
        c = ergodic_capacity(snr_db, "rician")
        assert ergodic_capacity(snr_db, "rayleigh") < c < ergodic_capacity(snr_db, "awgn")


def _cells(values, snrs=(-10.0, 0.0, 10.0, 20.0), free=None):
    rows = [
        {"series": "s", "label": "P", "protocol": "P", "channel": "awgn", "snr_db": s, "prompt_match_mean": v}
        for s, v in zip(snrs, values, strict=True)
    ]
    if free is not None:
        rows.append({"series": "s", "label": "P", "protocol": "P", "channel": "none", "snr_db": np.nan,
                     "prompt_match_mean": free})  # fmt: skip
    return pd.DataFrame(rows)


def test_threshold_is_bracketed_never_interpolated():
    t = threshold_snr(_cells([0.1, 0.5, 0.9, 1.0], free=1.0)).iloc[0]
    assert t["reference_from"] == "channel none"
    assert t["snr_db_below"] == "between 0 and 10 dB (grid too coarse)"
    t = threshold_snr(_cells([0.2, 0.5, 0.7, 0.8])).iloc[0]  # reference: the highest SNR
    assert t["reference_from"] == "20 dB" and t["threshold"] == pytest.approx(0.72)
    assert (t["bracket_low_db"], t["bracket_high_db"]) == (10.0, 20.0)
    assert threshold_snr(_cells([1.0, 1.0, 1.0, 1.0], free=1.0)).iloc[0]["snr_db_below"] == "above all"
    assert threshold_snr(_cells([0.1, 0.1, 0.1, 0.1], free=1.0)).iloc[0]["snr_db_below"] == "below all"
    assert threshold_snr(_cells([0.1, 1.0], snrs=(0.0, 10.0))).empty  # too few SNRs


def test_equal_quality_picks_cheapest_sufficient_baseline():
    base = dict(task="i2i", channel="awgn", snr_db=10.0, link_failures=0.0)
    agg = pd.DataFrame(
        [
            {**base, "label": "central (q=10)", "protocol": "central", "psnr_fidelity_db_mean": 20.0,
             "uses_total": 1000.0, "bits_total": 2000.0},
            {**base, "label": "central (q=50)", "protocol": "central", "psnr_fidelity_db_mean": 26.0,
             "uses_total": 2000.0, "bits_total": 4000.0},
            {**base, "label": "central", "protocol": "central", "psnr_fidelity_db_mean": 35.0,
             "uses_total": 5000.0, "bits_total": 10000.0},
            {**base, "label": "EIUG", "protocol": "EIUG", "psnr_fidelity_db_mean": 24.0,
             "uses_total": 1500.0, "bits_total": 100.0},
        ]
    )  # fmt: skip
    e = equal_quality(agg).iloc[0]
    assert e["baseline_label"] == "central (q=50)"
    assert e["baseline_uses_equal_quality"] == 2000.0
    assert e["capacity_uses"] == pytest.approx(4000.0 / math.log2(11.0))
    assert e["baseline_quality_equal_uses"] == 20.0


def test_pareto_front():
    x, y = _pareto(np.array([3.0, 1.0, 2.0, 4.0]), np.array([5.0, 1.0, 0.5, 6.0]))
    assert list(x) == [1.0, 3.0, 4.0] and list(y) == [1.0, 5.0, 6.0]
