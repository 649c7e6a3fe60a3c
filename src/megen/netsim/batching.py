"""Batch efficiency of the edge servers: how long a batch of ``b`` requests takes against one.

An edge server that runs ``b`` waiting requests of the same task in one batch needs
``factor(b) * s`` seconds, where ``s`` is the task's time alone (its FLOPs over the ES profile's
effective rate) and ``factor(b) = t(b) / t(1)`` is the **batch factor** of the model on the ES
device: ``t(b)`` is the measured wall time of one call of the stage at batch size ``b``.
``factor(b) = b`` means batching gains nothing; ``factor(b) = 1`` is a perfectly flat curve (a
batch costs what one request costs).

:func:`measure_batch_curve` times, on ``device``, one denoiser step (``D``, the ``es`` denoiser
with classifier-free guidance, so the UNet sees ``2 b`` rows) and the decoder (``G``) at each batch
size of :data:`BATCH_SIZES`: one warm-up call, then the median of ``repeats`` timed calls, inputs
drawn from the seeded stream ``generator(seed, "netsim", "batch", b)``. On a CPU the timed
quantity is the thread's CPU time with torch on one thread (stable on a shared machine, and what one
core of the server spends); on CUDA it is wall time after a synchronize. The ES tasks of a demand are
dominated by the denoiser (25 steps of ``D`` against one ``G``), so the cell applies the ``D`` curve
to whole ES tasks. Curves are cached next to the demands as ``batch-<key>.json``, the key hashing
model, device, batch sizes, repeats, seed and the megen version (a shipped file of that key, see
:data:`megen.netsim.demand.SHIPPED_DIR`, is used when the cache folder lacks it).

Between the measured sizes the time is linear in ``b``; beyond the largest it grows on the last
segment's slope. A measured time is never allowed to exceed that of a larger batch (a smaller batch
could always be run padded), so noise cannot make the factor decrease with ``b``.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from megen.errors import MegenError

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
"""Batch sizes measured by :func:`measure_batch_curve`."""
STAGES = ("denoise", "decode")
APPLIED_STAGE = "denoise"
"""The stage whose curve the cell applies to whole ES tasks (see the module docstring)."""


@dataclass(frozen=True)
class BatchCurve:
    """Seconds of one call of each stage at each batch size.

    Attributes:
        model: Model name.
        device: Device the times were measured on (``cpu``, ``cuda`` ...).
        batch_sizes: Ascending batch sizes, the first 1.
        seconds: Per stage (``denoise``, ``decode``), wall seconds of one call at each batch size.
        key: Cache key of the measurement (``""`` for a curve built by hand).
    """

    model: str
    device: str
    batch_sizes: tuple[int, ...]
    seconds: dict[str, tuple[float, ...]]
    key: str = ""

    def __post_init__(self) -> None:
        sizes = list(self.batch_sizes)
        if not sizes or sizes[0] != 1 or sizes != sorted(set(sizes)):
            raise MegenError(f"batch sizes must be ascending, distinct and start at 1, got {sizes}")
        for stage, secs in self.seconds.items():
            if len(secs) != len(sizes) or not all(np.isfinite(s) and s > 0 for s in secs):
                raise MegenError(f"batch curve of {stage}: need one positive time per batch size, got {secs}")

    def factor(self, batch: int, stage: str = APPLIED_STAGE) -> float:
        """``t(batch) / t(1)`` of ``stage``: linear between the measured sizes, extended on the last slope.

        Example:
            >>> c = BatchCurve("m", "cpu", (1, 2, 4), {"denoise": (1.0, 1.5, 2.0)})
            >>> [c.factor(b) for b in (1, 2, 3, 4, 8)]
            [1.0, 1.5, 1.75, 2.0, 3.0]
        """
        if batch < 1:
            raise MegenError(f"batch size must be >= 1, got {batch}")
        if stage not in self.seconds:
            raise MegenError(f"the batch curve has no stage {stage!r}; it has {sorted(self.seconds)}")
        sizes = np.asarray(self.batch_sizes, dtype=float)
        secs = np.minimum.accumulate(np.asarray(self.seconds[stage], dtype=float)[::-1])[::-1]
        if batch <= sizes[-1]:
            t = float(np.interp(batch, sizes, secs))
        else:
            slope = (secs[-1] - secs[-2]) / (sizes[-1] - sizes[-2]) if len(sizes) > 1 else secs[0]
            t = float(secs[-1] + slope * (batch - sizes[-1]))
        return t / float(secs[0])

    def factors(self, max_batch: int, stage: str = APPLIED_STAGE) -> tuple[float, ...]:
        """``(factor(1), ..., factor(max_batch))``."""
        return tuple(self.factor(b, stage) for b in range(1, max_batch + 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (the cache file's content)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchCurve:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                model=str(data["model"]),
                device=str(data["device"]),
                batch_sizes=tuple(int(b) for b in data["batch_sizes"]),
                seconds={k: tuple(float(s) for s in v) for k, v in data["seconds"].items()},
                key=str(data.get("key", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MegenError(f"not a batch curve: {exc}") from None

    @classmethod
    def flat(cls, batch_sizes: tuple[int, ...] = BATCH_SIZES) -> BatchCurve:
        """A curve whose batches cost what one request costs (an ideal batching device)."""
        ones = tuple(1.0 for _ in batch_sizes)
        return cls("flat", "none", batch_sizes, dict.fromkeys(STAGES, ones))


def curve_key(model: str, device: str, batch_sizes: tuple[int, ...], repeats: int, seed: int) -> str:
    """16 hex digits of the SHA-256 of the measurement's inputs and the megen version."""
    from megen import __version__

    inputs = {"model": model, "device": device, "batch_sizes": list(batch_sizes), "repeats": repeats}
    text = json.dumps({**inputs, "seed": seed, "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _median_seconds(call: Any, repeats: int, sync: Any, clock: Any) -> float:
    call()
    sync()
    times = []
    for _ in range(repeats):
        t0 = clock()
        call()
        sync()
        times.append(clock() - t0)
    return float(statistics.median(times))


def measure_batch_curve(
    model: str = "tiny",
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    *,
    repeats: int = 5,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 4.0,
    session: Any = None,
) -> BatchCurve:
    """Time one denoiser step and one decode of ``model`` on ``device`` at each batch size.

    Args:
        model: Model name or folder (:func:`megen.models.registry.load_model`).
        device: Torch device of the edge server.
        batch_sizes: Ascending batch sizes starting at 1.
        repeats: Timed calls per point (the median is kept).
        seed: Seed of the inputs (latents ``[b, c, h, w]`` of unit normals).
        steps: Schedule length; the timed step is the middle one.
        guidance: Classifier-free guidance of the timed denoiser step.
        session: A :class:`megen.session.Session` to share the loaded model.
    """
    import torch

    from megen.session import Session

    session = session or Session()
    m = session.model(model, device=device)
    cuda = m.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = time.perf_counter if cuda else time.thread_time
    seconds: dict[str, list[float]] = {s: [] for s in STAGES}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _time_stages(m, batch_sizes, seconds, (sync, clock, repeats, seed, steps, guidance))
    finally:
        torch.set_num_threads(threads)
    key = curve_key(model, device, tuple(batch_sizes), repeats, seed)
    return BatchCurve(model, device, tuple(batch_sizes), {k: tuple(v) for k, v in seconds.items()}, key)


def _time_stages(m: Any, batch_sizes: tuple[int, ...], seconds: dict[str, list[float]], how: tuple) -> None:
    import torch

    from megen.rng import generator

    sync, clock, repeats, seed, steps, guidance = how
    with torch.no_grad():
        for b in batch_sizes:
            z = torch.randn((b, *m.latent_shape), generator=generator(seed, "netsim", "batch", b))
            z = z.to(m.device, m.dtype)
            cond = m.encode_text(["a photo of a bag"] * b)
            mid = steps // 2

            def step(z=z, cond=cond, mid=mid):  # type: ignore[no-untyped-def]
                return m.denoise(z, cond, num_steps=steps, start=mid, stop=mid + 1, guidance=guidance)

            seconds["denoise"].append(_median_seconds(step, repeats, sync, clock))
            seconds["decode"].append(_median_seconds(lambda z=z: m.decode(z), repeats, sync, clock))


def cached_batch_curve(
    model: str, device: str, cache_dir: Path | str, *, seed: int = 0, log: Any = None
) -> BatchCurve:
    """The batch curve of ``model`` on ``device`` from ``cache_dir`` (measured and written when missing)."""
    from megen.netsim.demand import cached_measurement

    repeats = 5
    key = curve_key(model, device, BATCH_SIZES, repeats, seed)
    path = Path(cache_dir) / f"batch-{key}.json"
    curve: BatchCurve = cached_measurement(
        path,
        "netsim batch curve cache",
        BatchCurve.from_dict,
        lambda: measure_batch_curve(model, device, BATCH_SIZES, repeats=repeats, seed=seed),
        f"measuring the batch curve of {model} on {device} (cached in {path})",
        log,
    )
    return curve


__all__ = [
    "APPLIED_STAGE",
    "BATCH_SIZES",
    "STAGES",
    "BatchCurve",
    "cached_batch_curve",
    "curve_key",
    "measure_batch_curve",
]
