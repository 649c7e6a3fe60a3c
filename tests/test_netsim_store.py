"""Netsim results in the SQLite results database, the figures read back from it, `reproduce --preset netsim`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from megen.cli.main import app
from megen.errors import MegenError
from megen.experiments.spec import expand
from megen.netsim import reproduce as netsim_reproduce
from megen.netsim.plots import figure_data
from megen.store import ResultsStore
from megen.store.netsim import export_netsim, read_netsim, write_netsim
from test_netsim_system import _write_cache
from test_store import _spec

runner = CliRunner()


def _row(figure: str, protocol: str, x: float, **measures: float) -> dict:
    return {"run": "r1", "figure": figure, "protocol": protocol, "x": x, "config_json": "{}", **measures}


def test_write_read_replace_and_export(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    rows = [
        _row("latency_vs_load", "central", 200.0, latency_p95_s=0.01, stable=True),
        _row("latency_vs_load", "central", 100.0, latency_p95_s=math.inf, stable=False),
        _row("capacity_vs_es", "local", 2, service_capacity=50.0),
    ]
    assert write_netsim(db, rows) == 3
    df = read_netsim(db)
    assert list(df.x) == [2.0, 100.0, 200.0]  # key order: figure, protocol, x
    assert df.latency_p95_s.isna().tolist() == [True, True, False]  # inf stored as NULL
    assert df.stable.tolist()[1:] == [0.0, 1.0]
    write_netsim(db, [_row("capacity_vs_es", "local", 2, service_capacity=60.0)])  # same key: replaced
    df = read_netsim(db, run="r1")
    assert len(df) == 3 and df[df.figure == "capacity_vs_es"].service_capacity.item() == 60.0
    assert read_netsim(db, run="other").empty
    assert export_netsim(db, csv=tmp_path / "n.csv", parquet=tmp_path / "n.parquet") == 3
    assert (tmp_path / "n.csv").read_text().splitlines()[0].startswith("run,figure,protocol,x,")


def test_bad_rows_and_files_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with pytest.raises(MegenError, match="figure must be one of"):
        write_netsim(db, [_row("nope", "central", 1.0)])
    with pytest.raises(MegenError, match="unknown columns"):
        write_netsim(db, [{**_row("table", "central", 1.0), "colour": 1}])
    with pytest.raises(MegenError, match="lacks config_json"):
        write_netsim(db, [{**_row("table", "central", 1.0), "config_json": None}])
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all")
    with pytest.raises(MegenError, match="not a SQLite database"):
        write_netsim(junk, [_row("table", "central", 1.0)])
    assert junk.read_bytes() == b"not a database at all"
    with pytest.raises(MegenError, match="does not exist"):
        read_netsim(tmp_path / "missing.sqlite")


def test_netsim_table_shares_a_sweep_store(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    spec = _spec()
    with ResultsStore.create_or_resume(db, spec, expand(spec)):
        pass
    write_netsim(db, [_row("table", "central", 1000.0, service_capacity=5.0)])
    with ResultsStore.open(db) as store:  # the sweep store still opens, rows untouched
        assert store.count() == 0
    solo = tmp_path / "solo.sqlite"
    write_netsim(solo, [_row("table", "central", 1000.0)])
    with ResultsStore.create_or_resume(solo, spec, expand(spec)) as store:  # a sweep may join it later
        assert store.count() == 0
    assert len(read_netsim(solo)) == 1


def test_figure_data_from_rows() -> None:
    rows = [
        _row("latency_vs_load", "central", 20.0, latency_p95_s=None),
        _row("latency_vs_load", "central", 10.0, latency_p95_s=0.002),
        _row("capacity_vs_bandwidth", "central", 5.0, service_capacity=100.0),
        _row("capacity_vs_es", "central", 1.0, service_capacity=70.0),
        _row("capacity_vs_es", "central", 2.0, service_capacity=140.0),
    ]
    data = figure_data(rows, 0.05)
    assert data["rates"] == [10.0, 20.0] and data["p95_s"] == {"central": [0.002, None]}
    assert data["edge_servers"] == [1, 2] and data["capacity_vs_es"] == {"central": [70.0, 140.0]}
    assert data["capacity_vs_bandwidth"] == {"central": [100.0]} and data["deadline_s"] == 0.05


def test_reproduce_netsim_writes_store_figures_and_report(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    cache.mkdir()
    _write_cache(cache, ["central", "local"])
    preset = {**netsim_reproduce.PRESET, "protocols": ("central", "local"), "requests": 200}
    monkeypatch.setattr(netsim_reproduce, "PRESET", {**preset, "capacity_steps": 2, "cache_dir": str(cache)})
    monkeypatch.setattr(netsim_reproduce, "BATCHES", (1, 4))
    out = tmp_path / "report"
    result = runner.invoke(app, ["reproduce", "--preset", "netsim", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    df = read_netsim(out / "results.sqlite")
    assert set(df.figure) == {
        "table",
        "latency_vs_load",
        "capacity_vs_bandwidth",
        "capacity_vs_es",
        "capacity_vs_batch",
    }
    table = df[df.figure == "table"].set_index("protocol")
    assert table.loc["local", "bottleneck"] == "UE" and table.loc["central", "service_capacity"] > 0
    batch = df[(df.figure == "capacity_vs_batch") & (df.protocol == "central")].sort_values("x")
    assert batch.service_capacity.iloc[1] > batch.service_capacity.iloc[0]  # batches of 4 serve more
    for name in (
        "netsim.md",
        "netsim.csv",
        "netsim.parquet",
        "netsim_latency_vs_load.png",
        "netsim_figures.json",
    ):
        assert (out / name).is_file(), name
    drawn = json.loads((out / "netsim_figures.json").read_text())
    assert (
        drawn["capacity_vs_es"]["central"]
        == df[(df.figure == "capacity_vs_es") & (df.protocol == "central")]
        .sort_values("x")
        .service_capacity.tolist()
    )
    assert "| central |" in (out / "netsim.md").read_text()
    with pytest.raises(MegenError, match="no netsim rows"):
        netsim_reproduce.reproduce_netsim(tmp_path / "empty", report_only=True, cache_dir=str(cache))
    (out / "netsim.md").unlink()
    again = runner.invoke(app, ["reproduce", "--preset", "netsim", "--out", str(out), "--report-only"])
    assert again.exit_code == 0, again.output
    assert (out / "netsim.md").is_file()


def test_cli_db_stores_table_and_figure_rows(tmp_path: Path) -> None:
    _write_cache(tmp_path, ["central"])
    db = tmp_path / "results.sqlite"
    common = ["--protocols", "central", "--requests", "200", "--cache-dir", str(tmp_path), "--no-progress"]
    run = runner.invoke(
        app, ["netsim", *common, "--ues", "10", "--rate", "500", "--no-capacity", "--db", str(db)]
    )
    assert run.exit_code == 0, run.output
    table = read_netsim(db)
    assert table.figure.tolist() == ["table"] and table.x.tolist() == [500.0]
    toml = tmp_path / "fig.toml"
    toml.write_text("num_ues = 10\ncapacity_steps = 1\n")
    out = tmp_path / "figs"
    fig = runner.invoke(
        app, ["netsim", "figures", *common, "--config", str(toml), "--out", str(out), "--db", str(db)]
    )
    assert fig.exit_code == 0, fig.output
    stored = read_netsim(db)
    assert set(stored.figure) == {"table", "latency_vs_load", "capacity_vs_bandwidth", "capacity_vs_es"}
    drawn = json.loads((out / "netsim_figures.json").read_text())
    es = stored[stored.figure == "capacity_vs_es"].sort_values("x").service_capacity.tolist()
    assert drawn["capacity_vs_es"]["central"] == es and len(drawn["rates"]) == 9
