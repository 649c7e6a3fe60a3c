"""One FIFO queue with ``C`` identical servers, simulated with SimPy: the validated event core.

**Model.** Requests arrive by a Poisson process; each waits in one FIFO line for any of ``C`` servers
(a :class:`simpy.Resource` of capacity ``C``) and holds it for its service time. Every random draw
comes from :class:`numpy.random.Generator` streams keyed by :func:`megen.rng.derive`:
``(seed, "netsim", "queue", replication, "arrival")`` for the inter-arrival times and
``(seed, "netsim", "queue", replication, "service")`` for the service times, so replications are
independent and a seed gives identical numbers on every run. The trace records, per request, its
arrival, start of service and departure (seconds of simulated time).

**Estimates** (``requests`` in arrival order; times in seconds):

* A warm-up prefix, the first ``warmup`` fraction of requests (10% by default), is dropped; the
  measurement window runs from the arrival of the first kept request to the last arrival.
* ``Wq`` and ``W``: mean waiting time and mean time in system of the kept requests.
* 95% confidence intervals: with one replication by **batch means** (the kept requests cut into
  :data:`BATCHES` = 20 consecutive batches, Student t with 19 degrees of freedom on the batch
  means); with ``R >= 2`` replications, Student t across the ``R`` replication means (point
  estimates are then means over replications).
* ``L``: time-average number in system over the window, integrated from the trace (each request
  counts for the part of ``[arrival, departure]`` inside the window); ``lambda_hat``: kept arrivals
  per second of window; utilisation: busy server-seconds in the window over ``C`` times its length.
* Little's law check: ``|L - lambda_hat W| / L`` per replication; the largest is reported.

**Unstable input.** With offered load ``rho = lambda E[S] / C >= 1`` there is no steady state; this is
detected before running. The model then runs at most :data:`UNSTABLE_MAX_REQUESTS` arrivals, stops
at the last arrival, and reports the backlog growth rate (requests per second: the least-squares
slope of the number in system at each kept arrival; about ``lambda - C / E[S]``); the steady-state
fields are ``None``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from megen.errors import MegenError
from megen.netsim.distributions import Poisson, Service
from megen.netsim.theory import Theory, queue_theory
from megen.rng import derive

WARMUP_FRACTION = 0.1
BATCHES = 20
CONFIDENCE = 0.95
MIN_REQUESTS = 200
MAX_REQUESTS = 10_000_000
MAX_SERVERS = 1024
MAX_REPLICATIONS = 1000
UNSTABLE_MAX_REQUESTS = 50_000
"""Arrivals simulated per replication when ``rho >= 1`` (the backlog grows without bound)."""


@dataclass(frozen=True)
class Trace:
    """Per-request times of one replication, each shape ``[requests]``, float64 seconds.

    ``start_s`` and ``departure_s`` are NaN for requests not started or not finished when the run
    stopped (only in unstable runs, which stop at the last arrival).
    """

    arrival_s: np.ndarray
    start_s: np.ndarray
    departure_s: np.ndarray


def run_trace(
    arrival: Poisson,
    service: Service,
    servers: int,
    requests: int,
    seed: int,
    replication: int,
    *,
    drain: bool,
) -> Trace:
    """Simulate one replication with SimPy and return its trace.

    Args:
        arrival: The Poisson arrival process.
        service: The service-time distribution.
        servers: Number of servers ``C`` (capacity of the FIFO resource).
        requests: Number of arrivals to generate.
        seed: Master seed.
        replication: Replication index (names the random streams).
        drain: Run until every request has left (stable queues); otherwise stop at the last arrival.
    """
    import simpy

    inter = arrival.sample(
        np.random.default_rng(derive(seed, "netsim", "queue", replication, "arrival")), requests
    )
    work = service.sample(
        np.random.default_rng(derive(seed, "netsim", "queue", replication, "service")), requests
    )
    inter_list, work_list = inter.tolist(), work.tolist()
    nan = float("nan")
    arrived, started, departed = [nan] * requests, [nan] * requests, [nan] * requests
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=servers)

    def customer(i: int):  # type: ignore[no-untyped-def]
        with resource.request() as req:
            yield req
            started[i] = env.now
            yield env.timeout(work_list[i])
            departed[i] = env.now

    def source():  # type: ignore[no-untyped-def]
        for i in range(requests):
            yield env.timeout(inter_list[i])
            arrived[i] = env.now
            env.process(customer(i))

    env.process(source())
    if drain:
        env.run()
    else:
        env.run(until=float(np.sum(inter)) * (1 + 1e-12))
    return Trace(np.asarray(arrived), np.asarray(started), np.asarray(departed))


@dataclass(frozen=True)
class ReplicationStats:
    """Estimates from one stable replication (seconds, requests, requests per second)."""

    mean_wait_s: float
    mean_time_in_system_s: float
    mean_wait_ci_s: tuple[float, float]
    mean_time_in_system_ci_s: tuple[float, float]
    mean_in_system: float
    throughput_per_s: float
    utilisation: float
    littles_law_relative_error: float


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% Student-t confidence interval of the mean of ``values`` (shape ``[n]``, ``n >= 2``)."""
    from scipy import stats

    n = len(values)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * float(np.std(values, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(values))
    return mean - half, mean + half


def _overlap(lo: np.ndarray, hi: np.ndarray, t0: float, t1: float) -> float:
    """Total length of the intervals ``[lo_i, hi_i]`` inside ``[t0, t1]``."""
    return float(np.clip(np.minimum(hi, t1) - np.maximum(lo, t0), 0.0, None).sum())


def measure(trace: Trace, servers: int, warmup: float) -> ReplicationStats:
    """Estimates of a drained (stable) trace; see the module docstring for the definitions."""
    kept = slice(int(len(trace.arrival_s) * warmup), None)
    arrival = trace.arrival_s[kept]
    wait = trace.start_s[kept] - arrival
    in_system = trace.departure_s[kept] - arrival
    t0, t1 = float(arrival[0]), float(arrival[-1])
    length = t1 - t0
    mean_in_system = _overlap(trace.arrival_s, trace.departure_s, t0, t1) / length
    throughput = (len(arrival) - 1) / length
    mean_w = float(in_system.mean())
    little = abs(mean_in_system - throughput * mean_w) / mean_in_system if mean_in_system > 0 else 0.0
    return ReplicationStats(
        mean_wait_s=float(wait.mean()),
        mean_time_in_system_s=mean_w,
        mean_wait_ci_s=t_interval(np.array([b.mean() for b in np.array_split(wait, BATCHES)])),
        mean_time_in_system_ci_s=t_interval(np.array([b.mean() for b in np.array_split(in_system, BATCHES)])),
        mean_in_system=mean_in_system,
        throughput_per_s=throughput,
        utilisation=_overlap(trace.start_s, trace.departure_s, t0, t1) / (servers * length),
        littles_law_relative_error=little,
    )


def backlog_growth(trace: Trace, warmup: float) -> float:
    """Least-squares slope (requests per second) of the number in system at each kept arrival."""
    departures = np.sort(trace.departure_s[np.isfinite(trace.departure_s)])
    first = int(len(trace.arrival_s) * warmup)
    times = trace.arrival_s[first:]
    in_system = np.arange(first + 1, len(trace.arrival_s) + 1) - np.searchsorted(departures, times, "right")
    return float(np.polyfit(times - times[0], in_system.astype(float), 1)[0])


@dataclass(frozen=True)
class QueueResult:
    """Result of :func:`simulate_queue` (times in seconds, rates per second).

    The steady-state fields (``mean_wait_s`` ... ``littles_law_relative_error``) are ``None`` when
    ``stable`` is False; ``backlog_growth_per_s`` is ``None`` when it is True. ``theory`` is the
    closed form where one exists (M/G/1, M/M/c), and ``relative_error_vs_theory`` holds
    ``|simulated - theory| / theory`` for ``mean_wait`` and ``mean_time_in_system``.
    """

    arrival: str
    service: str
    servers: int
    requests: int
    replications: int
    seed: int
    warmup_fraction: float
    offered_load: float
    stable: bool
    requests_simulated: int
    mean_wait_s: float | None
    mean_wait_ci_s: tuple[float, float] | None
    mean_time_in_system_s: float | None
    mean_time_in_system_ci_s: tuple[float, float] | None
    mean_in_system: float | None
    throughput_per_s: float | None
    utilisation: float | None
    littles_law_relative_error: float | None
    backlog_growth_per_s: float | None
    theory: Theory | None
    relative_error_vs_theory: dict[str, float] | None

    def to_dict(self) -> dict[str, object]:
        """One JSON-ready object: ``inputs``, the estimates, ``L``, ``throughput``, ``theory`` ...

        Keys: ``inputs`` (arrival, service, servers, requests, replications, seed, warmup_fraction),
        ``offered_load``, ``stable``, ``requests_simulated``, ``mean_wait_s``, ``mean_wait_ci_s``,
        ``mean_time_in_system_s``, ``mean_time_in_system_ci_s``, ``L`` (requests), ``throughput``
        (requests per second), ``utilisation``, ``littles_law_relative_error``,
        ``backlog_growth_per_s``, ``theory`` (``mean_wait_s``, ``mean_time_in_system_s``,
        ``formula``; or null) and ``relative_error_vs_theory`` (or null).
        """
        return {
            "inputs": {
                "arrival": self.arrival,
                "service": self.service,
                "servers": self.servers,
                "requests": self.requests,
                "replications": self.replications,
                "seed": self.seed,
                "warmup_fraction": self.warmup_fraction,
            },
            "offered_load": self.offered_load,
            "stable": self.stable,
            "requests_simulated": self.requests_simulated,
            "mean_wait_s": self.mean_wait_s,
            "mean_wait_ci_s": _pair(self.mean_wait_ci_s),
            "mean_time_in_system_s": self.mean_time_in_system_s,
            "mean_time_in_system_ci_s": _pair(self.mean_time_in_system_ci_s),
            "L": self.mean_in_system,
            "throughput": self.throughput_per_s,
            "utilisation": self.utilisation,
            "littles_law_relative_error": self.littles_law_relative_error,
            "backlog_growth_per_s": self.backlog_growth_per_s,
            "theory": asdict(self.theory) if self.theory is not None else None,
            "relative_error_vs_theory": self.relative_error_vs_theory,
        }


def _pair(ci: tuple[float, float] | None) -> list[float] | None:
    return list(ci) if ci is not None else None


def check_queue_inputs(servers: int, requests: int, replications: int, seed: int, warmup: float) -> None:
    """Raise :class:`MegenError` (one line) for out-of-range sizes, seed or warm-up fraction."""
    if not 1 <= servers <= MAX_SERVERS:
        raise MegenError(f"--servers must be in 1..{MAX_SERVERS}, got {servers}")
    if not MIN_REQUESTS <= requests <= MAX_REQUESTS:
        raise MegenError(f"--requests must be in {MIN_REQUESTS}..{MAX_REQUESTS}, got {requests}")
    if not 1 <= replications <= MAX_REPLICATIONS:
        raise MegenError(f"--replications must be in 1..{MAX_REPLICATIONS}, got {replications}")
    if not 0 <= seed < 2**63:
        raise MegenError(f"--seed must be in 0..2**63-1, got {seed}")
    if not 0 <= warmup <= 0.5:
        raise MegenError(f"the warm-up fraction must be in [0, 0.5], got {warmup}")


def simulate_queue(
    arrival: Poisson,
    service: Service,
    servers: int,
    requests: int,
    seed: int,
    warmup: float = WARMUP_FRACTION,
    replications: int = 1,
) -> QueueResult:
    """Simulate the ``M/G/C`` FIFO queue and estimate its steady state (see the module docstring).

    Args:
        arrival: Poisson arrivals (rate per second).
        service: Service-time distribution (seconds).
        servers: Number of servers ``C``, 1..1024.
        requests: Arrivals per replication, 200..10 000 000 (at most 50 000 when unstable).
        seed: Master seed ``>= 0``.
        warmup: Fraction of the first requests dropped from the estimates, in ``[0, 0.5]``.
        replications: Independent replications ``R``, 1..1000.

    Returns:
        A :class:`QueueResult`; identical for identical arguments.

    Raises:
        MegenError: an argument out of range.

    Example:
        >>> from megen.netsim.distributions import Deterministic
        >>> r = simulate_queue(Poisson(0.5), Deterministic(1.0), 1, 2000, seed=0)
        >>> r.stable, r.littles_law_relative_error < 0.02
        (True, True)
    """
    check_queue_inputs(servers, requests, replications, seed, warmup)
    rho = arrival.rate * service.mean() / servers
    stable = rho < 1
    n = requests if stable else min(requests, UNSTABLE_MAX_REQUESTS)
    traces = [run_trace(arrival, service, servers, n, seed, r, drain=stable) for r in range(replications)]
    head = dict(
        arrival=arrival.text(),
        service=service.text(),
        servers=servers,
        requests=requests,
        replications=replications,
        seed=seed,
        warmup_fraction=warmup,
        offered_load=rho,
        stable=stable,
        requests_simulated=n,
    )
    if not stable:
        growth = float(np.mean([backlog_growth(t, warmup) for t in traces]))
        return QueueResult(
            **head,  # type: ignore[arg-type]
            mean_wait_s=None,
            mean_wait_ci_s=None,
            mean_time_in_system_s=None,
            mean_time_in_system_ci_s=None,
            mean_in_system=None,
            throughput_per_s=None,
            utilisation=None,
            littles_law_relative_error=None,
            backlog_growth_per_s=growth,
            theory=None,
            relative_error_vs_theory=None,
        )
    return _combine(
        head, [measure(t, servers, warmup) for t in traces], queue_theory(arrival, service, servers)
    )


def _combine(head: dict[str, object], stats: list[ReplicationStats], theory: Theory | None) -> QueueResult:
    """Pool replications: means of the estimates; CIs by batch means (R = 1) or across replications."""
    wait = np.array([s.mean_wait_s for s in stats])
    system = np.array([s.mean_time_in_system_s for s in stats])
    if len(stats) == 1:
        wait_ci, system_ci = stats[0].mean_wait_ci_s, stats[0].mean_time_in_system_ci_s
    else:
        wait_ci, system_ci = t_interval(wait), t_interval(system)
    mean_wait, mean_system = float(wait.mean()), float(system.mean())
    errors = None
    if theory is not None:
        errors = {
            "mean_wait": abs(mean_wait - theory.mean_wait_s) / theory.mean_wait_s
            if theory.mean_wait_s
            else 0.0,
            "mean_time_in_system": abs(mean_system - theory.mean_time_in_system_s)
            / theory.mean_time_in_system_s,
        }
    return QueueResult(
        **head,  # type: ignore[arg-type]
        mean_wait_s=mean_wait,
        mean_wait_ci_s=wait_ci,
        mean_time_in_system_s=mean_system,
        mean_time_in_system_ci_s=system_ci,
        mean_in_system=float(np.mean([s.mean_in_system for s in stats])),
        throughput_per_s=float(np.mean([s.throughput_per_s for s in stats])),
        utilisation=float(np.mean([s.utilisation for s in stats])),
        littles_law_relative_error=max(s.littles_law_relative_error for s in stats),
        backlog_growth_per_s=None,
        theory=theory,
        relative_error_vs_theory=errors,
    )


__all__ = [
    "BATCHES",
    "MAX_REPLICATIONS",
    "MAX_REQUESTS",
    "MAX_SERVERS",
    "UNSTABLE_MAX_REQUESTS",
    "WARMUP_FRACTION",
    "QueueResult",
    "ReplicationStats",
    "Trace",
    "backlog_growth",
    "check_queue_inputs",
    "measure",
    "run_trace",
    "simulate_queue",
    "t_interval",
]
