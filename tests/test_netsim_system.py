"""The cell simulator (``megen netsim``): radio formulas, fluid links, queueing checks, CLI.

Demands here are small hand-built :class:`Demand` objects (the engine is exercised by
``measure_demand`` only in the slow test), so the file runs in well under a minute.
"""

from __future__ import annotations

import doctest
import importlib
import json
import math

import numpy as np
import pytest
import simpy
from typer.testing import CliRunner

from megen.cli.main import app
from megen.costs.profiles import load_profiles
from megen.errors import MegenError
from megen.netsim.cell import SharedLink, make_cell
from megen.netsim.config import make_config
from megen.netsim.demand import Demand, DemandSpec, Task
from megen.netsim.radio import los_probability, path_loss_db, resource_elements_per_s
from megen.netsim.runner import run_protocol_system
from megen.netsim.system import UNSTABLE_MAX_REQUESTS, resource_loads, service_capacity, simulate_point
from megen.netsim.theory import md1_wait

runner = CliRunner()
PROFILES = load_profiles()
ES_RATE = PROFILES.es.peak_flops * PROFILES.es.efficiency


def demand(protocol: str, tasks: tuple[Task, ...], psnr: float = 30.0) -> Demand:
    return Demand(protocol, tasks, (0.0, 20.0), (psnr - 10, psnr), (1.0, 1.0), 1, "test")


def es_only(service_s: float) -> Demand:
    """One ES task of ``service_s`` seconds: with one ES the cell is an M/D/1 queue."""
    return demand("central", (Task("ES", "ES1", service_s * ES_RATE, "flops", ()),))


CENTRAL = demand(
    "central",
    (
        Task("uplink", "UE>ES1", 256, "bits", ()),
        Task("ES", "ES1", 6.75e9, "flops", (0,)),
        Task("downlink", "ES1>UE", 4992, "bits", (1,)),
    ),
)


@pytest.mark.parametrize("name", ["megen.netsim.demand", "megen.netsim.cell"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_path_loss_matches_tr38901_formulas() -> None:
    d = np.array([50.0])
    d3d = math.hypot(50.0, 10.0 - 1.5)
    los = 32.4 + 21 * math.log10(d3d) + 20 * math.log10(3.5)
    nlos = 35.3 * math.log10(d3d) + 22.4 + 21.3 * math.log10(3.5)
    assert path_loss_db("umi", d, np.array([True]), 3.5)[0] == pytest.approx(los)
    assert path_loss_db("umi", d, np.array([False]), 3.5)[0] == pytest.approx(max(los, nlos))
    p = los_probability("uma", np.array([10.0, 18.0, 100.0, 1000.0]))
    assert p[0] == p[1] == 1.0 and 1 > p[2] > p[3] > 0


def test_resource_elements_and_zero_bandwidth() -> None:
    assert resource_elements_per_s(20e6) == 55 * 12 * 14 / 0.5e-3
    with pytest.raises(MegenError, match="resource block"):
        resource_elements_per_s(100e3)


def test_shared_link_is_processor_sharing() -> None:
    """Two equal flows started together each take twice the time of one flow alone."""
    env = simpy.Environment()
    link = SharedLink(env, 1000.0, np.full((2, 4), 2.0))  # 2 bits per RE, 1000 RE/s
    done = {}

    def flow(ue: int, bits: float):  # type: ignore[no-untyped-def]
        used = yield link.send(ue, bits, "bits")
        done[ue] = (env.now, used)

    env.process(flow(0, 2000.0))
    env.process(flow(1, 4000.0))
    env.run()
    assert done[0][0] == pytest.approx(2.0)  # shares 1000 RE/s with flow 1 for 2 s
    assert done[1][0] == pytest.approx(3.0)  # then alone: 2000 bits left at 2000 bit/s
    assert done[1][1] == pytest.approx(2000.0)  # REs used: 1000 + 1000
    assert link.busy_s == pytest.approx(3.0)


def test_single_es_cell_is_md1() -> None:
    """ES-only demand, one ES: mean latency equals the M/D/1 time in system within 4%."""
    cfg = make_config({"num_es": 1, "requests": 40_000, "num_ues": 10, "deadline_s": 1.0, "capacity": False})
    cell = make_cell(cfg, 0)
    service, rate = 0.01, 70.0
    point = simulate_point(cfg, cell, es_only(service), PROFILES, rate, 0)
    theory_w = md1_wait(rate, service) + service
    assert point.stable and point.failed_share == 0
    assert point.es_utilisation == pytest.approx(0.7, rel=0.03)
    assert point.latency_mean_s == pytest.approx(theory_w, rel=0.04)
    assert point.latency_p50_s < theory_w < point.latency_p99_s


def test_capacity_bisection_brackets_the_deadline() -> None:
    cfg = make_config({"num_es": 1, "requests": 4000, "num_ues": 10, "deadline_s": 0.05, "capacity_steps": 7})
    cell = make_cell(cfg, 0)
    d = es_only(0.01)
    cap, bound = service_capacity(cfg, cell, d, PROFILES, 0)
    assert bound == pytest.approx(100.0)
    assert 0 < cap < bound
    at = simulate_point(cfg, cell, d, PROFILES, cap, 0)
    above = simulate_point(cfg, cell, d, PROFILES, cap + bound * 2**-7, 0)
    assert at.deadline_share >= 0.95 > above.deadline_share


def test_identical_twice_and_replications_differ() -> None:
    cfg = make_config({"requests": 2000, "replications": 2, "capacity_steps": 3, "arrival_rate": 3000.0})
    a = run_protocol_system(cfg, CENTRAL, PROFILES).to_dict(cfg)
    b = run_protocol_system(cfg, CENTRAL, PROFILES).to_dict(cfg)
    assert a == b
    assert a["latency_p95_s_ci"] is not None and a["service_capacity_ci"] is not None
    assert a["stable"] and 0.9 < a["deadline_share"] <= 1.0
    assert a["bottleneck"] in ("ES", "downlink")


def test_unstable_reports_backlog_growth() -> None:
    cfg = make_config({"num_es": 1, "requests": 20_000, "num_ues": 10, "capacity": False})
    cell = make_cell(cfg, 0)
    bound = 1 / max(resource_loads(cfg, cell, es_only(0.01), PROFILES).values())
    point = simulate_point(cfg, cell, es_only(0.01), PROFILES, 1.5 * bound, 0)
    assert not point.stable
    assert point.backlog_growth_per_s == pytest.approx(0.5 * bound, rel=0.1)
    assert UNSTABLE_MAX_REQUESTS < 20_000


def test_proportional_fair_beats_round_robin_on_the_downlink() -> None:
    rr = make_config({"num_ues": 20, "scheduler": "round_robin"})
    pf = rr.with_(scheduler="proportional_fair")
    load_rr = resource_loads(rr, make_cell(rr, 0), CENTRAL, PROFILES)["downlink"]
    load_pf = resource_loads(pf, make_cell(pf, 0), CENTRAL, PROFILES)["downlink"]
    assert load_pf < load_rr


def _write_cache(folder, protocols) -> None:  # type: ignore[no-untyped-def]
    local = demand("local", (Task("UE", "UE", 2.6e9, "flops", ()),), psnr=20.0)
    for name in protocols:
        d = CENTRAL if name == "central" else local
        spec = DemandSpec(name)
        obj = {**d.to_dict(), "protocol": name, "key": spec.key(), "snr_grid_db": [0.0, 10.0, 20.0]}
        obj["psnr_fidelity_db"] = [30.0, 35.0, 40.0]
        obj["prompt_match"] = [1.0, 1.0, 1.0]
        (folder / f"demand-{spec.key()}.json").write_text(json.dumps(obj))


def test_cli_json_from_cached_demands(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _write_cache(tmp_path, ["central", "local"])
    args = ["netsim", "--protocols", "central,local", "--requests", "1000", "--ues", "20", "--rate", "500"]
    args += ["--cache-dir", str(tmp_path), "--json", "--no-progress", "--replications", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout.strip().splitlines()[-1])
    names = [p["protocol"] for p in obj["protocols"]]
    assert names == ["central", "local"]
    for p in obj["protocols"]:
        assert p["latency_p50_s"] <= p["latency_p95_s"] <= p["latency_p99_s"]
        assert p["service_capacity"] > 0 and p["stable"]
    assert obj["protocols"][1]["bottleneck"] == "UE" and obj["protocols"][1]["uplink_utilisation"] == 0


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--rate", "-5"], "arrival_rate"),
        (["--bandwidth-mhz", "0"], "bandwidth_mhz"),
        (["--scheduler", "greedy"], "scheduler"),
        (["--protocols", "nope"], "unknown protocol"),
        (["--preset", "huge"], "unknown netsim preset"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(flags: list[str], needle: str) -> None:
    result = runner.invoke(app, ["netsim", *flags, "--no-progress"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_trace_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from megen.netsim.runner import read_trace

    good = tmp_path / "t.csv"
    good.write_text("time_s,ue\n0.0,1\n0.5,0\n1.0,2\n")
    arr = read_trace(good, 3, 0)
    assert arr.ue.tolist() == [1, 0, 2] and arr.time_s.tolist() == [0.0, 0.5, 1.0]
    bad = tmp_path / "b.csv"
    bad.write_text("0.0,1\n0.5,9\n")
    with pytest.raises(MegenError, match="UE indices"):
        read_trace(bad, 3, 0)
    bad.write_text("1.0\n0.5\n")
    with pytest.raises(MegenError, match="ascending"):
        read_trace(bad, 3, 0)
