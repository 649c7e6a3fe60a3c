"""``megen link``: JSON output, sweeps, plots and exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from megen.cli.link import register
from megen.grid import MAX_GRID_POINTS

pytestmark = pytest.mark.cli
runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keep "link" as a sub-command, as in the real root app
        pass

    return app


def test_json_record(app) -> None:
    args = [
        "link",
        "--modulation",
        "16qam",
        "--code-rate",
        "0.5",
        "--channel",
        "awgn",
        "--snr-db",
        "9",
        "--bits",
        "5000",
        "--seed",
        "1",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip())
    assert {"ber", "bler", "channel_uses", "info_bits", "snr_db", "channel"} <= set(record)
    assert record["ber"] == 0.0 and record["bler"] == 0.0
    assert record["info_bits"] == 5000 and record["snr_db"] == 9.0 and record["channel"] == "awgn"
    assert record["channel_uses"] > 5000 / 4 / 0.5 * 0.99


def test_sweep_prints_one_line_per_point_and_plots(app, tmp_path) -> None:
    figure = tmp_path / "ber.png"
    args = [
        "link",
        "--modulation",
        "qpsk",
        "--uncoded",
        "--channel",
        "rayleigh",
        "--snr-db=-5:5:2.5",
        "--bits",
        "4000",
        "--json",
        "--plot",
        str(figure),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["snr_db"] for r in records] == [-5.0, -2.5, 0.0, 2.5, 5.0]
    assert records[0]["ber"] > records[-1]["ber"]
    assert figure.stat().st_size > 10_000


def test_comma_list_and_text_output(app) -> None:
    result = runner.invoke(
        app, ["link", "--modulation", "bpsk", "--uncoded", "--snr-db", "0,3", "--bits", "1000"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("snr_db=") == 2


def test_same_seed_same_result(app) -> None:
    args = ["link", "--channel", "rician", "--snr-db", "2", "--bits", "3000", "--json", "--seed", "7"]
    assert runner.invoke(app, args).stdout == runner.invoke(app, args).stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--modulation", "8psk"],
        ["--code-rate", "1.5"],
        ["--code-rate", "0"],
        ["--code-rate", "-0.2"],
        ["--code-rate", "0.5", "--uncoded"],
        ["--snr-db", "nan"],
        ["--snr-db", "inf"],
        ["--snr-db", "1:0:1"],
        ["--snr-db", "0:10:0"],
        ["--snr-db", "loud"],
        ["--bits", "-5"],
        ["--bits", "0"],
        ["--seed", "-1"],
        ["--channel", "wifi"],
        ["--equalizer", "ml"],
        ["--csi", "estimated", "--channel", "rayleigh", "--pilots", "0"],
        ["--bits", "many"],
        ["--seed", str(2**64)],
        ["--snr-db", "1e300"],
        ["--snr-db=-1e300:1e300:1e299"],
        ["--plot", "ber.unknown"],
        ["--plot", "/nonexistent-folder/ber.png"],
    ],
)
def test_bad_input_exits_2_with_one_line_error(app, args: list[str]) -> None:
    result = runner.invoke(app, ["link", *args])
    assert result.exit_code == 2, result.output
    assert "Error" in result.output
    assert "Traceback" not in result.output


def test_registered_on_root_app() -> None:
    try:
        from megen.cli.main import app as root
    except ImportError as exc:  # other command groups still under construction
        pytest.skip(f"root CLI not importable yet: {exc}")
    result = runner.invoke(root, ["link", "--snr-db", "20", "--bits", "200", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["ber"] == 0.0


def test_negative_range_with_default_step_and_cap(app) -> None:
    result = runner.invoke(app, ["link", "--snr-db=-2:0", "--bits", "200", "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["snr_db"] for line in result.stdout.splitlines()] == [-2.0, -1.0, 0.0]
    result = runner.invoke(app, ["link", "--snr-db", "0:100:0.01", "--bits", "200"])  # 10 001 points
    assert result.exit_code == 2 and f"at most {MAX_GRID_POINTS}" in result.output


def test_mcs_table_is_its_own_command(app) -> None:
    assert runner.invoke(app, ["link", "--build-mcs-table"]).exit_code == 2


@pytest.fixture(scope="module")
def mcs_app() -> typer.Typer:
    from megen.cli.mcs import register as register_mcs

    app = typer.Typer()
    register_mcs(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_mcs_prints_the_table(mcs_app) -> None:
    from megen.link.mcs_tables import all_entries

    result = runner.invoke(mcs_app, ["mcs"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(all_entries()) == 1 + 29 + 28 + 29
    header = lines[0]
    assert "awgn [dB]" in header and "rayleigh_estimated_csi [dB]" in header and "Shannon [dB]" in header
    assert lines[1].split()[:3] == ["qam64:0", "qpsk", "120.0"]
    assert lines[-1].split()[:3] == ["qam64lowse:28", "64qam", "772.0"]


def test_mcs_json_matches_the_library(mcs_app) -> None:
    from megen.link.mcs import table_rows

    result = runner.invoke(mcs_app, ["mcs", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == table_rows()
    low = next(r for r in rows if (r["table"], r["index"]) == ("qam64lowse", 0))
    assert low["code_rate_x1024"] == 30.0 and low["modulation"] == "qpsk"
    assert set(low["snr_db_at_10pct_bler"]) == {"awgn", "rayleigh", "rayleigh_estimated_csi"}
    assert low["shannon_snr_db"] < low["snr_db_at_10pct_bler"]["awgn"] < -10.0


def test_mcs_rebuild_writes_and_prints(mcs_app, tmp_path, monkeypatch) -> None:
    """The measurement itself takes minutes; here it is replaced by the packaged table."""
    import megen.link.mcs as mcs_module

    calls = []

    def fake_build(num_blocks, seed, progress):
        calls.append((num_blocks, seed))
        progress("measured")
        return mcs_module.load_bler_table()

    monkeypatch.setattr(mcs_module, "build_bler_table", fake_build)
    out = tmp_path / "t.json"
    result = runner.invoke(
        mcs_app, ["mcs", "--rebuild", "--blocks", "3", "--seed", "4", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert calls == [(3, 4)]
    assert mcs_module.load_bler_table(str(out)).curves == mcs_module.load_bler_table().curves
    assert len(result.stdout.splitlines()) == len(mcs_module.all_entries())
    assert f"wrote {out}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--blocks", "5"], "only apply with --rebuild"),
        (["--out", "x.json"], "only apply with --rebuild"),
        (["--rebuild", "--blocks", "0"], "--blocks must be in"),
        (["--rebuild", "--seed", "-1"], "--seed must be"),
        (["--rebuild", "--table", "t.json"], "not --table"),
        (["--table", "/nonexistent/t.json"], "BLER table not found"),
    ],
)
def test_mcs_bad_input_exits_2(mcs_app, args: list[str], message: str) -> None:
    result = runner.invoke(mcs_app, ["mcs", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_mcs_rebuild_refuses_a_folder_before_measuring(mcs_app, tmp_path, monkeypatch) -> None:
    import megen.link.mcs as mcs_module

    monkeypatch.setattr(mcs_module, "build_bler_table", lambda **kw: pytest.fail("measured anyway"))
    result = runner.invoke(mcs_app, ["mcs", "--rebuild", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output


def test_bad_plot_target_fails_before_simulating(app, tmp_path, monkeypatch) -> None:
    import megen.link.simulate as simulate

    monkeypatch.setattr(simulate, "simulate_link", lambda *a, **k: pytest.fail("simulated anyway"))
    for target in (tmp_path, tmp_path / "no" / "ber.png", tmp_path / "ber.txt"):
        result = runner.invoke(app, ["link", "--plot", str(target)])
        assert result.exit_code == 2 and "--plot" in result.output, result.output
