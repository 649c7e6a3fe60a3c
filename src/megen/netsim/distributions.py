"""Arrival and service-time distributions of the queue simulator, parsed from short text.

Text forms (all times in seconds, rates per second):

* arrivals: ``poisson:RATE`` (``RATE > 0``; exponential inter-arrival times of mean ``1/RATE``);
* service: ``exponential:MEAN``, ``deterministic:VALUE``, ``uniform:LO,HI`` (``0 <= LO <= HI``,
  ``HI > 0``) and ``lognormal:MU,SIGMA`` (``MU`` and ``SIGMA > 0`` of the underlying normal, so the
  service time is ``exp(MU + SIGMA * Z)`` seconds).

Each distribution is a frozen dataclass with ``mean()``, ``second_moment()`` (``E[S^2]``, for the
Pollaczek-Khinchine formula) and ``sample(rng, size)``, which draws from a :class:`numpy.random.Generator`.
Bad text or parameters raise :class:`MegenError` with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from megen.errors import MegenError

MAX_PARAMETER = 1e12
"""Largest accepted rate or time parameter (larger values overflow sums of simulated times)."""
MAX_LOG_PARAMETER = 20.0
"""Largest |MU| and SIGMA of a lognormal (``exp(20)`` s is already 15 000 years)."""


@dataclass(frozen=True)
class Poisson:
    """Poisson arrivals at ``rate`` requests per second."""

    rate: float

    def mean(self) -> float:
        """Mean inter-arrival time in seconds (``1 / rate``)."""
        return 1.0 / self.rate

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` inter-arrival times in seconds, shape ``[size]``, float64."""
        return rng.exponential(1.0 / self.rate, size)

    def text(self) -> str:
        """The text form this was parsed from (normalised)."""
        return f"poisson:{self.rate:g}"


@dataclass(frozen=True)
class Exponential:
    """Exponential service times of mean ``mean_s`` seconds."""

    mean_s: float

    def mean(self) -> float:
        """``E[S]`` in seconds."""
        return self.mean_s

    def second_moment(self) -> float:
        """``E[S^2] = 2 mean^2`` in seconds squared."""
        return 2.0 * self.mean_s**2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` service times in seconds, shape ``[size]``."""
        return rng.exponential(self.mean_s, size)

    def text(self) -> str:
        """Normalised text form."""
        return f"exponential:{self.mean_s:g}"


@dataclass(frozen=True)
class Deterministic:
    """Every service takes ``value_s`` seconds (draws nothing from the generator)."""

    value_s: float

    def mean(self) -> float:
        """``E[S]`` in seconds."""
        return self.value_s

    def second_moment(self) -> float:
        """``E[S^2] = value^2``."""
        return self.value_s**2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` copies of ``value_s``, shape ``[size]``."""
        return np.full(size, self.value_s)

    def text(self) -> str:
        """Normalised text form."""
        return f"deterministic:{self.value_s:g}"


@dataclass(frozen=True)
class Uniform:
    """Service times uniform on ``[lo_s, hi_s]`` seconds."""

    lo_s: float
    hi_s: float

    def mean(self) -> float:
        """``E[S] = (lo + hi) / 2``."""
        return 0.5 * (self.lo_s + self.hi_s)

    def second_moment(self) -> float:
        """``E[S^2] = (lo^2 + lo hi + hi^2) / 3``."""
        return (self.lo_s**2 + self.lo_s * self.hi_s + self.hi_s**2) / 3.0

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` service times in seconds, shape ``[size]``."""
        return rng.uniform(self.lo_s, self.hi_s, size)

    def text(self) -> str:
        """Normalised text form."""
        return f"uniform:{self.lo_s:g},{self.hi_s:g}"


@dataclass(frozen=True)
class Lognormal:
    """Service times ``exp(mu + sigma Z)`` seconds, ``Z`` standard normal."""

    mu: float
    sigma: float

    def mean(self) -> float:
        """``E[S] = exp(mu + sigma^2 / 2)``."""
        return math.exp(self.mu + 0.5 * self.sigma**2)

    def second_moment(self) -> float:
        """``E[S^2] = exp(2 mu + 2 sigma^2)``."""
        return math.exp(2.0 * self.mu + 2.0 * self.sigma**2)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` service times in seconds, shape ``[size]``."""
        return rng.lognormal(self.mu, self.sigma, size)

    def text(self) -> str:
        """Normalised text form."""
        return f"lognormal:{self.mu:g},{self.sigma:g}"


Service = Exponential | Deterministic | Uniform | Lognormal
SERVICE_KINDS = ("exponential", "deterministic", "uniform", "lognormal")


def _numbers(text: str, what: str, count: int) -> tuple[str, list[float]]:
    """Split ``KIND:A[,B]`` into the kind and ``count`` finite floats."""
    if not isinstance(text, str) or ":" not in text:
        raise MegenError(f"{what} must look like KIND:PARAMETERS, got {text!r}")
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    parts = [p.strip() for p in rest.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise MegenError(f"{what} {text!r}: parameters must be numbers") from None
    if len(values) != count:
        raise MegenError(f"{what} {text!r}: {kind} takes {count} parameter(s), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise MegenError(f"{what} {text!r}: parameters must be finite")
    return kind, values


def _positive(value: float, name: str, text: str) -> float:
    if not 0 < value <= MAX_PARAMETER:
        raise MegenError(f"{text!r}: {name} must be in (0, {MAX_PARAMETER:g}], got {value:g}")
    return value


def parse_arrival(text: str) -> Poisson:
    """Parse ``poisson:RATE`` (requests per second, ``RATE > 0``).

    Raises:
        MegenError: another kind, a non-number, or ``RATE <= 0``.

    Example:
        >>> parse_arrival("poisson:2.5")
        Poisson(rate=2.5)
    """
    if isinstance(text, str) and text.strip().lower().partition(":")[0] not in ("poisson",):
        raise MegenError(f"unknown arrival process {text!r}; use poisson:RATE")
    _, (rate,) = _numbers(text, "--arrival", 1)
    return Poisson(_positive(rate, "RATE", text))


def parse_service(text: str) -> Service:
    """Parse a service-time distribution (see the module docstring for the forms).

    Raises:
        MegenError: an unknown kind, a wrong parameter count, a non-positive time, ``LO > HI``.

    Example:
        >>> parse_service("uniform:0.5,1.5").mean()
        1.0
        >>> parse_service("deterministic:0.2")
        Deterministic(value_s=0.2)
    """
    kind = text.strip().lower().partition(":")[0] if isinstance(text, str) else ""
    if kind not in SERVICE_KINDS:
        raise MegenError(f"unknown service distribution {text!r}; choose one of {', '.join(SERVICE_KINDS)}")
    if kind in ("exponential", "deterministic"):
        _, (value,) = _numbers(text, "--service", 1)
        value = _positive(value, "the time", text)
        return Exponential(value) if kind == "exponential" else Deterministic(value)
    _, (a, b) = _numbers(text, "--service", 2)
    if kind == "uniform":
        if a < 0:
            raise MegenError(f"{text!r}: LO must be >= 0, got {a:g}")
        if a > b:
            raise MegenError(f"{text!r}: LO must not exceed HI ({a:g} > {b:g})")
        return Uniform(a, _positive(b, "HI", text))
    if abs(a) > MAX_LOG_PARAMETER or not 0 < b <= MAX_LOG_PARAMETER:
        raise MegenError(
            f"{text!r}: lognormal needs |MU| <= {MAX_LOG_PARAMETER:g} and 0 < SIGMA <= {MAX_LOG_PARAMETER:g}"
        )
    return Lognormal(a, b)


__all__ = [
    "SERVICE_KINDS",
    "Deterministic",
    "Exponential",
    "Lognormal",
    "Poisson",
    "Service",
    "Uniform",
    "parse_arrival",
    "parse_service",
]
