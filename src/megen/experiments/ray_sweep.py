"""Sweeps on a Ray cluster: batches run as Ray tasks, rows stream back to the driver's SQLite store.

The driver plans the missing batches exactly as the process pool does
(:func:`~megen.experiments.sweep.plan_tasks`, :func:`~megen.experiments.sweep.chunk_tasks`), submits
each chunk as one Ray task (one CPU each; at most ``2 x workers`` in flight) and writes every batch's
rows in one transaction as its chunk comes back, so the resume guarantees are the process pool's:

* the store is only written by the driver, one batch per transaction; a killed driver loses at most
  the chunks in flight, and the rerun plans only the batches whose rows are missing;
* a rerun batch is computed from its task alone (seeded by :func:`~megen.experiments.sweep.batch_seed`),
  so its rows equal those of an uninterrupted run, wherever they ran;
* a worker process or a whole Ray node lost mid-task: Ray reruns the task elsewhere
  (``max_retries``); rows already present are kept as they are (:meth:`ResultsStore.insert_rows`),
  so a batch that arrives twice is neither lost nor duplicated.

A Ray worker process keeps the model, references and session of the tasks it ran (one per model and
device), like a pool worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from megen.errors import MegenError
from megen.experiments.spec import SweepSpec
from megen.experiments.sweep import BatchTask, chunk_tasks, compute_batch, load_sweep_model
from megen.store import Row

#: Times Ray reruns a chunk whose worker or node died.
TASK_RETRIES = 3

_CACHE: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}


def _worker_state(model_name: str, device: str, references: str) -> tuple[Any, Any, Any]:
    """``(model, references, session)`` of this Ray worker process, loaded once."""
    key = (model_name, device, references)
    if key not in _CACHE:
        import torch

        from megen.experiments.references import load_references
        from megen.session import Session

        torch.set_num_threads(1)
        session = Session()
        _CACHE.clear()  # one model per worker process
        _CACHE[key] = (load_sweep_model(model_name, device, session), load_references(references), session)
    return _CACHE[key]


def run_chunk(tasks: Sequence[BatchTask], model_name: str, references: str) -> list[list[Row]]:
    """The rows of every batch of a chunk (what one Ray task computes)."""
    model, refs, session = _worker_state(model_name, tasks[0].device, references)
    return [compute_batch(t, model, refs, session) for t in tasks]


def run_ray(
    tasks: list[BatchTask],
    spec: SweepSpec,
    workers: int,
    write: Callable[[list[Row]], None],
    *,
    address: str | None = None,
) -> None:
    """Run ``tasks`` as Ray tasks and ``write`` each batch's rows in this process.

    Args:
        tasks: The missing batches (:func:`~megen.experiments.sweep.plan_tasks`).
        spec: The sweep (model and references).
        workers: Tasks running at once on a local Ray (its CPUs); chunks are cut for this many.
        write: Stores one batch's rows (one transaction).
        address: A running cluster (``"HOST:PORT"``, ``"auto"``) or ``None`` for a local Ray.

    Raises:
        MegenError: a batch failed on its worker (the error it raised), or Ray cannot be reached.
    """
    import ray
    from ray import exceptions as rex

    from megen.experiments.references import resolve_references
    from megen.runtime.ray_executor import connect

    started = connect(address, num_cpus=workers if address is None else None)
    chunk = ray.remote(run_chunk).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)
    refs_name = resolve_references(spec.references, spec.model)
    pending = list(reversed(chunk_tasks(tasks, workers)))
    running: dict[Any, list[BatchTask]] = {}
    try:
        while pending or running:
            while pending and len(running) < 2 * workers:
                part = pending.pop()
                running[chunk.remote(part, spec.model, refs_name)] = part
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
            for ref in ready:
                running.pop(ref)
                try:
                    batches = ray.get(ref)
                except rex.RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, MegenError) else None
                    raise (cause or MegenError(f"a sweep batch failed on Ray: {exc}")) from None
                except rex.RayError as exc:
                    raise MegenError(f"a sweep batch was lost on Ray ({exc}); rerun to continue") from exc
                for rows in batches:
                    write(rows)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


__all__ = ["TASK_RETRIES", "run_chunk", "run_ray"]
