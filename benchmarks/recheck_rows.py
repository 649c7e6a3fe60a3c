"""Recompute stored rows of a results database with the current code and compare them.

A sweep database is continued across code changes (``megen sweep``/``reproduce`` resume it and extend
its grid); this script checks that the code still produces the stored numbers: it recomputes the first
batch of ``--configs`` randomly chosen configurations (seeded, or those whose protocol is given with
``--protocol``) and compares every metric and cost column but ``wall_s``.

Usage: python benchmarks/recheck_rows.py report/results.sqlite [--configs 6] [--protocol UIEG] [--seed 0]
Prints one line per configuration and exits 1 if any row differs by more than ``--rtol``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import torch

from megen.analysis.cells import is_missing
from megen.experiments.references import load_references, resolve_references
from megen.experiments.spec import expand
from megen.experiments.sweep import compute_batch, load_sweep_model, plan_tasks
from megen.session import Session
from megen.store import ResultsStore
from megen.store.schema import COST_COLUMNS, METRIC_COLUMNS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--configs", type=int, default=6, help="configurations to recompute")
    ap.add_argument("--protocol", action="append", default=[], help="only these protocols (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random choice")
    ap.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance per value")
    args = ap.parse_args()
    with ResultsStore.open(args.db) as store:
        spec = store.spec
        stored = store.frame()
    points = [p for p in expand(spec) if not args.protocol or p.config.protocol.name in args.protocol]
    chosen = random.Random(args.seed).sample(points, min(args.configs, len(points)))
    torch.set_num_threads(1)  # as the sweep's workers: the same reduction order, the same floats
    session = Session()
    model = load_sweep_model(spec.model, "cpu", session)
    references = load_references(resolve_references(spec.references, spec.model))
    columns = [c for c in (*METRIC_COLUMNS, *COST_COLUMNS) if c != "wall_s" and c in stored]
    bad = 0
    for task in plan_tasks(spec, chosen, {}):
        if task.batch:
            continue
        mine = stored[stored["config_hash"] == task.key].set_index("sample")
        worst, where = 0.0, ""
        for row in compute_batch(task, model, references, session):
            for col in columns:
                a, b = getattr(row, col), mine.loc[row.sample, col]
                if is_missing(a) and is_missing(b):
                    continue
                if is_missing(a) != is_missing(b) or not math.isclose(
                    float(a), float(b), rel_tol=args.rtol, abs_tol=1e-9
                ):
                    err = math.inf if is_missing(a) or is_missing(b) else abs(float(a) - float(b))
                    if err > worst:
                        worst, where = err, f"{col} sample {row.sample}: {a} vs stored {b}"
        label = next(p for p in chosen if p.key == task.key).config.protocol.name
        status = "equal" if not where else f"DIFFERS ({where})"
        bad += bool(where)
        print(f"{task.key} {label} ({len(task.samples)} rows, {len(columns)} columns): {status}", flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} configurations equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
