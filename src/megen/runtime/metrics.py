"""Prometheus text-format metrics of an edge server: counters, gauges and histograms, no dependency.

The server keeps one :class:`Metrics` and serves :meth:`Metrics.render` at ``GET /metrics``
(exposition format 0.0.4). Label values are the server's own endpoint names and status codes, never
user input.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

#: Latency buckets in seconds (upper bounds).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Batch-size buckets (requests per batch).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative histogram of observations for one label set."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, total = [], 0
        for le, c in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += c
            bound = "+Inf" if le == float("inf") else repr(float(le))
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {total}')
        brace = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{brace} {self.sum!r}", f"{name}_count{brace} {self.count}"]
        return out


class Metrics:
    """The server's metrics (thread safe).

    Series: ``megen_requests_total{endpoint,status}``, ``megen_request_errors_total{endpoint}``,
    ``megen_request_seconds{endpoint}`` (histogram), ``megen_queue_depth`` (requests admitted and not
    finished), ``megen_runs_active`` and ``megen_batch_size`` (histogram of requests per executed batch).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch = Histogram(BATCH_BUCKETS)
        self.fused = Histogram(BATCH_BUCKETS)
        self.queue_depth = 0
        self.runs_active = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request (status >= 400 also counts as an error)."""
        with self._lock:
            self.requests[(endpoint, status)] += 1
            if status >= 400:
                self.errors[endpoint] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS_S)).observe(seconds)

    def batch_size(self, n: int) -> None:
        with self._lock:
            self.batch.observe(n)

    def fused_size(self, n: int) -> None:
        with self._lock:
            self.fused.observe(n)

    def render(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        with self._lock:
            out = [
                "# HELP megen_requests_total Requests answered, by endpoint and HTTP status.",
                "# TYPE megen_requests_total counter",
            ]
            out += [
                f'megen_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())
            ]
            out += [
                "# HELP megen_request_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE megen_request_errors_total counter",
            ]
            out += [
                f'megen_request_errors_total{{endpoint="{e}"}} {n}' for e, n in sorted(self.errors.items())
            ]
            out += [
                "# HELP megen_request_seconds Request latency in seconds.",
                "# TYPE megen_request_seconds histogram",
            ]
            for e, h in sorted(self.latency.items()):
                out += h.lines("megen_request_seconds", f'endpoint="{e}"')
            out += [
                "# HELP megen_queue_depth Requests admitted and not yet answered.",
                "# TYPE megen_queue_depth gauge",
                f"megen_queue_depth {self.queue_depth}",
                "# HELP megen_runs_active Run sessions held.",
                "# TYPE megen_runs_active gauge",
                f"megen_runs_active {self.runs_active}",
                "# HELP megen_batch_size Requests executed together per batch.",
                "# TYPE megen_batch_size histogram",
                *self.batch.lines("megen_batch_size", ""),
                "# HELP megen_fused_batch_size Denoising stages of different runs fused into one model call.",
                "# TYPE megen_fused_batch_size histogram",
                *self.fused.lines("megen_fused_batch_size", ""),
            ]
        return "\n".join(out) + "\n"


__all__ = ["Histogram", "Metrics"]
