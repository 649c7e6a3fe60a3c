"""Matched baselines, bracketed thresholds and outage probabilities (issue 10, items 3, 6 and 7)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from megen.analysis import BASELINES, bracket, equal_quality, threshold_snr, with_outcome_columns
from megen.analysis.aggregate import outage_line, wilson_ci95
from megen.analysis.cells import known_delivered_to
from megen.link.theory import capacity_channel_uses


def _cell(protocol, label=None, *, psnr, uses, bits=1000.0, outage=0.0, dest="UE", snr=0.0, **kw):
    return {
        "label": label or protocol,
        "protocol": protocol,
        "task": "i2i",
        "channel": "awgn",
        "snr_db": snr,
        "psnr_fidelity_db_mean": psnr,
        "uses_total": uses,
        "bits_total": bits,
        "link_failures": 0.0,
        "outage_mean": outage,
        "destination": dest,
        "transmission": "analog",
        **kw,
    }


def _matched_frame():
    return pd.DataFrame(
        [
            _cell("central", "central (q=90)", psnr=40.0, uses=3000.0, bits=6000.0),
            _cell("central", "central (png)", psnr=99.0, uses=2000.0, bits=4000.0),  # lossless, cheaper
            _cell("central-fallback", psnr=99.0, uses=2500.0, bits=4000.0),
            _cell("central-es", "central-es (q=10)", psnr=20.0, uses=200.0, bits=300.0, dest="ES"),
            _cell("central-es", "central-es (q=50)", psnr=30.0, uses=400.0, bits=500.0, dest="ES"),
            _cell("local-upload", psnr=35.0, uses=1500.0, bits=4000.0, dest="ES"),
            _cell("UIEG", psnr=28.0, uses=600.0, dest="ES"),
            _cell("EIUG", psnr=28.0, uses=600.0, dest="UE"),
        ]
    )


def test_protocols_compare_only_with_the_baselines_of_their_destination():
    eq = equal_quality(_matched_frame()).set_index("protocol")
    assert set(eq.index) == {"UIEG", "EIUG"}  # baselines are never compared against baselines
    uieg, eiug = eq.loc["UIEG"], eq.loc["EIUG"]
    assert uieg["destination"] == "ES" and uieg["baselines"] == "central-es,local-upload,local-i2i-upload"
    assert uieg["baseline_label"] == "central-es (q=50)"  # cheapest ES-side variant reaching 28 dB
    assert uieg["baseline_uses_equal_quality"] == 400.0
    assert uieg["baseline_quality_equal_uses"] == 30.0  # best ES variant within 600 uses
    assert uieg["capacity_uses"] == pytest.approx(capacity_channel_uses(500.0, 0.0, "awgn"))
    assert eiug["destination"] == "UE" and eiug["baselines"] == "central,central-fallback,local,local-i2i"
    assert eiug["baseline_label"] == "central (png)"  # cheapest over every codec, png included
    assert eiug["baseline_uses_equal_quality"] == 2000.0
    assert math.isnan(eiug["baseline_quality_equal_uses"])  # no UE-side variant fits in 600 uses


def test_the_ue_alone_is_a_baseline_at_every_snr_with_no_channel_uses():
    """``local-i2i`` crosses no link: its error-free cell beats a protocol it matches at any SNR."""
    agg = pd.DataFrame(
        [
            _cell("central", psnr=40.0, uses=3000.0, snr=-10.0),
            _cell("local-i2i", psnr=25.0, uses=0.0, bits=0.0, channel="none", snr=math.nan),
            _cell("central", "central (error-free)", psnr=99.0, uses=10.0, channel="none", snr=math.nan),
            _cell("EIUG", psnr=20.0, uses=600.0, snr=-10.0),
            _cell("CIAG", psnr=30.0, uses=900.0, snr=-10.0),
        ]
    )
    eq = equal_quality(agg).set_index("protocol")
    eiug, ciag = eq.loc["EIUG"], eq.loc["CIAG"]
    assert eiug["baseline_label"] == "local-i2i" and eiug["baseline_uses_equal_quality"] == 0.0
    assert eiug["baseline_quality_equal_uses"] == 25.0  # the UE alone fits in any budget
    assert ciag["baseline_label"] == "central"  # the UE alone falls short; error-free runs never count
    assert ciag["baseline_uses_equal_quality"] == 3000.0


def test_a_baseline_that_drops_more_images_is_not_equal_quality():
    agg = pd.DataFrame(
        [
            _cell("central", "central (mcs=a)", psnr=40.0, uses=500.0, outage=0.3),  # fine when delivered
            _cell("central", "central (mcs=b)", psnr=40.0, uses=900.0, outage=0.0),
            _cell("EIUG", psnr=30.0, uses=1000.0, outage=0.0),
        ]
    )
    e = equal_quality(agg).iloc[0]
    assert e["baseline_label"] == "central (mcs=b)" and e["baseline_outage_equal_quality"] == 0.0


def test_digital_latent_point_beside_the_analog_cell():
    agg = pd.DataFrame(
        [
            _cell("central", psnr=40.0, uses=3000.0),
            _cell("EIUG", psnr=28.0, uses=600.0),
            _cell("EIUG", "EIUG (digital, bits=4)", psnr=25.0, uses=900.0, transmission="digital"),
            _cell("EIUG", "EIUG (digital, bits=8)", psnr=27.0, uses=1700.0, transmission="digital"),
        ]
    )
    eq = equal_quality(agg).set_index("label")
    analog = eq.loc["EIUG"]
    assert analog["digital_label"] == "EIUG (digital, bits=8)"
    assert (analog["digital_uses"], analog["digital_quality"]) == (1700.0, 27.0)
    assert pd.isna(eq.loc["EIUG (digital, bits=4)"]["digital_label"])  # digital cells have no partner


def test_every_baseline_has_one_destination():
    assert set(BASELINES["UE"]).isdisjoint(BASELINES["ES"])
    assert known_delivered_to("UIEG") == "ES1" and known_delivered_to("UIDCG").startswith("ES")
    assert known_delivered_to("central") == "UE" and known_delivered_to("EIUG") == "UE"
    assert known_delivered_to("central-es") == "ES1"


@pytest.mark.parametrize(
    ("snrs", "bad", "text"),
    [
        ([-5, -4, -3, -2], [True, True, False, False], "between -4 and -3 dB"),
        ([-5, -4.5, -3.5], [True, True, False], "between -4.5 and -3.5 dB"),  # exactly 1 dB: located
        ([-10, -5, 0], [True, False, False], "between -10 and -5 dB (grid too coarse)"),
        ([-10, -9, -8], [False, False, False], "above all"),
        ([-10, -9, -8], [True, True, True], "below all"),
        ([-3, -2, -1, 0], [True, False, True, False], "between -1 and 0 dB"),  # the last crossing
    ],
)
def test_bracket_one_db_rule(snrs, bad, text):
    b = bracket(snrs, bad)
    assert b.text == text
    assert b.located == ("between" in text and "coarse" not in text)
    assert not any(ch.isdigit() for ch in text.split("between")[0])  # never a lone number


def test_threshold_reports_brackets_and_the_outage_cliff():
    snrs = np.arange(-6.0, 1.0)
    psnr = [np.nan, np.nan, 35.0, 38.0, 40.0, 40.0, 40.0]  # NaN: every image in outage
    outage = [1.0, 0.9, 0.4, 0.05, 0.0, 0.0, 0.0]
    agg = pd.DataFrame(
        {
            "series": "s",
            "label": "central",
            "protocol": "central",
            "destination": "UE",
            "channel": "awgn",
            "snr_db": snrs,
            "psnr_fidelity_db_mean": psnr,
            "outage_mean": outage,
        }
    )
    t = threshold_snr(agg, metric="psnr_fidelity_db").iloc[0]
    assert t["snr_db_below"] == "between -4 and -3 dB"  # 0.9 x 40 = 36 dB
    assert (t["bracket_low_db"], t["bracket_high_db"], t["bracket_gap_db"]) == (-4.0, -3.0, 1.0)
    assert t["outage_below"] == "between -4 and -3 dB"  # outage > 10% up to -4 dB
    assert t["destination"] == "UE"


def test_wilson_interval_of_the_outage_probability():
    lo, hi = wilson_ci95(0, 25)
    assert lo == 0.0 and hi == pytest.approx(0.1332, abs=1e-4)
    lo, hi = wilson_ci95(25, 25)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.1332, abs=1e-4)
    lo, hi = wilson_ci95(50, 100)  # symmetric about 1/2, close to the normal interval 1.96 * 0.05
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * 0.0962, abs=2e-3)
    assert all(math.isnan(x) for x in wilson_ci95(0, 0))


def test_wilson_interval_covers_the_true_probability():
    rng = np.random.default_rng(7)
    p, n, trials = 0.1, 40, 2000
    k = rng.binomial(n, p, trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_ci95(int(x), n) for x in k)])
    assert covered > 0.93  # nominal 95%; tolerance ~4 standard errors of 2000 trials


def test_outcome_columns_filled_for_databases_that_predate_them():
    old = pd.DataFrame({"protocol": ["central", "UIEG", "UIDCG"], "psnr_fidelity_db": [40.0, 30.0, 29.0]})
    df = with_outcome_columns(old)
    assert df["outage"].tolist() == [0.0, 0.0, 0.0]
    assert df["delivered_to"].tolist() == ["UE", "ES1", "ES2"]
    assert df["destination"].tolist() == ["UE", "ES", "ES"]
    new = pd.DataFrame(
        {"protocol": ["central-es", "central"], "outage": [1, 0], "delivered_to": ["ES1", None]}
    )
    df = with_outcome_columns(new)
    assert df["outage"].tolist() == [1.0, 0.0] and df["destination"].tolist() == ["ES", "UE"]
    line = outage_line(
        with_outcome_columns(pd.DataFrame({"protocol": ["central"] * 4, "outage": [1, 0, 0, 0]}))
    )
    assert line["outage_mean"] == 0.25 and line["outage_n"] == 4
    assert line["outage_lo"] < 0.25 < line["outage_hi"] and line["destination"] == "UE"


def test_a_genie_receiver_baseline_is_compared_only_with_a_genie_protocol():
    """The genie pair of the presets must not become the estimated protocol's cheapest baseline."""
    est, genie = (
        {"cfg_noise": "estimated", "cfg_csi": "estimated"},
        {"cfg_noise": "genie", "cfg_csi": "perfect"},
    )
    agg = pd.DataFrame(
        [
            _cell("central", "central", psnr=40.0, uses=900.0, **est),
            _cell("central", "central (csi=perfect, noise=genie)", psnr=40.0, uses=300.0, **genie),
            _cell("EIUG", "EIUG", psnr=30.0, uses=600.0, **est),
            _cell("EIUG", "EIUG (csi=perfect, noise=genie)", psnr=30.0, uses=600.0, **genie),
        ]
    )
    eq = equal_quality(agg).set_index("label")
    assert eq.loc["EIUG", "baseline_label"] == "central"
    assert eq.loc["EIUG", "baseline_uses_equal_quality"] == 900.0
    assert eq.loc["EIUG (csi=perfect, noise=genie)", "baseline_label"] == "central (csi=perfect, noise=genie)"


def test_a_wired_backhaul_is_a_series_labelled_by_its_backhaul():
    """Rows of UIDG with a wired backhaul on two channels are one series, ``UIDG (backhaul.channel=none)``."""
    from megen.analysis.cells import add_keys

    def row(channel, backhaul):
        wired = backhaul is not None
        return {
            "protocol": "UIDG",
            "task": "i2i",
            "channel": channel,
            "snr_db": 0.0,
            "cfg_protocol": "UIDG",
            "cfg_channel": None if wired else channel,
            "cfg_snr_db": 0.0,
            "cfg_uplink.channel": channel if wired else None,
            "cfg_downlink.channel": channel if wired else None,
            "cfg_backhaul.channel": backhaul,
        }

    df = add_keys(pd.DataFrame([row(c, b) for c in ("awgn", "rayleigh") for b in (None, "none")]))
    assert df["label"].tolist() == ["UIDG", "UIDG (backhaul.channel=none)"] * 2
    assert df["series"].nunique() == 2 and df["cell"].nunique() == 4


def test_a_wired_backhaul_series_is_measured_against_the_error_free_run_it_shares():
    """The wired series has no channel-``none`` run of its own: every link ideal is the radio series' run."""
    from megen.analysis.cells import add_keys

    def cell(channel, snr_db, backhaul, accuracy):
        wired = backhaul is not None
        return {
            "protocol": "UIDG",
            "task": "i2i",
            "channel": channel,
            "snr_db": snr_db,
            "cfg_protocol": "UIDG",
            "cfg_channel": None if wired else channel,
            "cfg_snr_db": snr_db,
            "cfg_uplink.channel": channel if wired else None,
            "cfg_downlink.channel": channel if wired else None,
            "cfg_backhaul.channel": backhaul,
            "prompt_match_mean": accuracy,
        }

    rows = [cell("none", np.nan, None, 0.9)]
    rows += [cell("awgn", s, None, a) for s, a in zip((0.0, 1.0, 2.0), (0.5, 0.85, 0.7), strict=True)]
    rows += [cell("awgn", s, "none", a) for s, a in zip((0.0, 1.0, 2.0), (0.75, 0.78, 0.85), strict=True)]
    t = threshold_snr(add_keys(pd.DataFrame(rows))).set_index("label")
    assert t.loc["UIDG", "reference_from"] == "channel none"
    assert t.loc["UIDG (backhaul.channel=none)", "reference_from"] == "channel none (UIDG)"
    assert t.loc["UIDG (backhaul.channel=none)", "error_free"] == 0.9  # not its own 2 dB value, 0.85
    # 0.78 < 0.9 x 0.9 at 1 dB (against its 2 dB value it would be 0.78 >= 0.765: between 0 and 1 dB)
    assert t.loc["UIDG (backhaul.channel=none)", "snr_db_below"] == "between 1 and 2 dB"
