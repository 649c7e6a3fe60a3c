"""FLOPs of a stage, measured with ``torch.utils.flop_counter.FlopCounterMode`` (never guessed).

FLOPs depend only on shapes, so :class:`FlopMeter` measures each distinct call signature once and
reuses the count (the counter slows execution noticeably). A stage made of repeated identical calls
(denoising: one UNet call per step) also records its FLOPs per call, so the same stage over another
number of steps (e.g. receiver-side denoising entering at an SNR-dependent step) is counted as calls x
per-call FLOPs without running the counter again; the counter counts only matrix products,
convolutions and attention, which are identical in every call of the same signature.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")


def measure_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn()`` under a FLOP counter; returns ``(result, flops)``."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


class FlopMeter:
    """Measures FLOPs per call signature once, then reuses the count."""

    def __init__(self) -> None:
        self._cache: dict[Hashable, int] = {}

    def known(self, key: Hashable) -> int | None:
        """The FLOPs measured for ``key``, or ``None`` when it was never measured."""
        return self._cache.get(key)

    def run(
        self,
        key: Hashable,
        fn: Callable[[], T],
        measure: Callable[[], object] | None = None,
        *,
        per_call: tuple[Hashable, int] | None = None,
    ) -> tuple[T, int]:
        """Run ``fn``; FLOPs come from the cache when ``key`` was measured before.

        ``measure`` (optional) is the full computation to count when ``fn`` may take a shortcut (e.g. a
        text encoder's prompt cache); it runs once per key. ``per_call = (call_key, calls)`` says that
        ``fn`` makes ``calls`` identical calls of signature ``call_key``: once any stage with that
        ``call_key`` has been measured, the FLOPs are ``calls`` times its per-call count.
        """
        if key in self._cache:
            return fn(), self._cache[key]
        if per_call is not None and per_call[0] in self._cache:
            flops = per_call[1] * self._cache[per_call[0]]
            self._cache[key] = flops
            return fn(), flops
        if measure is not None:
            _, flops = measure_flops(measure)
            result = fn()
        else:
            result, flops = measure_flops(fn)
        self._cache[key] = flops
        if per_call is not None and per_call[1] > 0 and flops % per_call[1] == 0:
            self._cache[per_call[0]] = flops // per_call[1]
        return result, flops
