"""Per-request demands of a protocol, measured by running the engine once and cached on disk.

A :class:`Demand` is what one request of a protocol asks of the system: its tasks (compute on the
UE or an edge server in FLOPs, digital transfers in payload bits, analog transfers in complex
channel uses) with their order, and its delivered quality as a function of the link SNR. Nothing
here is typed by hand: :func:`measure_demand` runs :func:`megen.protocols.runner.run_protocol` on
``samples`` prompts (the tiny model by default) at each SNR of ``snr_grid_db`` (every link at that
SNR) and reads the engine's ledger:

* **Tasks** come from the stage and transfer records of the first SNR point, per image (batch
  totals divided by the batch size). Stages of zero FLOPs are dropped.
* **Order.** Task ``B`` waits for task ``A`` when ``A`` ended no later than ``B`` started on the
  engine's timeline (unloaded). The engine starts a task as soon as its inputs and its node or link
  are free, so every real dependency is among these; the extra ones cost nothing unloaded. Only the
  direct predecessors are kept, and a chain of tasks on one node with nothing else in between is
  merged into one task.
* **Quality** per SNR point: mean fidelity PSNR (dB, against the error-free centralized output) and
  prompt accuracy of the batch.

Demands are cached as JSON under ``cache_dir`` in ``demand-<key>.json``; the key hashes every input
of the measurement (protocol, model, steps, edge servers, samples, SNR grid, channel, seed,
megen version), so a changed input measures again. A file of the same key shipped in
:data:`SHIPPED_DIR` (the tiny model's defaults) is used when the cache folder lacks it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROMPTS = ("a photo of a sneaker", "a photo of a bag", "a photo of a shirt", "a photo of a dress")
"""Prompts of the measurement runs (the first ``samples``; cycled when more are asked)."""
RESOURCES = ("UE", "ES", "uplink", "downlink", "backhaul")
SHIPPED_DIR = Path(__file__).parent / "measured"
"""Measurements shipped with megen (the tiny model's demands and CPU batch curve), read when the
cache folder lacks a file of the same key; the key holds the megen version, so a new version
measures again unless these files are refreshed (``docs/system.md``)."""
EPS_S = 1e-12


@dataclass(frozen=True)
class Task:
    """One task of a request.

    Attributes:
        resource: ``UE``, ``ES`` (compute) or ``uplink``, ``downlink``, ``backhaul`` (transfer).
        node: Engine node (``UE``, ``ES1`` ...) of a compute task; ``src>dst`` of a transfer.
        amount: FLOPs (compute), payload bits (digital transfer) or complex channel uses (analog).
        unit: ``flops``, ``bits`` or ``channel_uses``.
        after: Indices (into the demand's task list) of the tasks it waits for.
    """

    resource: str
    node: str
    amount: float
    unit: str
    after: tuple[int, ...]


@dataclass(frozen=True)
class Demand:
    """What one request of ``protocol`` needs (per image) and the quality it delivers.

    Attributes:
        protocol: Protocol name.
        tasks: Tasks in a topological order (``after`` points backwards).
        snr_grid_db: SNR points of the quality curve (dB, ascending).
        psnr_fidelity_db: Mean fidelity PSNR at each point (dB).
        prompt_match: Mean prompt accuracy at each point (NaN when the model has no classifier).
        num_es: Edge servers the protocol uses.
        key: Cache key of the measurement.
    """

    protocol: str
    tasks: tuple[Task, ...]
    snr_grid_db: tuple[float, ...]
    psnr_fidelity_db: tuple[float, ...]
    prompt_match: tuple[float, ...]
    num_es: int
    key: str

    def total(self, resource: str) -> float:
        """Sum of the amounts on ``resource`` (FLOPs, or bits plus channel uses of a link)."""
        return float(sum(t.amount for t in self.tasks if t.resource == resource))

    def quality_at(self, snr_db: np.ndarray) -> np.ndarray:
        """Fidelity PSNR (dB) at each SNR (dB), linear in dB between the grid points, clamped."""
        return np.interp(snr_db, self.snr_grid_db, self.psnr_fidelity_db)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (the cache file's content)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Demand:
        """Inverse of :meth:`to_dict`."""
        tasks = tuple(Task(**{**t, "after": tuple(t["after"])}) for t in data["tasks"])
        return cls(
            protocol=data["protocol"],
            tasks=tasks,
            snr_grid_db=tuple(data["snr_grid_db"]),
            psnr_fidelity_db=tuple(data["psnr_fidelity_db"]),
            prompt_match=tuple(data["prompt_match"]),
            num_es=int(data["num_es"]),
            key=data["key"],
        )


@dataclass(frozen=True)
class DemandSpec:
    """Inputs of one measurement (everything the cache key covers)."""

    protocol: str
    model: str = "tiny"
    steps: int = 25
    num_es: int = 2
    samples: int = 1
    snr_grid_db: tuple[float, ...] = (0.0, 10.0, 20.0)
    channel: str = "awgn"
    seed: int = 0

    def key(self) -> str:
        """16 hex digits of the SHA-256 of the spec and the megen version."""
        from megen import __version__

        text = json.dumps({**asdict(self), "version": __version__}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def tasks_from_records(records: list[tuple[float, float, str, str, float, str]]) -> tuple[Task, ...]:
    """Tasks with direct predecessors and merged same-node chains from timed engine records.

    Args:
        records: ``(start_s, end_s, resource, node, amount, unit)`` per executed stage or transfer,
            amounts per image; zero amounts are dropped.

    Example:
        >>> recs = [(0, 1, "UE", "UE", 5, "flops"), (1, 2, "uplink", "UE>ES1", 8, "bits"),
        ...         (2, 3, "ES", "ES1", 9, "flops"), (3, 4, "ES", "ES1", 1, "flops")]
        >>> [(t.resource, t.amount, t.after) for t in tasks_from_records(recs)]
        [('UE', 5.0, ()), ('uplink', 8.0, (0,)), ('ES', 10.0, (1,))]
    """
    recs = sorted((r for r in records if r[4] > 0), key=lambda r: (r[0], r[1]))
    n = len(recs)
    before = [{a for a in range(n) if a != b and recs[a][1] <= recs[b][0] + EPS_S} for b in range(n)]
    direct = [{a for a in before[b] if not any(a in before[c] for c in before[b])} for b in range(n)]
    succ: list[set[int]] = [set() for _ in range(n)]
    for b in range(n):
        for a in direct[b]:
            succ[a].add(b)
    merged_into = list(range(n))
    amount = [float(r[4]) for r in recs]
    for b in range(n):
        if len(direct[b]) == 1:
            p = next(iter(direct[b]))
            a = merged_into[p]
            same = recs[p][2:4] == recs[b][2:4] and recs[p][5] == recs[b][5]
            if same and len(succ[p]) == 1:
                merged_into[b] = a
                amount[a] += amount[b]
    keep = [i for i in range(n) if merged_into[i] == i]
    index = {i: k for k, i in enumerate(keep)}
    out = []
    for i in keep:
        preds = {merged_into[a] for j in range(n) if merged_into[j] == i for a in direct[j]} - {i}
        out.append(
            Task(recs[i][2], recs[i][3], amount[i], recs[i][5], tuple(sorted(index[p] for p in preds)))
        )
    return tuple(out)


def _records(output: Any, batch: int) -> list[tuple[float, float, str, str, float, str]]:
    """Engine stage/transfer records as ``tasks_from_records`` input, amounts per image."""
    recs = [
        (s.start_s, s.end_s, "UE" if s.node == "UE" else "ES", s.node, s.flops / batch, "flops")
        for s in output.stages
    ]
    for t in output.transfers:
        analog = t.mode == "analog"
        amount = (t.channel_uses if analog else t.payload_bits) / batch
        unit = "channel_uses" if analog else "bits"
        recs.append((t.start_s, t.end_s, t.link, f"{t.src}>{t.dst}", amount, unit))
    return recs


def measure_demand(spec: DemandSpec, session: Any = None) -> Demand:
    """Run the engine for ``spec`` at every SNR of its grid and build the :class:`Demand`.

    Args:
        spec: What to measure.
        session: A :class:`megen.session.Session` to share models and caches (``None``: a new one).
    """
    from megen.config import RunConfig
    from megen.protocols.runner import run_protocol
    from megen.session import Session

    session = session or Session()
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(spec.samples)]
    tasks: tuple[Task, ...] = ()
    psnr, match = [], []
    for k, snr in enumerate(spec.snr_grid_db):
        cfg = RunConfig.from_paths(
            {
                "protocol.name": spec.protocol,
                "protocol.num_es": spec.num_es,
                "model.name": spec.model,
                "task.steps": spec.steps,
                "task.seed": spec.seed,
                "snr_db": snr,
                "channel": spec.channel,
            }
        )
        run = run_protocol(cfg, prompts, session=session)
        if k == 0:
            tasks = tasks_from_records(_records(run.output, len(prompts)))
        delivered = [v for v in run.quality["psnr_fidelity_db"] if v is not None]  # None: outage
        psnr.append(float(np.mean(delivered)) if delivered else float("nan"))
        pm = [v for v in run.quality.get("prompt_match") or [] if v is not None]
        match.append(float(np.mean(pm)) if pm else float("nan"))
        if not any(t.resource in ("uplink", "downlink") for t in tasks):
            break  # no radio link: the quality does not depend on the SNR
    psnr += psnr[-1:] * (len(spec.snr_grid_db) - len(psnr))
    match += match[-1:] * (len(spec.snr_grid_db) - len(match))
    num_es = len({t.node for t in tasks if t.resource == "ES"})
    return Demand(
        spec.protocol, tasks, tuple(spec.snr_grid_db), tuple(psnr), tuple(match), num_es, spec.key()
    )


def shipped_or_cached(path: Path) -> Path | None:
    """``path`` if it exists, else the file of that name shipped in :data:`SHIPPED_DIR`, else ``None``."""
    if path.is_file():
        return path
    shipped = SHIPPED_DIR / path.name
    return shipped if shipped.is_file() else None


def cached_measurement(path: Path, what: str, load: Any, measure: Any, message: str, log: Any = None) -> Any:
    """A measurement kept as JSON: ``load(dict)`` of ``path`` (or its shipped copy) when present, else
    ``measure()`` (logging ``message``), written to ``path`` with its ``to_dict()``.

    Raises:
        MegenError: the cache folder cannot be written, or a cached file is unreadable.
    """
    from megen.files import read_table, write_json_cache

    found = shipped_or_cached(path)
    if found is not None:
        return load(read_table(found, what))
    if log is not None:
        log(message)
    result = measure()
    write_json_cache(path, result.to_dict())
    return result


def cached_demand(spec: DemandSpec, cache_dir: Path | str, session: Any = None, log: Any = None) -> Demand:
    """The demand of ``spec`` from ``cache_dir`` (measured and written there when missing).

    Raises:
        MegenError: the cache folder cannot be written, or a cached file is unreadable.
    """
    path = Path(cache_dir) / f"demand-{spec.key()}.json"
    demand: Demand = cached_measurement(
        path,
        "netsim demand cache",
        Demand.from_dict,
        lambda: measure_demand(spec, session),
        f"measuring the demand of {spec.protocol} with the engine (cached in {path})",
        log,
    )
    return demand


__all__ = [
    "PROMPTS",
    "RESOURCES",
    "SHIPPED_DIR",
    "Demand",
    "DemandSpec",
    "Task",
    "cached_demand",
    "measure_demand",
    "cached_measurement",
    "shipped_or_cached",
    "tasks_from_records",
]
