"""The callback-driven request chains of the cell simulator against hand-checked times and a plain reference.

:func:`megen.netsim.cell.simulate_cell` drives each request's task graph by completion callbacks (one
SimPy event per task). Here a two-ES step structure like UIDG's (ES1 and ES2 in parallel, a backhaul
exchange, the next step on both) is run (a) on three requests whose times are worked out by hand
below and (b) on a loaded random case against a straightforward SimPy model: one process per task,
a :class:`simpy.Resource` for the ES pool, ``all_of`` for the dependencies.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from megen.costs.profiles import load_profiles
from megen.netsim.cell import Arrivals, CellRun, TaskGraph, make_cell, simulate_cell
from megen.netsim.config import make_config
from megen.netsim.demand import Demand, Task

PROFILES = load_profiles()
RATES = {
    "ES": PROFILES.es.peak_flops * PROFILES.es.efficiency,
    "backhaul": PROFILES.link("backhaul").bandwidth_hz,
}


def two_es_demand(seconds: tuple[float, ...]) -> Demand:
    """Two denoising steps split over ES1 and ES2 with a backhaul exchange (task seconds given).

    Tasks: 0 ES1, 1 ES2 (step 1); 2 backhaul ES1>ES2 after 0, 3 backhaul ES2>ES1 after 1;
    4 ES1 after (0, 3), 5 ES2 after (1, 2) (step 2); 6 backhaul ES2>ES1 after 5; 7 ES1 after (4, 6).
    """
    shape = [
        ("ES", "ES1", ()),
        ("ES", "ES2", ()),
        ("backhaul", "ES1>ES2", (0,)),
        ("backhaul", "ES2>ES1", (1,)),
        ("ES", "ES1", (0, 3)),
        ("ES", "ES2", (1, 2)),
        ("backhaul", "ES2>ES1", (5,)),
        ("ES", "ES1", (4, 6)),
    ]
    tasks = tuple(
        Task(r, node, s * RATES[r], "flops" if r == "ES" else "channel_uses", after)
        for (r, node, after), s in zip(shape, seconds, strict=True)
    )
    return Demand("UIDG", tasks, (0.0, 20.0), (20.0, 30.0), (1.0, 1.0), 2, "test")


def run_cell(d: Demand, times: list[float]) -> CellRun:
    cfg = make_config({"num_es": 2, "num_ues": 4, "requests": 200, "capacity": False})
    arrivals = Arrivals(np.asarray(times, dtype=float), np.zeros(len(times), dtype=int))
    run = simulate_cell(cfg, make_cell(cfg, 0), d, PROFILES, arrivals, float("inf"))
    assert run.finished
    return run


def reference_latencies(d: Demand, times: list[float], num_es: int) -> np.ndarray:
    """One SimPy process per task: waits for its predecessors, then holds an ES or sleeps the backhaul."""
    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=num_es)
    seconds = TaskGraph.of(d.tasks, RATES).value
    latency = np.full(len(times), np.nan)

    def task(k: int, done: list) -> simpy.events.ProcessGenerator:
        yield env.all_of([done[a] for a in d.tasks[k].after])
        if d.tasks[k].resource == "ES":
            with pool.request() as req:
                yield req
                yield env.timeout(seconds[k])
        else:
            yield env.timeout(seconds[k])
        done[k].succeed()

    def request(i: int) -> simpy.events.ProcessGenerator:
        done = [env.event() for _ in d.tasks]
        for k in range(len(d.tasks)):
            env.process(task(k, done))
        yield env.all_of(done)
        latency[i] = env.now - times[i]

    def source() -> simpy.events.ProcessGenerator:
        for i, t in enumerate(times):
            yield env.timeout(t - env.now)
            env.process(request(i))

    env.process(source())
    env.run()
    return latency


HAND = two_es_demand((1.0, 1.0, 0.5, 0.25, 1.0, 1.0, 0.125, 0.5))


def test_hand_checked_two_es_chain() -> None:
    """Requests A at 0, B at 0.5 (it queues behind A on both ESs) and C at 10 (alone).

    A: 0, 1 on both ESs 0..1; backhauls 2 (1..1.5), 3 (1..1.25); B's 0, 1 take the ESs 1..2, so A's 4
    (ready 1.25) and 5 (ready 1.5) wait and run 2..3; B's 4 and 5 (ready 2.25, 2.5) run 3..4; A's 6
    is 3..3.125, so A's 7 waits for an ES until 4 and ends 4.5. B's 6 is 4..4.125, its 7 4.125..4.625.
    C alone: 10..11; 4 from 11.25 to 12.25, 5 from 11.5 to 12.5, 6 to 12.625, 7 to 13.125.
    """
    run = run_cell(HAND, [0.0, 0.5, 10.0])
    assert run.latency_s == pytest.approx([4.5, 4.125, 3.125], abs=1e-12)
    assert reference_latencies(HAND, [0.0, 0.5, 10.0], 2) == pytest.approx(run.latency_s, abs=1e-12)
    # one SimPy event per task (8 per request) and per arrival; the source process's start and end;
    # env.run's stop event, scheduled, popped and put back
    assert run.events == 3 * 8 + 3 + 2 + 2


def test_loaded_two_es_chain_equals_the_process_per_task_reference() -> None:
    """60 Poisson requests at about 85% ES load, task times all distinct: identical latencies."""
    d = two_es_demand((0.9, 1.1, 0.31, 0.17, 1.05, 0.95, 0.23, 0.6))
    rng = np.random.default_rng(12)
    times = np.cumsum(rng.exponential(1 / 0.4, 60)).tolist()  # 4.6 ES-seconds per request, 2 ESs
    got = run_cell(d, times).latency_s
    want = reference_latencies(d, times, 2)
    assert np.all(np.isfinite(got)) and got.max() > 2 * got.min()  # requests did queue
    assert got == pytest.approx(want, rel=1e-12, abs=0)
