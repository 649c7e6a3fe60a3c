"""Link adaptation: the stored BLER curves behave physically, and the selector uses them sensibly."""

from __future__ import annotations

import math

import pytest

from megen.errors import MegenError
from megen.link.channels import ChannelConfig
from megen.link.mcs import MCS_TABLE, TARGET_BLER, load_bler_table, select_mcs


@pytest.fixture(scope="module")
def table():
    return load_bler_table()


def test_table_matches_mcs_list(table) -> None:
    assert table.entries == MCS_TABLE
    efficiencies = [mcs.spectral_efficiency for mcs in MCS_TABLE]
    assert efficiencies == sorted(efficiencies)
    assert set(table.curves) == {"awgn", "rayleigh"}


@pytest.mark.theory
def test_bler_falls_with_snr_within_noise(table) -> None:
    for kind, curves in table.curves.items():
        for mcs, curve in zip(table.entries, curves, strict=True):
            measured = [
                (s, b, n) for s, b, n in zip(curve.snr_db, curve.bler, curve.blocks, strict=True) if n
            ]
            assert measured, (kind, mcs)
            for (s0, b0, n0), (s1, b1, n1) in zip(measured, measured[1:], strict=False):
                p = max((b0 + b1) / 2, 1.0 / n0)
                sigma = math.sqrt(p * (1 - p) / min(n0, n1))
                assert b1 <= b0 + 3 * sigma + 1e-9, (kind, mcs.label, s0, b0, s1, b1)
            assert measured[0][1] > 0.5 and curve.bler[-1] <= TARGET_BLER, (kind, mcs.label)


@pytest.mark.theory
def test_decodable_rates_are_below_shannon_capacity(table) -> None:
    for kind, curves in table.curves.items():
        for mcs, curve in zip(table.entries, curves, strict=True):
            for snr_db, bler, blocks in zip(curve.snr_db, curve.bler, curve.blocks, strict=True):
                if blocks and bler <= TARGET_BLER:
                    assert mcs.spectral_efficiency < math.log2(1 + 10 ** (snr_db / 10)), (
                        kind,
                        mcs.label,
                        snr_db,
                    )


def test_awgn_thresholds_rise_with_spectral_efficiency(table) -> None:
    thresholds = [curve.threshold_snr_db() for curve in table.curves["awgn"]]
    assert thresholds == sorted(thresholds)
    rayleigh = [curve.threshold_snr_db() for curve in table.curves["rayleigh"]]
    assert all(r > a for r, a in zip(rayleigh, thresholds, strict=True))  # fading costs SNR


@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician"])
def test_selector_is_monotone_and_meets_target(kind: str) -> None:
    previous = -1.0
    for tenth_db in range(-100, 450, 5):
        snr_db = tenth_db / 10
        choice = select_mcs(snr_db, kind)
        assert choice.mcs.spectral_efficiency >= previous
        previous = choice.mcs.spectral_efficiency
        if choice.meets_target:
            assert choice.threshold_snr_db <= snr_db
            assert choice.predicted_bler <= TARGET_BLER + 1e-9
            assert choice.mcs.spectral_efficiency < math.log2(1 + 10 ** (snr_db / 10))


def test_selector_extremes() -> None:
    low = select_mcs(-20.0, "awgn")
    assert low.index == 0 and not low.meets_target
    assert select_mcs(40.0, "awgn").index == len(MCS_TABLE) - 1
    assert select_mcs(0.0, ChannelConfig("none")).index == len(MCS_TABLE) - 1
    assert select_mcs(15.0, "rician") == select_mcs(15.0, "rayleigh")
    assert (
        select_mcs(15.0, "rayleigh").mcs.spectral_efficiency
        < select_mcs(15.0, "awgn").mcs.spectral_efficiency
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((float("nan"), "awgn"), "finite"),
        ((float("inf"), "awgn"), "finite"),
        ((10.0, "wifi"), "unknown channel"),
    ],
)
def test_selector_rejects_bad_input(args, match: str) -> None:
    with pytest.raises(MegenError, match=match):
        select_mcs(*args)


def test_table_rows_summarise_the_curves(table) -> None:
    from megen.link.mcs import table_rows
    from megen.link.theory import shannon_snr_db

    rows = table_rows(table)
    assert [r["index"] for r in rows] == list(range(len(MCS_TABLE)))
    for row, mcs, awgn, rayleigh in zip(
        rows, MCS_TABLE, table.curves["awgn"], table.curves["rayleigh"], strict=True
    ):
        assert (row["modulation"], row["code_rate"]) == (mcs.modulation, mcs.code_rate)
        assert row["spectral_efficiency"] == mcs.spectral_efficiency
        assert row["threshold_snr_db"] == {
            "awgn": awgn.threshold_snr_db(),
            "rayleigh": rayleigh.threshold_snr_db(),
        }
        assert row["shannon_limit_db"] == shannon_snr_db(mcs.spectral_efficiency)
        assert row["shannon_limit_db"] < row["threshold_snr_db"]["awgn"]  # no code beats capacity


def test_write_and_reload_round_trip(table, tmp_path) -> None:
    from megen.link.mcs import write_bler_table

    path = write_bler_table(table, tmp_path / "sub" / "t.json")
    again = load_bler_table(str(path))
    assert again.entries == table.entries and again.curves == table.curves
    assert not list(path.parent.glob(".*tmp"))


def test_write_refuses_bad_targets_and_keeps_the_old_file(table, tmp_path) -> None:
    from megen.link.mcs import check_table_target, write_bler_table

    with pytest.raises(MegenError, match="is a folder"):
        check_table_target(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    with pytest.raises(MegenError, match="is not a folder"):
        write_bler_table(table, blocker / "t.json")
    assert blocker.read_text() == "keep"


@pytest.mark.parametrize(
    ("content", "match"), [("{", "not a valid table"), ('{"entries": []}', "not a valid table")]
)
def test_corrupt_table_file_is_a_megen_error(tmp_path, content: str, match: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(MegenError, match=match):
        load_bler_table(str(path))
    with pytest.raises(MegenError, match="megen mcs --rebuild"):
        load_bler_table(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 2**32}, {"seed": True}, {"num_blocks": 0}])
def test_build_refuses_bad_arguments_before_measuring(kwargs) -> None:
    from megen.link.mcs import build_bler_table

    with pytest.raises(MegenError):
        build_bler_table(**kwargs)
