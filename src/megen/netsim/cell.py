"""One cell simulated with SimPy: UEs, an edge-server pool and two shared OFDMA links.

**Resources.** Each UE has its own processor (FIFO, one task at a time, a one-server
:class:`BatchPool`); the ``num_es`` edge
servers form one FIFO pool (a :class:`BatchPool`: a free server takes the first waiting task and,
with ``es_batch`` B > 1, up to B - 1 more waiting tasks of the same protocol stage, served together
in ``factor(b)`` times one task's seconds, :mod:`megen.netsim.batching`); the uplink
and the downlink are each a :class:`SharedLink` (fluid OFDMA: the active flows share the resource
elements equally, see :mod:`megen.netsim.radio`); the backhaul between edge servers is a fixed
delay (channel uses over the backhaul profile's bandwidth). Compute seconds and joules come from
the device profiles (:mod:`megen.costs.profiles`).

**Requests.** Arrival times are Poisson with rate ``arrival_rate`` (unit exponentials from the
stream ``derive(seed, "netsim", "cell", replication, "arrival")`` divided by the rate, so every rate
sees the same pattern), or read from a trace; each request comes from a UE drawn uniformly
(stream ``... "ue"``). A request runs its protocol's tasks (:class:`megen.netsim.demand.Demand`),
each when its predecessors are done: a task's completion callback counts down the tasks waiting for
it and starts those it was the last wait of (:class:`TaskGraph`), so every task costs one SimPy
event (its server's, its link's or the backhaul's timeout) and a request no process. A request
from a UE in outage on a link it needs fails at once.

**Measures** over the requests after the warm-up share: latency (arrival to the last task's end;
``inf`` for failed or unfinished requests), the share within the deadline, ES and spectrum
utilisation over the run, UE energy per served request (UE compute plus uplink transmission at the
UE's power for the REs its flows used), delivered quality (the demand's fidelity PSNR at the UE's
lower link SNR).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from simpy.events import NORMAL, Event

from megen.costs.profiles import Profiles
from megen.errors import MegenError
from megen.netsim.batching import BatchCurve
from megen.netsim.config import NetsimConfig
from megen.netsim.demand import Demand, Task
from megen.netsim.radio import Drop, drop_ues, flow_goodput, in_outage, resource_elements_per_s
from megen.rng import derive

RADIO = ("uplink", "downlink")
MAX_FLOW_COLUMNS = 256
"""Goodput tables hold columns for up to this many active flows (the last is used beyond)."""

Then = Callable[[Any, Any], None]
"""A completion callback ``then(arg, value)``: ``arg`` as given when the work was queued, ``value`` the
REs a flow used (links) or ``None`` (servers)."""


def _succeed(event: Any, value: Any) -> None:
    event.succeed(value)


class Due(Event):
    """A SimPy event ``delay`` seconds from now whose one callback is ``fn(event)``; ``event.value`` is ``value``.

    A :class:`simpy.Timeout` with its callback given at creation (the event loop's hot path: one
    per task).
    """

    def __init__(self, env: Any, delay: float, fn: Callable[[Any], None], value: Any) -> None:
        self.env = env
        self.callbacks = [fn]
        self._value = value
        self._ok = True
        env.schedule(self, NORMAL, delay)


class SharedLink:
    """Fluid OFDMA link: ``n`` active flows each get ``1/n`` of the REs per second.

    One SimPy timeout stands for the next flow completion; an arrival or departure re-rates the
    active flows (their goodput depends on ``n``, per UE, so the update is ``O(n)``) and replaces it
    (the earlier timeout is then ignored, by its token).

    Args:
        env: The SimPy environment.
        re_per_s: Resource elements (complex channel uses) per second of the carrier.
        goodput: Bits per RE of each UE's flow when ``n`` flows are active, ``[num_ues, F]``.
    """

    def __init__(self, env, re_per_s: float, goodput: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        self.env, self.re_per_s = env, re_per_s
        self.goodput = goodput.tolist()
        self.columns = goodput.shape[1]
        self.flows: list[list] = []  # [remaining, goodput row or None, then, arg, res_used, rate]
        self.last = 0.0
        self.token = 0
        self.busy_s = 0.0
        self._fire_cb = self._fire

    def send(self, ue: int, amount: float, unit: str):  # type: ignore[no-untyped-def]
        """Start a flow of ``amount`` bits (or channel uses); the event's value is the REs it used."""
        event = self.env.event()
        self.submit(ue, amount, unit, _succeed, event)
        return event

    def submit(self, ue: int, amount: float, unit: str, then: Then, arg: Any) -> None:
        """Start a flow of ``amount`` bits (or channel uses); when done, ``then(arg, REs it used)``."""
        self._advance()
        row = None if unit == "channel_uses" else self.goodput[ue]
        self.flows.append([amount, row, then, arg, 0.0, 0.0])
        self._schedule()

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self.last
        if self.flows and dt > 0:
            self.busy_s += dt
            share = self.re_per_s / len(self.flows) * dt
            for f in self.flows:
                f[0] -= f[5] * dt
                f[4] += share
        self.last = now

    def _schedule(self) -> None:
        self.token += 1
        if not self.flows:
            return
        n = len(self.flows)
        col = min(n, self.columns) - 1
        share = self.re_per_s / n
        soonest = math.inf
        for f in self.flows:
            row = f[1]
            f[5] = share if row is None else share * row[col]
            soonest = min(soonest, f[0] / f[5])
        Due(self.env, max(soonest, 0.0), self._fire_cb, self.token)

    def _fire(self, event: Any) -> None:
        if event._value != self.token:
            return
        self._advance()
        first = min(self.flows, key=lambda f: f[0] / f[5])
        done = [f for f in self.flows if f is first or f[0] <= 1e-9 * max(1.0, f[5])]
        gone = {id(f) for f in done}
        self.flows = [f for f in self.flows if id(f) not in gone]
        self._schedule()
        for f in done:
            f[2](f[3], f[4])


class BatchPool:
    """``servers`` edge servers fed by one FIFO line, serving batches of waiting tasks.

    A free server takes the first waiting task and the next waiting tasks of the same ``stage`` (a
    protocol's task index), at most ``len(factors)`` in all, and serves them together for
    ``factors[b - 1]`` times one task's seconds; all of the batch finish together. With one factor
    this is a plain FIFO multi-server queue (as :class:`simpy.Resource`). A batch costs one SimPy
    timeout (its end), a waiting task none.

    Args:
        env: The SimPy environment.
        servers: Number of servers.
        factors: Batch factors ``(factor(1) = 1, ..., factor(B))``.
    """

    def __init__(self, env, servers: int, factors: tuple[float, ...] = (1.0,)) -> None:  # type: ignore[no-untyped-def]
        self.env, self.free, self.factors = env, servers, factors
        self.waiting: deque[tuple[int, float, Then, Any]] = deque()  # (stage, seconds alone, then, arg)
        self.busy_s = 0.0
        self.batches: list[int] = []
        self._done_cb = self._done

    def serve(self, stage: int, seconds: float):  # type: ignore[no-untyped-def]
        """Queue one task of ``stage`` taking ``seconds`` alone; the event fires when it is done."""
        event = self.env.event()
        self.submit(stage, seconds, _succeed, event)
        return event

    def submit(self, stage: int, seconds: float, then: Then, arg: Any) -> None:
        """Queue one task of ``stage`` taking ``seconds`` alone; when done, ``then(arg, None)``."""
        if self.free:  # a free server means an empty line: the task starts alone, now
            self._begin([(stage, seconds, then, arg)])
        else:
            self.waiting.append((stage, seconds, then, arg))

    def _take(self) -> list[tuple[int, float, Then, Any]]:
        if len(self.factors) == 1:
            return [self.waiting.popleft()]
        stage = self.waiting[0][0]
        batch: list[tuple[int, float, Then, Any]] = []
        rest: deque[tuple[int, float, Then, Any]] = deque()
        for w in self.waiting:
            (batch if w[0] == stage and len(batch) < len(self.factors) else rest).append(w)
        self.waiting = rest
        return batch

    def _begin(self, batch: list[tuple[int, float, Then, Any]]) -> None:
        self.free -= 1
        seconds = batch[0][1] * self.factors[len(batch) - 1]
        self.busy_s += seconds
        self.batches.append(len(batch))
        Due(self.env, seconds, self._done_cb, batch)

    def _done(self, event: Any) -> None:
        self.free += 1
        if self.waiting:
            self._begin(self._take())
        for w in event._value:
            w[2](w[3], None)


@dataclass(frozen=True)
class CellState:
    """The static part of one replication: UE drop, goodput tables, outage flags, ES batch factors."""

    drop: Drop
    re_per_s: float
    goodput: dict[str, np.ndarray]
    outage: dict[str, np.ndarray]
    batch_factors: tuple[float, ...] = (1.0,)


def make_cell(cfg: NetsimConfig, replication: int, curve: BatchCurve | None = None) -> CellState:
    """Drop the UEs of ``replication`` and tabulate their link goodputs under the scheduler.

    Raises:
        MegenError: ``cfg.es_batch > 1`` without a batch ``curve``.
    """
    if cfg.es_batch > 1 and curve is None:
        raise MegenError(f"es_batch {cfg.es_batch} needs a measured batch curve")
    factors = curve.factors(cfg.es_batch) if curve is not None and cfg.es_batch > 1 else (1.0,)
    rng = np.random.default_rng(derive(cfg.seed, "netsim", "cell", replication, "drop"))
    drop = drop_ues(
        rng,
        cfg.num_ues,
        cfg.scenario,
        cfg.radius_m,
        cfg.min_distance_m,
        cfg.carrier_ghz,
        cfg.bandwidth_hz,
        cfg.ue_tx_power_dbm,
        cfg.bs_tx_power_dbm,
        cfg.ue_noise_figure_db,
        cfg.bs_noise_figure_db,
    )
    cols = min(cfg.num_ues, MAX_FLOW_COLUMNS)
    snr = {"uplink": drop.uplink_snr_db, "downlink": drop.downlink_snr_db}
    return CellState(
        drop,
        resource_elements_per_s(cfg.bandwidth_hz),
        {k: flow_goodput(v, cfg.scheduler, cols, cfg.harq_max_transmissions) for k, v in snr.items()},
        {k: in_outage(v, cfg.harq_max_transmissions) for k, v in snr.items()},
        factors,
    )


@dataclass(frozen=True)
class Arrivals:
    """Arrival times (seconds, ascending) and the UE of each request, shapes ``[requests]``."""

    time_s: np.ndarray
    ue: np.ndarray


def poisson_arrivals(cfg: NetsimConfig, rate: float, replication: int, requests: int) -> Arrivals:
    """``requests`` Poisson arrivals at ``rate`` per second, UEs uniform (common random numbers)."""
    base = ("netsim", "cell", replication)
    unit = np.random.default_rng(derive(cfg.seed, *base, "arrival")).exponential(1.0, requests)
    ue = np.random.default_rng(derive(cfg.seed, *base, "ue")).integers(0, cfg.num_ues, requests)
    return Arrivals(np.cumsum(unit) / rate, ue)


@dataclass(frozen=True)
class CellRun:
    """Per-request results of one simulation (shapes ``[requests]``) and resource totals.

    ``latency_s`` is ``inf`` for failed or unfinished requests; ``departure_s`` NaN for unfinished
    ones (failed requests leave at arrival); ``ue_energy_j`` and ``quality_db`` are NaN where the
    request was not served. ``es_busy_s`` is busy server-seconds, ``es_mean_batch`` the mean ES
    batch size (0 when no ES task ran), ``link_busy_s`` seconds with at least
    one active flow, ``end_s`` the last departure (when the simulation stopped, if unfinished),
    ``events`` the SimPy events scheduled (the cost of the run).
    """

    arrival_s: np.ndarray
    departure_s: np.ndarray
    latency_s: np.ndarray
    ue_energy_j: np.ndarray
    quality_db: np.ndarray
    es_busy_s: float
    es_mean_batch: float
    link_busy_s: dict[str, float]
    end_s: float
    finished: bool
    events: int = 0


@dataclass(frozen=True)
class TaskGraph:
    """A demand's tasks as flat lists for the event loop (index = task index, length ``T``).

    Attributes:
        kind: Resource of each task (``UE``, ``ES``, ``backhaul``, ``uplink``, ``downlink``).
        value: Seconds of a compute or backhaul task alone; bits or channel uses of a radio flow.
        unit: Unit of each task's amount (``flops``, ``bits``, ``channel_uses``).
        successors: Tasks that wait for each task.
        predecessors: Number of tasks each task waits for.
        roots: Tasks that wait for nothing (started at the request's arrival), ascending.
    """

    kind: tuple[str, ...]
    value: tuple[float, ...]
    unit: tuple[str, ...]
    successors: tuple[tuple[int, ...], ...]
    predecessors: tuple[int, ...]
    roots: tuple[int, ...]

    @classmethod
    def of(cls, tasks: tuple[Task, ...], rates: dict[str, float]) -> TaskGraph:
        """Flatten ``tasks`` with compute rates (FLOP/s of ``UE``, ``ES``; channel uses/s of ``backhaul``).

        Example:
            >>> ts = (Task("UE", "UE", 4, "flops", ()), Task("uplink", "UE>ES1", 8, "bits", ()),
            ...       Task("ES", "ES1", 6, "flops", (1,)), Task("UE", "UE", 2, "flops", (0, 2)))
            >>> g = TaskGraph.of(ts, {"UE": 2.0, "ES": 3.0, "backhaul": 1.0})
            >>> g.value, g.successors, g.predecessors, g.roots
            ((2.0, 8, 2.0, 1.0), ((3,), (2,), (3,), ()), (0, 0, 1, 2), (0, 1))
        """
        succ: list[list[int]] = [[] for _ in tasks]
        for i, t in enumerate(tasks):
            for a in t.after:
                succ[a].append(i)
        return cls(
            kind=tuple(t.resource for t in tasks),
            value=tuple(t.amount / rates[t.resource] if t.resource in rates else t.amount for t in tasks),
            unit=tuple(t.unit for t in tasks),
            successors=tuple(tuple(s) for s in succ),
            predecessors=tuple(len(t.after) for t in tasks),
            roots=tuple(i for i, t in enumerate(tasks) if not t.after),
        )


class _Request:
    """One request in flight: tasks still awaited per task, tasks left, uplink REs used so far."""

    __slots__ = ("index", "left", "pending", "ue", "uplink_re")

    def __init__(self, index: int, ue: int, graph: TaskGraph) -> None:
        self.index, self.ue = index, ue
        self.pending = list(graph.predecessors)
        self.left = len(graph.kind)
        self.uplink_re = 0.0


class _CellEvents:
    """The event-driven part of :func:`simulate_cell`: resources, arrivals and each request's tasks.

    A request is driven by callbacks, not by a SimPy process: each task, when done, counts down the
    tasks waiting for it and starts those with nothing left to wait for. So a task costs one SimPy
    event (its server's or the backhaul's timeout, or its share of the link's completion timeouts)
    and no process resumption; the queueing is unchanged (every compute task queues at its server).
    Tasks that become ready at the same instant are started in the order their last predecessors
    finish, the successors of one task in ascending index.
    """

    def __init__(self, env: Any, cfg: NetsimConfig, cell: CellState, graph: TaskGraph, n: int) -> None:
        self.env, self.graph = env, graph
        self.ue_procs = [BatchPool(env, 1) for _ in range(cfg.num_ues)]  # one FIFO processor per UE
        self.pool = BatchPool(env, cfg.num_es, cell.batch_factors)
        self.links = {k: SharedLink(env, cell.re_per_s, cell.goodput[k]) for k in RADIO}
        self.departure = np.full(n, np.nan)
        self.uplink_re = np.full(n, np.nan)
        self._done_cb, self._delay_cb = self._done, self._delayed
        starters = {
            "ES": self._start_es,
            "UE": self._start_ue,
            "backhaul": self._start_backhaul,
            "uplink": self._start_flow,
            "downlink": self._start_flow,
        }
        self._starts = [starters[k] for k in graph.kind]
        self._uplink = [k == "uplink" for k in graph.kind]
        self._value, self._successors = graph.value, graph.successors

    def source(self, arrivals: Arrivals, fails: np.ndarray):  # type: ignore[no-untyped-def]
        """SimPy process: each arrival at its time; a request from a UE in outage leaves at once."""
        env, graph, starts = self.env, self.graph, self._starts
        times, ues = arrivals.time_s.tolist(), arrivals.ue.tolist()
        fail = fails.tolist()
        for i in range(len(times)):
            yield env.timeout(times[i] - env.now)
            if fail[ues[i]]:
                self.departure[i] = env.now
                continue
            req = _Request(i, ues[i], graph)
            for t in graph.roots:
                starts[t](req, t)

    def _start_es(self, req: _Request, t: int) -> None:
        self.pool.submit(t, self._value[t], self._done_cb, (req, t))

    def _start_ue(self, req: _Request, t: int) -> None:
        self.ue_procs[req.ue].submit(t, self._value[t], self._done_cb, (req, t))

    def _start_backhaul(self, req: _Request, t: int) -> None:
        Due(self.env, self._value[t], self._delay_cb, (req, t))

    def _start_flow(self, req: _Request, t: int) -> None:
        link = self.links[self.graph.kind[t]]
        link.submit(req.ue, self.graph.value[t], self.graph.unit[t], self._done_cb, (req, t))

    def _delayed(self, event: Any) -> None:
        self._done(event._value, None)

    def _done(self, arg: tuple[_Request, int], used: Any) -> None:
        req, t = arg
        if self._uplink[t]:
            req.uplink_re += used
        req.left -= 1
        if req.left == 0:
            self.departure[req.index] = self.env.now
            self.uplink_re[req.index] = req.uplink_re
            return
        pending, starts = req.pending, self._starts
        for s in self._successors[t]:
            pending[s] -= 1
            if pending[s] == 0:
                starts[s](req, s)


def simulate_cell(
    cfg: NetsimConfig,
    cell: CellState,
    demand: Demand,
    profiles: Profiles,
    arrivals: Arrivals,
    stop_s: float,
) -> CellRun:
    """Simulate ``arrivals`` of one protocol's requests in ``cell`` until all leave or ``stop_s``."""
    import simpy

    env = simpy.Environment()
    n = len(arrivals.time_s)
    ue_rate = profiles.ue.peak_flops * profiles.ue.efficiency
    es_rate = profiles.es.peak_flops * profiles.es.efficiency
    rates = {"UE": ue_rate, "ES": es_rate, "backhaul": profiles.link("backhaul").bandwidth_hz}
    ue_tx_w = 10 ** ((cfg.ue_tx_power_dbm - 30) / 10)
    fails = np.zeros(cfg.num_ues, dtype=bool)
    for k in RADIO:
        if any(t.resource == k for t in demand.tasks):
            fails |= cell.outage[k]
    snr_min = np.minimum(cell.drop.uplink_snr_db, cell.drop.downlink_snr_db)
    ue_compute_j = demand.total("UE") / ue_rate * profiles.ue.power_w

    sim = _CellEvents(env, cfg, cell, TaskGraph.of(demand.tasks, rates), n)
    env.process(sim.source(arrivals, fails))
    env.run(until=stop_s)
    departure = sim.departure
    energy = ue_compute_j + ue_tx_w * sim.uplink_re / cell.re_per_s
    finished = bool(not np.isnan(departure).any())
    failed = fails[arrivals.ue]
    latency = departure - arrivals.time_s
    latency[failed | np.isnan(departure)] = np.inf
    quality = np.where(np.isfinite(latency), demand.quality_at(snr_min[arrivals.ue]), np.nan)
    return CellRun(
        arrival_s=arrivals.time_s,
        departure_s=departure,
        latency_s=latency,
        ue_energy_j=np.where(np.isfinite(latency), energy, np.nan),
        quality_db=quality,
        es_busy_s=sim.pool.busy_s,
        es_mean_batch=float(np.mean(sim.pool.batches)) if sim.pool.batches else 0.0,
        link_busy_s={k: sim.links[k].busy_s for k in RADIO},
        end_s=float(np.max(departure)) if finished else float(env.now),
        finished=finished,
        events=next(env._eid),  # SimPy numbers every scheduled event from this counter
    )


__all__ = [
    "RADIO",
    "Arrivals",
    "BatchPool",
    "CellRun",
    "CellState",
    "Due",
    "SharedLink",
    "TaskGraph",
    "make_cell",
    "poisson_arrivals",
    "simulate_cell",
]
