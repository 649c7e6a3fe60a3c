"""Rows per second of ``megen sweep`` with 1 and 2 worker processes (issue 5).

The same sweep (embedded model, 25 DDIM steps, batches of 25 images) runs into two fresh databases,
once in this process (``--workers 1``) and once with two spawned workers; the rows of both must be
identical. Times are end to end (model loading and worker start-up included), so the sweep is sized
to make start-up small against the work.

Usage: python benchmarks/bench_sweep.py [--samples 200] [--protocols central,EIUG,CIAG,ESUC] [--model tiny]
Writes benchmarks/results/sweep.json. Target: the 2-worker speed-up >= 1.6x on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from megen.errors import MegenError
from megen.experiments.spec import spec_from_flags
from megen.experiments.sweep import run_sweep
from megen.store import COST_COLUMNS, METRIC_COLUMNS

COMPARED = ("config_hash", "sample", *METRIC_COLUMNS, *COST_COLUMNS, "image_png")


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {', '.join(COMPARED)} FROM rows ORDER BY config_hash, sample").fetchall()


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocols", default="central,EIUG,CIAG,ESUC")
    ap.add_argument("--snr-db", default="0,10")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument(
        "--model", default="tiny", help="tiny (falls back to tiny-random without trained weights)"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep.json")
    args = ap.parse_args()

    model = args.model
    if model == "tiny":
        from megen.models.registry import load_model

        try:
            load_model("tiny")
        except MegenError as exc:
            print(
                f"tiny weights not available ({exc}); benchmarking tiny-random (same architecture and cost)"
            )
            model = "tiny-random"
    spec = spec_from_flags(
        protocols=args.protocols,
        channels="awgn",
        snr_db=args.snr_db,
        transmissions="analog",
        samples=args.samples,
        seeds="0",
        model=model,
        batch_size=25,
        extra={"steps": args.steps},
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {}
        for workers in (1, 2):
            db = Path(tmp) / f"w{workers}.sqlite"
            load_before = _load_average()
            t0 = time.perf_counter()
            res = run_sweep(spec, db, workers=workers, progress=False, log=print)
            wall = time.perf_counter() - t0
            results[str(workers)] = {
                "rows": res.written_rows,
                "seconds": round(wall, 2),
                "rows_per_s": round(res.written_rows / wall, 3),
                "steady_rows_per_s": round(res.steady_rows_per_s(), 3),
                "load_average_before": load_before,
                "load_average_after": _load_average(),
            }
            dbs[workers] = db
            print(
                f"{workers} worker(s): {res.written_rows} rows in {wall:.1f} s = {res.written_rows / wall:.2f} rows/s "
                f"(after start-up: {res.steady_rows_per_s():.2f} rows/s)"
            )
        identical = _rows(dbs[1]) == _rows(dbs[2])
    speedup = results["2"]["rows_per_s"] / results["1"]["rows_per_s"]
    steady = results["2"]["steady_rows_per_s"] / results["1"]["steady_rows_per_s"]
    print(
        f"speed-up with 2 workers: {speedup:.2f}x end to end, {steady:.2f}x after start-up; rows identical: {identical}"
    )
    out = {
        "model": model,
        "steps": args.steps,
        "batch_size": 25,
        "protocols": args.protocols.split(","),
        "snr_db": args.snr_db,
        "samples_per_point": args.samples,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "workers": results,
        "speedup_2_workers": round(speedup, 3),
        "speedup_2_workers_after_startup": round(steady, 3),
        "rows_identical_1_vs_2_workers": identical,
        "note": "rows_per_s: end to end, model loading and worker start-up included; steady_rows_per_s: "
        "between the first and the last committed batch; load_average shows how busy the shared CPU was",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
