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
each when its predecessors are done. A request from a UE in outage on a link it needs fails at once.

**Measures** over the requests after the warm-up share: latency (arrival to the last task's end;
``inf`` for failed or unfinished requests), the share within the deadline, ES and spectrum
utilisation over the run, UE energy per served request (UE compute plus uplink transmission at the
UE's power for the REs its flows used), delivered quality (the demand's fidelity PSNR at the UE's
lower link SNR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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


class SharedLink:
    """Fluid OFDMA link: ``n`` active flows each get ``1/n`` of the REs per second.

    Args:
        env: The SimPy environment.
        re_per_s: Resource elements (complex channel uses) per second of the carrier.
        goodput: Bits per RE of each UE's flow when ``n`` flows are active, ``[num_ues, F]``.
    """

    def __init__(self, env, re_per_s: float, goodput: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        self.env, self.re_per_s = env, re_per_s
        self.goodput = goodput.tolist()
        self.columns = goodput.shape[1]
        self.flows: list[list] = []  # [remaining, per_re, ue, event, res_used, rate]
        self.last = 0.0
        self.token = 0
        self.busy_s = 0.0

    def send(self, ue: int, amount: float, unit: str):  # type: ignore[no-untyped-def]
        """Start a flow of ``amount`` bits (or channel uses); the event's value is the REs it used."""
        self._advance()
        event = self.env.event()
        self.flows.append([amount, 0.0, ue, event, 0.0, 0.0, unit])
        self._schedule()
        return event

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
            per_re = 1.0 if f[6] == "channel_uses" else self.goodput[f[2]][col]
            f[5] = share * per_re
            soonest = min(soonest, f[0] / f[5])
        token = self.token
        self.env.timeout(max(soonest, 0.0)).callbacks.append(lambda _e, t=token: self._fire(t))

    def _fire(self, token: int) -> None:
        if token != self.token:
            return
        self._advance()
        first = min(self.flows, key=lambda f: f[0] / f[5])
        done = [f for f in self.flows if f is first or f[0] <= 1e-9 * max(1.0, f[5])]
        gone = {id(f) for f in done}
        self.flows = [f for f in self.flows if id(f) not in gone]
        for f in done:
            f[3].succeed(f[4])
        self._schedule()


class BatchPool:
    """``servers`` edge servers fed by one FIFO line, serving batches of waiting tasks.

    A free server takes the first waiting task and the next waiting tasks of the same ``stage`` (a
    protocol's task index), at most ``len(factors)`` in all, and serves them together for
    ``factors[b - 1]`` times one task's seconds; all of the batch finish together. With one factor
    this is a plain FIFO multi-server queue (as :class:`simpy.Resource`).

    Args:
        env: The SimPy environment.
        servers: Number of servers.
        factors: Batch factors ``(factor(1) = 1, ..., factor(B))``.
    """

    def __init__(self, env, servers: int, factors: tuple[float, ...] = (1.0,)) -> None:  # type: ignore[no-untyped-def]
        self.env, self.free, self.factors = env, servers, factors
        self.waiting: list[tuple[int, float, Any]] = []  # (stage, seconds alone, event)
        self.head = 0
        self.busy_s = 0.0
        self.batches: list[int] = []

    def serve(self, stage: int, seconds: float):  # type: ignore[no-untyped-def]
        """Queue one task of ``stage`` taking ``seconds`` alone; the event fires when it is done."""
        event = self.env.event()
        self.waiting.append((stage, seconds, event))
        self._start()
        return event

    def _take(self) -> list[tuple[int, float, Any]]:
        first = self.waiting[self.head]
        if len(self.factors) == 1:
            self.head += 1
            return [first]
        batch: list[tuple[int, float, Any]] = []
        rest: list[tuple[int, float, Any]] = []
        for w in self.waiting[self.head :]:
            (batch if w[0] == first[0] and len(batch) < len(self.factors) else rest).append(w)
        self.waiting, self.head = rest, 0
        return batch

    def _start(self) -> None:
        while self.free and self.head < len(self.waiting):
            batch = self._take()
            if self.head > 1024:
                self.waiting, self.head = self.waiting[self.head :], 0
            self.free -= 1
            seconds = batch[0][1] * self.factors[len(batch) - 1]
            self.busy_s += seconds
            self.batches.append(len(batch))
            self.env.timeout(seconds).callbacks.append(lambda _e, b=batch: self._done(b))

    def _done(self, batch: list[tuple[int, float, Any]]) -> None:
        self.free += 1
        for w in batch:
            w[2].succeed()
        self._start()


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
    one active flow, ``end_s`` the last departure (when the simulation stopped, if unfinished).
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


def simulate_cell(
    cfg: NetsimConfig,
    cell: CellState,
    demand: Demand,
    profiles: Profiles,
    arrivals: Arrivals,
    stop_s: float,
) -> CellRun:
    """Simulate ``arrivals`` of one protocol's requests in ``cell`` until all leave or ``stop_s``.

    Long because the SimPy processes share the run's state through closures.
    """
    import simpy

    env = simpy.Environment()
    n = len(arrivals.time_s)
    ue_procs = [BatchPool(env, 1) for _ in range(cfg.num_ues)]  # one FIFO processor per UE
    pool = BatchPool(env, cfg.num_es, cell.batch_factors)
    links = {k: SharedLink(env, cell.re_per_s, cell.goodput[k]) for k in RADIO}
    ue_rate = profiles.ue.peak_flops * profiles.ue.efficiency
    es_rate = profiles.es.peak_flops * profiles.es.efficiency
    backhaul_hz = profiles.link("backhaul").bandwidth_hz
    ue_tx_w = 10 ** ((cfg.ue_tx_power_dbm - 30) / 10)
    departure = np.full(n, np.nan)
    energy = np.full(n, np.nan)
    needs = {k: any(t.resource == k for t in demand.tasks) for k in RADIO}
    fails = np.zeros(cfg.num_ues, dtype=bool)
    for k in RADIO:
        if needs[k]:
            fails |= cell.outage[k]
    snr_min = np.minimum(cell.drop.uplink_snr_db, cell.drop.downlink_snr_db)
    ue_compute_j = demand.total("UE") / ue_rate * profiles.ue.power_w

    order, owner, signal = chain_cover(demand.tasks)
    rates = {"UE": ue_rate, "ES": es_rate, "backhaul": backhaul_hz}
    # per chain: (task index, resource, seconds or amount, unit, tasks of other chains it waits for)
    steps = [
        [
            (i, t.resource, t.amount / rates[t.resource] if t.resource in rates else t.amount, t.unit, cross)
            for i in chain_ids
            for t, cross in [(demand.tasks[i], tuple(a for a in demand.tasks[i].after if owner[a] != c))]
        ]
        for c, chain_ids in enumerate(order)
    ]

    def chain(c: int, ue: int, done: dict, uplink_re: list):  # type: ignore[no-untyped-def]
        for i, resource, amount, unit, cross in steps[c]:
            if cross:
                yield env.all_of([done[a] for a in cross]) if len(cross) > 1 else done[cross[0]]
            if resource == "UE":
                yield ue_procs[ue].serve(i, amount)
            elif resource == "ES":
                yield pool.serve(i, amount)
            elif resource == "backhaul":
                yield env.timeout(amount)
            else:
                used = yield links[resource].send(ue, amount, unit)
                if resource == "uplink":
                    uplink_re.append(used)
            if i in done:
                done[i].succeed()

    def request(i: int, ue: int):  # type: ignore[no-untyped-def]
        uplink_re: list[float] = []
        done = {a: env.event() for a in signal}
        others = [env.process(chain(c, ue, done, uplink_re)) for c in range(1, len(order))]
        yield from chain(0, ue, done, uplink_re)
        if others:
            yield env.all_of(others)
        departure[i] = env.now
        energy[i] = ue_compute_j + ue_tx_w * sum(uplink_re) / cell.re_per_s

    def source():  # type: ignore[no-untyped-def]
        times, ues = arrivals.time_s.tolist(), arrivals.ue.tolist()
        for i in range(n):
            yield env.timeout(times[i] - env.now)
            if fails[ues[i]]:
                departure[i] = env.now
                continue
            env.process(request(i, ues[i]))

    env.process(source())
    env.run(until=stop_s)
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
        es_busy_s=pool.busy_s,
        es_mean_batch=float(np.mean(pool.batches)) if pool.batches else 0.0,
        link_busy_s={k: links[k].busy_s for k in RADIO},
        end_s=float(np.max(departure)) if finished else float(env.now),
        finished=finished,
    )


def chain_cover(tasks: tuple[Task, ...]) -> tuple[list[list[int]], list[int], set[int]]:
    """Cut a request's task graph into chains run one after the other by one SimPy process each.

    Returns:
        ``(chains, owner, signal)``: task indices of each chain in order, the chain of each task, and
        the tasks another chain waits for (they signal an event when done).

    Example:
        >>> ts = (Task("UE", "UE", 1, "flops", ()), Task("uplink", "UE>ES1", 1, "bits", ()),
        ...       Task("ES", "ES1", 1, "flops", (1,)), Task("UE", "UE", 1, "flops", (0, 2)))
        >>> chain_cover(ts)
        ([[0, 3], [1, 2]], [0, 1, 1, 0], {2})
    """
    chains: list[list[int]] = []
    owner: list[int] = []
    for i, t in enumerate(tasks):
        c = next((owner[a] for a in t.after if chains[owner[a]][-1] == a), None)
        if c is None:
            chains.append([i])
            owner.append(len(chains) - 1)
        else:
            chains[c].append(i)
            owner.append(c)
    signal = {a for i, t in enumerate(tasks) for a in t.after if owner[a] != owner[i]}
    return chains, owner, signal


__all__ = [
    "RADIO",
    "Arrivals",
    "BatchPool",
    "CellRun",
    "CellState",
    "SharedLink",
    "chain_cover",
    "make_cell",
    "poisson_arrivals",
    "simulate_cell",
]
