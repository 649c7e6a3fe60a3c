"""``megen reproduce``: the whole case study in one command, written to ``report/``.

The sweep is one of the presets (:mod:`megen.experiments.presets`: ``demo``, ``default``, ``full``);
preset ``netsim`` runs the system-level study instead (:mod:`megen.netsim.reproduce`, ``netsim.md``);
the report (``report.md``: figures, tables, and the data ``rows.csv`` / ``rows.parquet``,
``summary.csv``, ``results.sqlite``) is written by :func:`megen.report.markdown.write_report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from megen.errors import MegenError
from megen.experiments.presets import PRESETS, preset_spec
from megen.experiments.spec import expand
from megen.report.markdown import md_table, threshold_metric, write_report

__all__ = [
    "PRESETS",
    "ReproduceResult",
    "md_table",
    "preset_spec",
    "reproduce",
    "threshold_metric",
    "write_report",
]


@dataclass
class ReproduceResult:
    """Where the report went and whether the sweep finished."""

    report: Path
    interrupted: bool = False
    signal_name: str | None = None


def reproduce(
    out: Path | str,
    *,
    preset: str = "default",
    workers: int = 2,
    model: str = "tiny",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    report_only: bool = False,
    device: str = "cpu",
) -> ReproduceResult:
    """Run a preset's sweep into ``out/results.sqlite`` and write ``out/report.md`` with figures and tables.

    Interrupted, it keeps the finished rows: running it again continues the sweep. With
    ``report_only``, no sweep runs: the report is written from the rows already stored (a stopped
    sweep's rows are balanced over its points, batch by batch; the report says how many are missing).

    Raises:
        MegenError: an unwritable output folder, a ``results.sqlite`` of another preset or model, or
            ``report_only`` without a ``results.sqlite`` of this preset.
    """
    from megen.experiments.sweep import run_sweep
    from megen.files import writable_folder

    say = log or print
    if preset == "netsim":  # the system-level study (megen.netsim.reproduce): no sweep
        from megen.netsim.reproduce import reproduce_netsim

        step = (lambda name: say(f"netsim: figure sweeps of {name} done")) if progress else None
        return ReproduceResult(
            reproduce_netsim(out, model=model, log=say, step=step, report_only=report_only)
        )
    out = writable_folder(out)
    spec = preset_spec(preset, model)
    if report_only:
        from megen.store import ResultsStore

        db = out / "results.sqlite"
        if not db.is_file():
            raise MegenError(f"{db} does not exist: run the sweep first (without --report-only)")
        with ResultsStore.open(db) as store:
            grown = 0 if store.spec.digest() == spec.digest() else store.grown_by(expand(spec))
            if grown is None:
                raise MegenError(f"{db} holds another sweep than preset {preset!r} with model {model!r}")
            if grown:  # a run started before the preset grew: report what it holds
                say(
                    f"the preset has {grown} configuration(s) more than {db} holds; "
                    "rerun without --report-only to add them"
                )
        return ReproduceResult(write_report(out, preset=preset, workers=workers, sweep_s=None, log=say))
    t0 = time.perf_counter()
    res = run_sweep(spec, out / "results.sqlite", workers=workers, progress=progress, log=say, device=device)
    if res.interrupted:
        return ReproduceResult(out / "report.md", True, res.signal_name)
    sweep_s = time.perf_counter() - t0
    report = write_report(out, preset=preset, workers=workers, sweep_s=sweep_s, log=say)
    return ReproduceResult(report)
