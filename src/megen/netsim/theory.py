"""Closed forms the single-queue simulator is checked against (all times in seconds).

* M/G/1 (one server, any service law): Pollaczek-Khinchine ``Wq = lambda E[S^2] / (2 (1 - rho))``.
  It contains M/M/1 (``E[S^2] = 2/mu^2``, so ``Wq = rho / (mu - lambda)``) and M/D/1
  (``E[S^2] = E[S]^2``, so ``Wq = rho E[S] / (2 (1 - rho))``).
* M/M/c: ``Wq = C(c, a) / (c mu - lambda)`` with offered load ``a = lambda / mu`` Erlangs and the
  Erlang C probability of waiting ``C(c, a)``, computed from the Erlang B recursion
  ``B(k) = a B(k-1) / (k + a B(k-1))`` (stable for any ``c``), ``C = B / (1 - rho (1 - B))``.

``W = Wq + E[S]`` in every case. ``rho = lambda E[S] / c`` must be below 1.

* Gated batch service with a flat batch curve (one server, deterministic ``D``, batches of any size
  cost ``D``; the ES pool with ``es_batch`` above the queue length): a service starts when a request
  finds the server idle, and at each service end all waiting requests start together. A busy period
  is a run of services, each followed by another iff a request arrived during it (probability
  ``1 - exp(-lambda D)``), so it holds ``exp(lambda D)`` services on average; the busy share is
  ``rho_b = D e^(lambda D) / (D e^(lambda D) + 1 / lambda)``, an arrival waits the residual of the
  service in progress (``D / 2`` on average, by PASTA) with probability ``rho_b``:
  ``W = D + rho_b D / 2``; the mean batch is ``lambda D + exp(-lambda D)``. Stable at any rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from megen.errors import MegenError
from megen.netsim.distributions import Exponential, Poisson, Service


def mm1_wait(rate: float, service_rate: float) -> float:
    """M/M/1 mean waiting time ``rho / (mu - lambda)`` seconds.

    Example:
        >>> round(mm1_wait(0.7, 1.0), 6)
        2.333333
    """
    _check_load(rate / service_rate)
    return (rate / service_rate) / (service_rate - rate)


def md1_wait(rate: float, service_s: float) -> float:
    """M/D/1 mean waiting time ``rho E[S] / (2 (1 - rho))`` seconds (half of M/M/1's).

    Example:
        >>> round(md1_wait(0.7, 1.0), 6)
        1.166667
    """
    rho = rate * service_s
    _check_load(rho)
    return rho * service_s / (2.0 * (1.0 - rho))


def mg1_wait(rate: float, mean_s: float, second_moment_s2: float) -> float:
    """M/G/1 Pollaczek-Khinchine mean waiting time ``lambda E[S^2] / (2 (1 - rho))`` seconds.

    Example:
        >>> mg1_wait(0.7, 1.0, 2.0) == mm1_wait(0.7, 1.0)
        True
    """
    rho = rate * mean_s
    _check_load(rho)
    return rate * second_moment_s2 / (2.0 * (1.0 - rho))


def erlang_c(servers: int, offered_erlangs: float) -> float:
    """Erlang C: probability that an arrival waits in M/M/c with ``a = lambda / mu`` Erlangs.

    Example:
        >>> round(erlang_c(1, 0.7), 6)  # M/M/1: P(wait) = rho
        0.7
        >>> round(erlang_c(2, 1.0), 6)  # 1/3 for c=2, a=1
        0.333333
    """
    rho = offered_erlangs / servers
    _check_load(rho)
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_erlangs * b / (k + offered_erlangs * b)
    return b / (1.0 - rho * (1.0 - b))


def mmc_wait(rate: float, service_rate: float, servers: int) -> float:
    """M/M/c mean waiting time ``C(c, a) / (c mu - lambda)`` seconds.

    Example:
        >>> mmc_wait(0.7, 1.0, 1) == mm1_wait(0.7, 1.0)
        True
    """
    return erlang_c(servers, rate / service_rate) / (servers * service_rate - rate)


def gated_batch_md(rate: float, service_s: float) -> tuple[float, float, float]:
    """``(W, busy share, mean batch)`` of gated batch service with a flat curve (module docstring).

    Example:
        >>> w, busy, batch = gated_batch_md(200.0, 0.01)
        >>> round(w, 6), round(busy, 4), round(batch, 4)
        (0.014683, 0.9366, 2.1353)
    """
    import math

    if rate <= 0 or service_s <= 0:
        raise MegenError("gated batch service needs a positive rate and service time")
    runs = math.exp(rate * service_s)
    busy = service_s * runs / (service_s * runs + 1.0 / rate)
    return service_s + busy * service_s / 2.0, busy, rate * service_s + 1.0 / runs


def _check_load(rho: float) -> None:
    if not 0 <= rho < 1:
        raise MegenError(f"no steady state: offered load per server rho = {rho:.4g} must be below 1")


@dataclass(frozen=True)
class Theory:
    """A closed-form answer: mean waiting time, mean time in system (seconds) and its formula's name."""

    mean_wait_s: float
    mean_time_in_system_s: float
    formula: str


def queue_theory(arrival: Poisson, service: Service, servers: int) -> Theory | None:
    """The closed form for this queue, or ``None`` where none is exact (M/G/c with c > 1, or rho >= 1).

    Example:
        >>> from megen.netsim.distributions import Deterministic
        >>> queue_theory(Poisson(0.7), Deterministic(1.0), 1).formula
        'M/D/1 (Pollaczek-Khinchine)'
    """
    mean = service.mean()
    if arrival.rate * mean / servers >= 1:
        return None
    if servers == 1:
        wait = mg1_wait(arrival.rate, mean, service.second_moment())
        name = {"Exponential": "M/M/1", "Deterministic": "M/D/1"}.get(type(service).__name__, "M/G/1")
        formula = f"{name} (Pollaczek-Khinchine)"
    elif isinstance(service, Exponential):
        wait = mmc_wait(arrival.rate, 1.0 / mean, servers)
        formula = f"M/M/{servers} (Erlang C)"
    else:
        return None
    return Theory(wait, wait + mean, formula)


__all__ = [
    "Theory",
    "erlang_c",
    "gated_batch_md",
    "md1_wait",
    "mg1_wait",
    "mm1_wait",
    "mmc_wait",
    "queue_theory",
]
