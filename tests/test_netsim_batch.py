"""Batched ES service of the cell simulator: the batch curve, the batch pool, capacity with batches.

Demands are hand-built (see ``test_netsim_system``); the curve is measured by the engine only in the
slow test.
"""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
import simpy
from typer.testing import CliRunner

from megen.cli.main import app
from megen.errors import MegenError
from megen.netsim import batching
from megen.netsim.batching import BatchCurve, cached_batch_curve
from megen.netsim.cell import BatchPool, make_cell
from megen.netsim.config import make_config
from megen.netsim.demand import Task
from megen.netsim.system import resource_loads, service_capacity, simulate_point, stability_bound
from test_netsim_system import CENTRAL, PROFILES, _write_cache, demand, es_only

CIAG = demand(
    "CIAG",
    (
        Task("UE", "UE", 2.03e9, "flops", ()),
        Task("uplink", "UE>ES1", 128, "channel_uses", (0,)),
        Task("ES", "ES1", 3.77e9, "flops", (1,)),
        Task("downlink", "ES1>UE", 128, "channel_uses", (2,)),
        Task("UE", "UE", 1e8, "flops", (3,)),
    ),
)
# Measures of these two demands before batched service existed (the plain simpy.Resource pool):
# [mean latency, p95 latency, deadline share, ES utilisation] with the config of test_batch_one_*.
BEFORE = {
    "central": [0.0004414321728519559, 0.0008479529364847915, 1.0, 0.8188012568458454],
    "CIAG": [0.01221195639451075, 0.025913073754015192, 1.0, 0.15015698160994062],
}


def test_docstring_examples() -> None:
    result = doctest.testmod(batching)
    assert result.attempted > 0 and result.failed == 0


def test_curve_interpolates_extrapolates_and_never_decreases() -> None:
    c = BatchCurve(
        "m", "cpu", (1, 2, 4, 8), {"denoise": (2.0, 3.0, 2.5, 9.0), "decode": (1.0, 2.0, 4.0, 8.0)}
    )
    # 3.0 at b=2 exceeds the 2.5 of b=4: a batch of 2 never costs more than one of 4
    assert c.factor(2) == pytest.approx(1.25)
    assert c.factor(3) == pytest.approx(1.25)
    assert c.factor(6) == pytest.approx((2.5 + 0.5 * 6.5) / 2.0)
    assert c.factor(16) == pytest.approx((9.0 + 8 * 6.5 / 4) / 2.0)  # last slope 6.5 / 4 per request
    assert c.factors(4, "decode") == pytest.approx((1.0, 2.0, 3.0, 4.0))
    assert BatchCurve.flat().factors(32) == (1.0,) * 32
    assert BatchCurve.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    ("sizes", "secs", "needle"),
    [((2, 4), (1.0, 2.0), "start at 1"), ((1, 1), (1.0, 1.0), "distinct"), ((1, 2), (1.0, -1.0), "positive")],
)
def test_bad_curves_are_refused(sizes, secs, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MegenError, match=needle):
        BatchCurve("m", "cpu", sizes, {"denoise": secs})
    with pytest.raises(MegenError, match="batch size"):
        BatchCurve.flat().factor(0)
    with pytest.raises(MegenError, match="not a batch curve"):
        BatchCurve.from_dict({"model": "m"})


def test_batch_pool_takes_waiting_tasks_of_one_stage() -> None:
    """One server, B = 2, factor(2) = 1.5: a batch forms only of waiting tasks of the same stage."""
    env = simpy.Environment()
    pool = BatchPool(env, 1, (1.0, 1.5))
    done: dict[str, float] = {}

    def task(name: str, stage: int, at: float):  # type: ignore[no-untyped-def]
        yield env.timeout(at)
        yield pool.serve(stage, 1.0)
        done[name] = env.now

    for name, stage, at in (("a", 0, 0.0), ("b", 0, 0.1), ("x", 1, 0.2), ("c", 0, 0.3), ("d", 0, 0.4)):
        env.process(task(name, stage, at))
    env.run()
    # a alone (0..1); then b and c together (1..2.5, x waits though it came first); x (2.5..3.5); d
    assert done == pytest.approx({"a": 1.0, "b": 2.5, "c": 2.5, "x": 3.5, "d": 4.5})
    assert pool.batches == [1, 2, 1, 1] and pool.busy_s == pytest.approx(4.5)


def test_batch_one_equals_the_fifo_results_before_batching() -> None:
    cfg = make_config({"num_es": 2, "requests": 3000, "num_ues": 30, "capacity": False})
    assert cfg.es_batch == 1
    cell = make_cell(cfg, 0)
    for name, d, rate in (("central", CENTRAL, 9000.0), ("CIAG", CIAG, 3000.0)):
        p = simulate_point(cfg, cell, d, PROFILES, rate, 0)
        got = [p.latency_mean_s, p.latency_p95_s, p.deadline_share, p.es_utilisation]
        assert got == pytest.approx(BEFORE[name], rel=1e-12, abs=0)
        assert p.es_mean_batch == 1.0


def test_es_batch_needs_a_curve() -> None:
    with pytest.raises(MegenError, match="batch curve"):
        make_cell(make_config({"es_batch": 4, "num_ues": 5}), 0)


def test_flat_curve_serves_beyond_the_fifo_bound() -> None:
    """One ES, 10 ms per request: FIFO saturates at 100/s; flat batches of 8 carry 150/s easily."""
    d, service = es_only(0.01), 0.01
    fifo = make_config(
        {"num_es": 1, "requests": 4000, "num_ues": 10, "deadline_s": 0.05, "capacity_steps": 6}
    )
    batched = fifo.with_(es_batch=8)
    cell1, cell8 = make_cell(fifo, 0), make_cell(batched, 0, BatchCurve.flat())
    assert stability_bound(resource_loads(fifo, cell1, d, PROFILES)) == pytest.approx(1 / service)
    assert stability_bound(resource_loads(batched, cell8, d, PROFILES)) == pytest.approx(8 / service)
    assert not simulate_point(fifo, cell1, d, PROFILES, 150.0, 0).stable
    p = simulate_point(batched, cell8, d, PROFILES, 150.0, 0)
    assert p.stable and p.deadline_share > 0.99
    assert 1.0 < p.es_mean_batch <= 8
    # a batch takes one service time: the ES is busy (requests/s over mean batch) * service of the time
    assert p.es_utilisation == pytest.approx(150.0 / p.es_mean_batch * service, rel=0.05)
    assert service <= p.latency_p50_s <= p.latency_p99_s < 3 * service  # wait < one batch + service
    cap1, _ = service_capacity(fifo, cell1, d, PROFILES, 0)
    cap8, _ = service_capacity(batched, cell8, d, PROFILES, 0)
    assert cap8 > 2 * cap1


@pytest.mark.theory
def test_flat_curve_matches_gated_batch_closed_form() -> None:
    """One ES, D = 10 ms, flat curve, batches up to 64 (never binding at lambda D = 2): W, busy share
    and mean batch equal the gated batch service closed form (``theory.gated_batch_md``)."""
    from megen.netsim.theory import gated_batch_md

    service, rate = 0.01, 200.0
    cfg = make_config(
        {"num_es": 1, "es_batch": 64, "requests": 20_000, "num_ues": 10, "deadline_s": 1.0, "capacity": False}
    )
    p = simulate_point(cfg, make_cell(cfg, 0, BatchCurve.flat()), es_only(service), PROFILES, rate, 0)
    w, busy, batch = gated_batch_md(rate, service)
    assert p.stable and p.failed_share == 0
    assert p.latency_mean_s == pytest.approx(w, rel=0.02)
    assert p.es_utilisation == pytest.approx(busy, rel=0.02)
    assert p.es_mean_batch == pytest.approx(batch, rel=0.02)


def test_linear_curve_gains_nothing() -> None:
    """factor(b) = b: batching cannot raise the stability bound."""
    linear = BatchCurve("lin", "cpu", (1, 2, 4), {"denoise": (1.0, 2.0, 4.0)})
    cfg = make_config({"num_es": 1, "requests": 2000, "num_ues": 10, "es_batch": 4, "capacity": False})
    cell = make_cell(cfg, 0, linear)
    assert stability_bound(resource_loads(cfg, cell, es_only(0.01), PROFILES)) == pytest.approx(100.0)


def test_cached_curve_is_read_not_remeasured(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    curve = BatchCurve("tiny", "cpu", (1, 2), {"denoise": (1.0, 1.2), "decode": (1.0, 2.0)})

    def fake(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return curve

    calls: list = []
    monkeypatch.setattr(batching, "measure_batch_curve", fake)
    first = cached_batch_curve("tiny", "cpu", tmp_path, seed=12345)  # a key not shipped
    second = cached_batch_curve("tiny", "cpu", tmp_path, seed=12345)
    assert first == second == curve and len(calls) == 1
    assert len(list(tmp_path.glob("batch-*.json"))) == 1


@pytest.mark.slow
def test_measured_tiny_curve_is_positive_and_monotone() -> None:
    c = batching.measure_batch_curve("tiny", "cpu", (1, 2, 4), repeats=2)
    f = [c.factor(b) for b in (1, 2, 4)]
    assert f[0] == 1.0 and f == sorted(f) and np.all(np.isfinite(f))


def test_shipped_measurements_parse_and_are_found(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from megen.files import read_table
    from megen.netsim.demand import SHIPPED_DIR, Demand, shipped_or_cached

    demands = [Demand.from_dict(read_table(p, "demand")) for p in sorted(SHIPPED_DIR.glob("demand-*.json"))]
    names = {d.protocol for d in demands}
    assert {"central", "central-es", "local", "local-upload", "CIAG", "ESUC", "UIDG", "DIUG"} <= names
    for d in demands:
        assert d.tasks and all(t.amount > 0 for t in d.tasks) and len(d.psnr_fidelity_db) == 3
    curves = [BatchCurve.from_dict(read_table(p, "curve")) for p in SHIPPED_DIR.glob("batch-*.json")]
    assert curves and all(c.factor(32) > 1.0 for c in curves)
    some = next(SHIPPED_DIR.glob("demand-*.json"))
    assert shipped_or_cached(tmp_path / some.name) == some
    assert shipped_or_cached(tmp_path / "demand-0000.json") is None


def test_cli_es_batch(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(batching, "measure_batch_curve", lambda *a, **k: BatchCurve.flat())
    _write_cache(tmp_path, ["central"])
    args = ["netsim", "--protocols", "central", "--requests", "1000", "--ues", "20", "--rate", "12000"]
    args += [
        "--es",
        "1",
        "--es-batch",
        "4",
        "--cache-dir",
        str(tmp_path),
        "--json",
        "--no-progress",
        "--no-capacity",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout.strip().splitlines()[-1])
    assert obj["config"]["es_batch"] == 4
    (p,) = obj["protocols"]
    assert p["stable"] and 1.0 < p["es_mean_batch"] <= 4.0  # 12 000/s exceeds one ES's FIFO bound
    bad = CliRunner().invoke(app, ["netsim", "--es-batch", "0", "--no-progress"])
    assert bad.exit_code == 2 and "es_batch" in bad.output
