"""``megen sweep``: run every point of a :class:`~megen.experiments.spec.SweepSpec` into a results database.

One driver, one small trial function (as in Sionna's ``sim_ber``):

* :func:`compute_batch` is the trial: one :func:`~megen.protocols.runner.run_protocol` call for one batch
  of samples of one point, returning one row per image (it never touches the database);
* :func:`run_sweep` is the driver: it opens (or resumes) the database, works out which batches are
  missing, runs them in this process or in ``workers`` spawned processes, writes each batch's rows in
  one transaction as it arrives, and shows a progress bar with ETA.

**Samples.** Sample ``i`` of a point is, for image-to-image (``task = "i2i"``), shipped reference image
``i % 100`` in class-interleaved order (:func:`interleaved_order`: class 0's first image, class 1's
first image, ..., class 0's second image ...; 10 Fashion-MNIST test images per class, so the first ``n``
samples of any point are class-balanced) with the prompt ``"a photo of a <class>"`` of class
``(label + prompt_shift) % 10``: by default its own class (so fidelity, reference similarity and prompt
accuracy all measure whether the item survives the link), or another class with ``prompt_shift`` > 0
(class transfer). For text-to-image (``task = "t2i"``) sample ``i`` is the prompt of class ``i % 10``.
For a model whose images are not 1x32x32 (Stable Diffusion) the references are resized and repeated
to its channels.

**Randomness.** Samples are cut into fixed batches of ``batch_size``; batch ``b`` of master seed ``s``
runs with seed :func:`batch_seed` ``(s, b)`` (a named stream of :mod:`megen.rng`) for every point, so
all protocols, channels and SNRs see the same initial noise for the same sample (paired
comparisons), and samples of different batches never share it. A batch's rows therefore never depend on which other batches ran, in which process or in
which order: an interrupted and resumed sweep gives the same numbers as an uninterrupted one.
Every computing process uses one torch thread (parallelism comes from ``workers``).

**Interruption.** SIGTERM and Ctrl-C stop the sweep between two SQLite statements: the batch in
flight is rolled back, finished batches stay. SIGKILL loses at most the batches in flight (SQLite's
journal rolls back a half-written transaction at the next open). Running the same command again
computes only the missing batches.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from megen.config import LINKS
from megen.errors import MegenError
from megen.experiments.references import ReferenceSet, fit_to_model, load_references, resolve_references
from megen.experiments.spec import Point, SweepSpec, expand
from megen.images import encode_png
from megen.models.fingerprint import RANDOM_MODEL
from megen.rng import derive
from megen.session import Session
from megen.store import METRIC_COLUMNS, ResultsStore, Row, RowSchemaError

MAX_WORKERS = 64
#: Seconds between progress lines when stderr is not a terminal.
PLAIN_PROGRESS_S = 60.0


class SweepInterrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """Raised in the driver by SIGTERM; the driver rolls back the batch in flight and stops."""


@dataclass(frozen=True)
class BatchTask:
    """One unit of work: one batch of samples of one point.

    Attributes:
        key: The point's config hash.
        config_json: The point's RunConfig as JSON (``seed`` = master seed).
        task: ``"i2i"`` or ``"t2i"``.
        batch: Batch index (samples ``batch * batch_size ...``).
        samples: Sample indices of the batch (all of them, even if some are already stored).
        run_seed: The seed the batch runs with (:func:`batch_seed`).
        prompt_shift: See :class:`~megen.experiments.spec.SweepSpec`.
        device: Where the batch runs (``device.default`` of the run; not part of the point: results do
            not depend on it).
    """

    key: str
    config_json: str
    task: str
    batch: int
    samples: tuple[int, ...]
    run_seed: int
    prompt_shift: int
    device: str = "cpu"


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        path: The database.
        points: Points of the sweep.
        expected_rows: Rows of the complete sweep.
        existing_rows: Rows already stored when it started.
        written_rows: Rows written by this run.
        seconds: Wall-clock duration, seconds.
        interrupted: Stopped by a signal before the end.
        signal_name: ``"SIGTERM"`` or ``"SIGINT"`` when interrupted.
        commits: ``(seconds since the start, rows written so far)`` after every committed batch.
    """

    path: Path
    points: int
    expected_rows: int
    existing_rows: int
    written_rows: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    signal_name: str | None = None
    commits: list[tuple[float, int]] = field(default_factory=list)

    def steady_rows_per_s(self) -> float:
        """Rows per second between the first and the last commit (start-up excluded); NaN if < 2 commits."""
        if len(self.commits) < 2:
            return math.nan
        (t0, n0), (t1, n1) = self.commits[0], self.commits[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else math.nan

    @property
    def complete(self) -> bool:
        return self.existing_rows + self.written_rows >= self.expected_rows


def batch_seed(seed: int, batch: int) -> int:
    """Seed of batch ``batch`` under master seed ``seed``: the stream ``("batch", batch)`` of
    :func:`megen.rng.derive` (63 bits, the same for every point).

    Example:
        >>> batch_seed(0, 0) != batch_seed(0, 1) != batch_seed(1, 0)
        True
    """
    return derive(seed, "batch", batch)


# ---------------------------------------------------------------------------------------------- samples
def sample_inputs(
    task: str,
    samples: Sequence[int],
    prompt_shift: int,
    references: ReferenceSet | None,
    image_shape: tuple[int, int, int] = (1, 32, 32),
) -> tuple[list[str], torch.Tensor | None, list[int | None], list[int]]:
    """Prompts and reference images of samples (see the module docstring).

    Returns:
        ``(prompts, reference [B, C, H, W] or None, reference index per sample, prompt label per sample)``.
    """
    if references is None:
        raise MegenError("the samples need a reference set (its prompts, and its images for image-to-image)")
    n_cls = len(references.prompts)
    if task == "t2i":
        classes = [i % n_cls for i in samples]
        return [references.prompts[c] for c in classes], None, [None] * len(samples), classes
    order = interleaved_order(references.labels)
    idx = [order[i % len(order)] for i in samples]
    classes = [(int(references.labels[r]) + prompt_shift) % n_cls for r in idx]
    ref = fit_to_model(references.images[idx], image_shape)
    return [references.prompts[c] for c in classes], ref, list(idx), classes


def interleaved_order(labels: torch.Tensor) -> list[int]:
    """Reference indices ordered so that classes take turns: the first ``n`` samples are class-balanced.

    Example:
        >>> interleaved_order(torch.tensor([0, 0, 1, 1, 2, 2]))
        [0, 2, 4, 1, 3, 5]
    """
    seen: dict[int, int] = {}
    keys = []
    for i, c in enumerate(labels.tolist()):
        rank = seen.get(c, 0)
        seen[c] = rank + 1
        keys.append((rank, c, i))
    return [i for _, _, i in sorted(keys)]


def load_sweep_model(name: str, device: str = "cpu", session: Session | None = None):
    """The model of a sweep on ``device``, kept in ``session``: ``tiny-random`` is the random-weight tiny
    model (tests)."""
    session = session or Session()
    if name == RANDOM_MODEL:
        return session.model(name, _random_tiny, device=device)
    return session.model(name, device=device)


def _random_tiny(_name: str):
    from megen.models.tiny import build_random_tiny

    return build_random_tiny(seed=0)


# ---------------------------------------------------------------------------------------------- trial
def compute_batch(task: BatchTask, model, references, session: Session | None = None) -> list[Row]:
    """Run one batch and return its rows (one :class:`~megen.store.Row` per image).

    ``session`` carries the caches shared across batches (stage memo, FLOP meter); ``None``: a fresh one.
    """
    from megen.config import RunConfig
    from megen.protocols.runner import run_protocol

    t0 = time.perf_counter()
    stored = RunConfig.model_validate_json(task.config_json)
    cfg = RunConfig.from_paths({"task.seed": task.run_seed, "device.default": task.device}, base=stored)
    prompts, reference, ref_idx, classes = sample_inputs(
        task.task, task.samples, task.prompt_shift, references, tuple(model.image_shape)
    )
    run = run_protocol(cfg, prompts, reference, model=model, session=session)
    wall = (time.perf_counter() - t0) / len(prompts)
    return rows_from_run(task, run, ref_idx, classes, wall)


def rows_from_run(
    task: BatchTask, run, ref_idx: Sequence[int | None], classes: Sequence[int], wall_s: float
) -> list[Row]:
    """Rows of one :class:`~megen.protocols.runner.ProtocolRun` (costs = batch totals / batch size).

    Metrics the run did not measure are NULL; a metric the run measured that is not a column of
    :class:`~megen.store.Row` (a renamed metric) raises :class:`~megen.store.RowSchemaError`.
    """
    out = run.output
    b = len(run.prompts)
    costs: dict[str, Any] = {}
    for k, v in out.channel_uses().items():
        costs[f"uses_{k}"] = v / b
    for k, v in out.payload_bits().items():
        costs[f"bits_{k}"] = v / b
    flops = out.flops()
    costs["flops_ue"] = flops.get("UE", 0.0) / b
    costs["flops_es"] = sum(v for k, v in flops.items() if k.startswith("ES")) / b
    costs["flops_total"] = sum(flops.values()) / b
    costs["latency_s"] = out.latency_s / b
    costs["energy_j"] = out.energy_j / b
    busy = out.latency_breakdown()
    energy = out.energy_breakdown()
    for prefix, unit, table in (("busy", "s", busy), ("energy", "j", energy)):
        costs[f"{prefix}_ue_{unit}"] = table.get("UE", 0.0) / b
        costs[f"{prefix}_es_{unit}"] = sum(v for k, v in table.items() if k.startswith("ES")) / b
        for link in LINKS:
            costs[f"{prefix}_{link}_{unit}"] = table.get(link, 0.0) / b
    costs["link_failures"] = out.failures() / b
    detail = json.dumps(
        {
            "per_image": True,
            "batch_size": b,
            "flops": {k: v / b for k, v in flops.items()},
            "flops_by_stage": {k: v / b for k, v in out.flops_by_stage().items()},
            "busy_s": {k: v / b for k, v in busy.items()},
            "energy_j": {k: v / b for k, v in energy.items()},
            "batch_link_failures": out.failures(),
            "snr_aware_entries": [list(e) for e in out.snr_aware_entries],
        },
        sort_keys=True,
    )
    unknown = sorted(set(run.quality) - set(METRIC_COLUMNS))
    if unknown:
        raise RowSchemaError(f"metrics {unknown} are not columns of the results schema")
    rows = []
    for j, sample in enumerate(task.samples):
        row: dict[str, Any] = {
            **dict.fromkeys(METRIC_COLUMNS),
            "config_hash": task.key,
            "sample": sample,
            "batch": task.batch,
            "run_seed": task.run_seed,
            "ref_index": ref_idx[j],
            "prompt": run.prompts[j],
            "prompt_class": classes[j],
            "costs_json": detail,
            "wall_s": wall_s,
            "image_png": encode_png(run.images[j]),
            "outage": int(out.outage[j]),
            "fallback": int(out.fallback[j]),
            "delivered_to": out.delivered_to,
            **costs,
        }
        for metric, values in run.quality.items():
            v = values[j]
            row[metric] = None if v is None else float(v)
        rows.append(Row.from_mapping(row))
    return rows


# ---------------------------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)  # the driver died (SIGKILL): do not linger as an orphan


def _init_worker(model_name: str, device: str, references: str, parent_pid: int, results: Any) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the workers
    torch.set_num_threads(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    _WORKER["session"] = Session()
    _WORKER["model"] = load_sweep_model(model_name, device, _WORKER["session"])
    _WORKER["references"] = load_references(references)
    _WORKER["results"] = results


def _worker_chunk(tasks: list[BatchTask]) -> int:
    """Run a chunk of batches in this worker, sending each batch's rows to the driver as it finishes."""
    for task in tasks:
        _WORKER["results"].put(
            compute_batch(task, _WORKER["model"], _WORKER["references"], _WORKER["session"])
        )
    return len(tasks)


#: Most batches in one worker chunk: so that the workers go through a large sweep's batch index 0 of
#: every point together before any later one (a stopped run's points then hold about the same number
#: of images), at the cost of one stage-memo miss per chunk boundary.
MAX_CHUNK_BATCHES = 64


def chunk_tasks(tasks: Sequence[BatchTask], workers: int) -> list[list[BatchTask]]:
    """Group batches for the workers: every chunk holds batches of one batch index (same samples).

    The batches of one batch index share their prompts, references and seed, so one worker running
    them together computes the error-free target once and hits the stage memo across
    configurations (centralized generation at every SNR and MCS, CIAG's ES steps at every downlink
    SNR). Each batch index becomes one chunk, cut into contiguous parts (points stay in grid order,
    so variants of one protocol stay together) of at most ``ceil(len(tasks) / (4 * workers))``
    batches (and at most :data:`MAX_CHUNK_BATCHES`), so that no chunk is a large share of the work and
    the workers stay balanced.

    Example:
        >>> ts = [BatchTask("k", "{}", "i2i", b, (b,), 0, 0) for b in (0, 0, 0, 0, 1, 1, 1, 1)]
        >>> [[t.batch for t in c] for c in chunk_tasks(ts, 1)]
        [[0, 0], [0, 0], [1, 1], [1, 1]]
        >>> big = [BatchTask("k", "{}", "i2i", b, (b,), 0, 0) for b in [0] * 30 + [1] * 2]
        >>> [len(c) for c in chunk_tasks(big, 2)]
        [4, 4, 4, 4, 4, 4, 4, 2, 2]
    """
    most = max(1, min(MAX_CHUNK_BATCHES, math.ceil(len(tasks) / (4 * max(workers, 1)))))
    chunks: list[list[BatchTask]] = []
    for t in tasks:
        if chunks and chunks[-1][0].batch == t.batch and len(chunks[-1]) < most:
            chunks[-1].append(t)
        else:
            chunks.append([t])
    return chunks


# ---------------------------------------------------------------------------------------------- driver
@functools.lru_cache(maxsize=1)
def _console():
    from rich.console import Console

    return Console(stderr=True)


def plan_tasks(
    spec: SweepSpec, points: Sequence[Point], done: dict[str, set[int]], device: str = "cpu"
) -> list[BatchTask]:
    """The batches still missing, ordered batch by batch across points (partial results stay balanced)."""
    n_batches = (max(p.samples for p in points) + spec.batch_size - 1) // spec.batch_size
    tasks = []
    for b in range(n_batches):
        for p in points:
            samples = tuple(range(b * spec.batch_size, min((b + 1) * spec.batch_size, p.samples)))
            if not samples:
                continue
            have = done.get(p.key, set())
            if all(s in have for s in samples):
                continue
            tasks.append(
                BatchTask(
                    key=p.key,
                    config_json=p.config.model_dump_json(),
                    task=p.task,
                    batch=b,
                    samples=samples,
                    run_seed=batch_seed(p.config.task.seed, b),
                    prompt_shift=spec.prompt_shift,
                    device=device,
                )
            )
    return tasks


def run_sweep(
    spec: SweepSpec,
    db: Path | str,
    *,
    workers: int = 1,
    progress: bool = True,
    model=None,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
    backend: str = "local",
    ray_address: str | None = None,
) -> SweepResult:
    """Run (or continue) a sweep into the SQLite database ``db``.

    Args:
        spec: The sweep.
        db: Results database; created if missing, continued if it holds the same sweep.
        workers: 1 = in this process; N > 1 = N spawned processes (one model each, one thread each).
        progress: Show a rich progress bar with ETA on stderr.
        model: In-process only: an already loaded model to use instead of ``spec.model`` (tests).
        log: Where one-line messages go (default: stderr console).
        device: Where every node runs (``auto``, ``cpu``, ``cuda[:i]``, ``mps``); not part of the
            results' keys (a sweep continued on another device adds rows to the same points).
        backend: ``local`` (this process or a process pool) or ``ray`` (batches as Ray tasks on a local
            Ray with ``workers`` CPUs, or the cluster at ``ray_address``; :mod:`megen.experiments.ray_sweep`).
        ray_address: A running Ray cluster, ``HOST:PORT`` (``backend="ray"`` only).

    Returns:
        What was done; ``interrupted`` is True when SIGTERM/Ctrl-C stopped it (rerun to continue).

    Raises:
        MegenError: an invalid spec, a foreign/corrupt/mismatched database, an unwritable folder, or a
            run that fails (finished batches stay in the database).

    Note:
        Workers are *spawned*: a script that calls this with ``workers > 1`` must guard its entry point
        with ``if __name__ == "__main__":`` (the ``megen`` command does).
    """
    _check_run(workers, model, backend, ray_address)
    say = log or (lambda m: _console().print(m, highlight=False, markup=False))
    points = expand(spec)
    t_start = time.perf_counter()
    # everything that can fail at the start fails before the database is touched
    refs_name = resolve_references(spec.references, spec.model)
    from megen.devices import resolve_device

    device = str(model.device) if model is not None else str(resolve_device(device))
    inline = None
    if workers == 1 and backend == "local":
        session = Session()
        inline = (
            model if model is not None else load_sweep_model(spec.model, device, session),
            load_references(refs_name),
            session,
        )
    store = ResultsStore.create_or_resume(db, spec, points)
    if store.extended_by:
        say(f"{db}: the sweep extends the stored one by {store.extended_by} configuration(s)")
    try:
        done = store.done_samples()
        existing = sum(len(v) for v in done.values())
        result = SweepResult(Path(db), len(points), sum(p.samples for p in points), existing)
        tasks = plan_tasks(spec, points, done, device)
        if not tasks:
            say(f"{db}: all {result.expected_rows} rows already there; nothing to run")
        else:
            todo = sum(len(t.samples) for t in tasks)
            say(
                f"sweep {spec.name!r}: {len(points)} points, {result.expected_rows} rows; {existing} stored, "
                f"{todo} to compute in {len(tasks)} batches on {workers} worker(s)"
            )
            ray = {"address": ray_address} if backend == "ray" else None
            run: dict[str, Any] = {"inline": inline, "todo": todo, "ray": ray}
            _run_tasks(store, spec, tasks, result, workers=workers, progress=progress, **run)
    except BaseException:
        store.discard()  # a database this run created and wrote no row into is removed
        raise
    store.close()
    result.seconds = time.perf_counter() - t_start
    return result


def _check_run(workers: int, model: Any, backend: str, ray_address: str | None) -> None:
    """Reject bad arguments of :func:`run_sweep` before anything runs."""
    if not 1 <= workers <= MAX_WORKERS:
        raise MegenError(f"--workers must be in 1..{MAX_WORKERS}, got {workers}")
    if backend not in ("local", "ray"):
        raise MegenError(f"--backend must be local or ray, got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise MegenError("--ray-address needs --backend ray")
    if model is not None and (workers > 1 or backend == "ray"):
        raise MegenError("an in-memory model can only be used with workers = 1")


def _run_tasks(
    store: ResultsStore,
    spec: SweepSpec,
    tasks: list[BatchTask],
    result: SweepResult,
    *,
    workers: int,
    progress: bool,
    inline: tuple[Any, ReferenceSet, Session] | None,
    todo: int,
    ray: dict[str, Any] | None = None,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    def on_term(signum: int, frame: Any) -> None:
        raise SweepInterrupted(signal.Signals(signum).name)

    in_main = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGTERM, on_term) if in_main else None
    bar = Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(),
        disable=not progress,
        transient=False,
    )
    try:
        with bar:
            job = bar.add_task("rows", total=todo)

            t0 = time.perf_counter()
            # not a terminal (nohup, CI log): the bar cannot redraw, so log a line now and then instead
            plain = progress and not _console().is_terminal
            last_line = [t0]

            def write(rows: list[Row]) -> None:
                result.written_rows += store.insert_rows(rows)
                now = time.perf_counter()
                result.commits.append((now - t0, result.written_rows))
                bar.advance(job, len(rows))
                if plain and (now - last_line[0] >= PLAIN_PROGRESS_S or result.written_rows >= todo):
                    last_line[0] = now
                    _console().print(
                        _progress_line(result.written_rows, todo, now - t0), highlight=False, markup=False
                    )

            if inline is not None:
                _run_inline(tasks, *inline, write)
            elif ray is not None:
                from megen.experiments.ray_sweep import run_ray

                run_ray(tasks, spec, workers, write, **ray)
            else:
                _run_pool(tasks, spec, workers, write)
    except (SweepInterrupted, KeyboardInterrupt) as exc:
        result.interrupted = True
        result.signal_name = str(exc) or "SIGINT"
    finally:
        if in_main and old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


def _progress_line(done: int, todo: int, elapsed_s: float) -> str:
    """``"sweep: 1200/5000 rows (24%), 12.0 rows/s, elapsed 1m40s, ETA 5m16s"``.

    Example:
        >>> _progress_line(1200, 5000, 100.0)
        'sweep: 1200/5000 rows (24%), 12.0 rows/s, elapsed 1m40s, ETA 5m17s'
    """
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = (todo - done) / rate if rate > 0 else float("inf")

    def hms(t: float) -> str:
        if not math.isfinite(t):
            return "?"
        t = int(round(t))
        h, rest = divmod(t, 3600)
        m, sec = divmod(rest, 60)
        return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"

    return (
        f"sweep: {done}/{todo} rows ({100 * done / max(todo, 1):.0f}%), {rate:.1f} rows/s, "
        f"elapsed {hms(elapsed_s)}, ETA {hms(eta)}"
    )


def _run_inline(
    tasks: list[BatchTask], model, refs: ReferenceSet, session: Session, write: Callable[[list[Row]], None]
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in tasks:
            write(compute_batch(t, model, refs, session))
    finally:
        torch.set_num_threads(threads)


def _next_rows(results, timeout_s: float) -> list[Row] | None:
    """One batch's rows from the results queue, waiting up to ``timeout_s``; None when none came."""
    import queue as queue_mod

    try:
        rows: list[Row] = results.get(timeout=timeout_s)
    except queue_mod.Empty:
        return None
    return rows


#: How often a sweep restarts its worker pool after a worker process died (killed, out of memory)
#: before it gives up; the lost batches rerun on the new pool, finished ones are kept.
POOL_RESTARTS = 3


class _WorkerDied(Exception):
    """A worker process of the pool died; the batches it held were not written."""


def _run_pool(
    tasks: list[BatchTask], spec: SweepSpec, workers: int, write: Callable[[list[Row]], None]
) -> None:
    """Run ``tasks`` on ``workers`` spawned processes; a worker that dies is replaced and the batches
    not yet written rerun on the new pool (up to :data:`POOL_RESTARTS` times): rows are neither lost
    nor duplicated (each batch is written once, in one transaction)."""
    written: set[tuple[str, int]] = set()

    def record(rows: list[Row]) -> None:
        write(rows)
        if rows:
            written.add((rows[0].config_hash, rows[0].batch))

    for restart in range(POOL_RESTARTS + 1):
        left = [t for t in tasks if (t.key, t.batch) not in written]
        if not left:
            return
        try:
            _run_pool_once(left, spec, workers, record)
            return
        except _WorkerDied as exc:
            if restart == POOL_RESTARTS:
                raise MegenError(
                    f"sweep worker processes died {POOL_RESTARTS + 1} times ({exc}); rerun to continue"
                ) from None
            _console().print(f"a sweep worker died ({exc}); restarting the pool for the batches left")


def _run_pool_once(
    tasks: list[BatchTask], spec: SweepSpec, workers: int, write: Callable[[list[Row]], None]
) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(
            spec.model,
            tasks[0].device,
            resolve_references(spec.references, spec.model),
            os.getpid(),
            results,
        ),
    )
    chunks = chunk_tasks(tasks, workers)
    pending = list(reversed(chunks))
    running: set[Future] = set()
    received = 0
    try:
        while received < len(tasks):
            while pending and len(running) < 2 * workers:
                running.add(pool.submit(_worker_chunk, pending.pop()))
            rows = _next_rows(results, 0.2)
            if rows is not None:
                write(rows)
                received += 1
            for f in [f for f in running if f.done()]:
                running.discard(f)
                try:
                    f.result()
                except BrokenProcessPool as exc:
                    while (rows := _next_rows(results, 0.5)) is not None:  # finished before the death
                        write(rows)
                    raise _WorkerDied(str(exc) or "process pool broken") from exc
            if not running and not pending and received < len(tasks):
                # every chunk returned: its rows are in the queue already (put before return)
                rows = _next_rows(results, 30.0)
                if rows is None:
                    raise MegenError("internal: a sweep chunk finished without its rows")
                write(rows)
                received += 1
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        results.close()
        results.cancel_join_thread()
