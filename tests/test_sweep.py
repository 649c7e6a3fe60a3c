"""``megen sweep`` against the real protocol runner: resume after SIGTERM/SIGKILL, determinism, workers.

A small sweep on the random-weight tiny model (``tiny-random``, 3 DDIM steps) keeps this fast.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from megen.cli.experiments import register
from megen.experiments.spec import expand, spec_from_flags
from megen.experiments.sweep import run_sweep
from megen.store import COST_COLUMNS, METRIC_COLUMNS, ResultsStore

FLAGS = [
    "--protocols", "central,EIUG,CIAG",
    "--channels", "awgn",
    "--snr-db", "0,10",
    "--samples", "6",
    "--batch-size", "2",
    "--steps", "3",
    "--model", "tiny-random",
    "--set", "image_quality=75",
]  # fmt: skip
EXPECTED_ROWS = 3 * 2 * 6
COMPARED = ("config_hash", "sample", "batch", "run_seed", "ref_index", "prompt", "prompt_class", *METRIC_COLUMNS,
            *COST_COLUMNS, "costs_json", "image_png")  # fmt: skip
CLI = (
    "import sys, typer; from megen.cli.experiments import register; app = typer.Typer(); register(app); app()"
)


def _spec():
    return spec_from_flags(
        protocols="central,EIUG,CIAG",
        channels="awgn",
        snr_db="0,10",
        transmissions="analog",
        samples=6,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 3, "image_quality": 75},
    )


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {', '.join(COMPARED)} FROM rows ORDER BY config_hash, sample").fetchall()


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.Error:
        return 0


def _quiet(_m: str) -> None:
    pass


def _cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def reference_db(tmp_path_factory) -> Path:
    """The uninterrupted sweep, in this process."""
    db = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    res = run_sweep(_spec(), db, progress=False, log=_quiet)
    assert res.complete and res.written_rows == EXPECTED_ROWS
    return db


def _start(db: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "sweep", *FLAGS, "--db", str(db), "--no-progress", *extra],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kill_after_rows(
    proc: subprocess.Popen, db: Path, sig: int, min_rows: int, timeout_s: float = 120.0
) -> int:
    t0 = time.monotonic()
    while _count(db) < min_rows:
        if proc.poll() is not None:
            pytest.fail(
                f"sweep ended before it could be interrupted:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
            pytest.fail("sweep made no progress")
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode


def test_same_sweep_twice_is_identical(tmp_path: Path, reference_db: Path):
    db = tmp_path / "again.sqlite"
    run_sweep(_spec(), db, progress=False, log=_quiet)
    assert _rows(db) == _rows(reference_db)


def test_kill_and_resume(tmp_path: Path, reference_db: Path):
    db = tmp_path / "r.sqlite"
    # 1) SIGTERM (to this process, while the CLI sweeps in it): the batch in flight is rolled back,
    #    the command says how to continue and exits with 143
    stop = threading.Event()

    def terminate_after_rows() -> None:
        while not stop.is_set():
            if _count(db) >= 2:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    safety = signal.signal(signal.SIGTERM, lambda *_: None)  # a late signal must not end pytest
    killer = threading.Thread(target=terminate_after_rows, daemon=True)
    try:
        killer.start()
        r = _cli("sweep", *FLAGS, "--db", str(db), "--no-progress")
    finally:
        stop.set()
        killer.join()
        signal.signal(signal.SIGTERM, safety)
    after_term = _count(db)
    assert r.exit_code == 143, r.output
    assert "run the same command again" in r.output
    assert 2 <= after_term < EXPECTED_ROWS and after_term % 2 == 0
    # 2) SIGKILL of a sweep in a subprocess: no chance to clean up
    proc = _start(db)
    code = _kill_after_rows(proc, db, signal.SIGKILL, min_rows=after_term + 2)
    after_kill = _count(db)
    assert code == -signal.SIGKILL
    assert after_term < after_kill < EXPECTED_ROWS, "the killed sweep should have stopped mid-run"
    # 3) restart: only the missing rows are computed, and they equal the uninterrupted run's
    res = run_sweep(_spec(), db, progress=False, log=_quiet)
    assert res.existing_rows == after_kill
    assert res.written_rows == EXPECTED_ROWS - after_kill
    rows = _rows(db)
    assert len(rows) == EXPECTED_ROWS
    assert len({(r[0], r[1]) for r in rows}) == EXPECTED_ROWS
    assert rows == _rows(reference_db)
    # 4) once more: nothing to do
    res = run_sweep(_spec(), db, progress=False, log=_quiet)
    assert res.written_rows == 0 and res.complete


def test_cli_export_plot_and_mismatch(tmp_path: Path, reference_db: Path):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    csv, pq, summ = tmp_path / "rows.csv", tmp_path / "rows.parquet", tmp_path / "summary.csv"
    r = runner.invoke(
        app, ["export", str(reference_db), "--csv", str(csv), "--parquet", str(pq), "--summary", str(summ)]
    )
    assert r.exit_code == 0, r.output
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == EXPECTED_ROWS and "image_png" not in df.columns
    assert len(pd.read_parquet(pq)) == EXPECTED_ROWS
    summary = pd.read_csv(summ)
    assert len(summary) == 6
    assert (summary["psnr_fidelity_db_n"] == 6).all()
    assert summary["fid"].isna().all() and summary["fid_note"].str.contains("refused").all()
    r = runner.invoke(app, ["plot", str(reference_db), "--out", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    for name in ("quality_vs_snr", "channel_uses", "costs", "image_grid", "frontier"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / "figs" / f"{name}.pdf").exists()
    # the same database with another sweep: refused, untouched
    before = reference_db.read_bytes()
    flags = [f if f != "0,10" else "0,20" for f in FLAGS]
    r = runner.invoke(app, ["sweep", *flags, "--db", str(reference_db), "--no-progress"])
    assert r.exit_code == 2 and "another sweep" in r.output
    assert reference_db.read_bytes() == before


def test_store_frame_columns(reference_db: Path):
    with ResultsStore.open(reference_db) as store:
        df = store.frame()
        assert {"protocol", "snr_db", "cfg_image_quality", "uses_total", "psnr_fidelity_db"} <= set(
            df.columns
        )
        assert df["uses_total"].gt(0).all()
        imgs = store.image_tensor(df["config_hash"].iloc[0])
        assert tuple(imgs.shape) == (6, 1, 32, 32)
        assert len(expand(store.spec)) == 6


@pytest.mark.slow
def test_workers_killed_driver(tmp_path: Path, reference_db: Path):
    """2 spawned workers give the same rows; SIGKILL of the driver leaves no worker behind."""
    db = tmp_path / "w.sqlite"
    proc = _start(db, "--workers", "2")
    t0 = time.monotonic()
    while len(_children(proc.pid)) < 2 and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert _kill_after_rows(proc, db, signal.SIGKILL, min_rows=2) == -signal.SIGKILL
    t0 = time.monotonic()
    while any(Path(f"/proc/{w}").exists() and "zombie" not in _state(w) for w in workers):
        assert time.monotonic() - t0 < 20, "orphaned sweep workers did not exit"
        time.sleep(0.2)
    proc = _start(db, "--workers", "2")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert _rows(db) == _rows(reference_db)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    """Under nohup or in a CI log the bar cannot redraw: the sweep prints plain progress lines instead."""
    from megen.experiments import sweep

    monkeypatch.setattr(sweep, "PLAIN_PROGRESS_S", 0.0)
    res = run_sweep(_spec(), tmp_path / "p.sqlite", progress=True, log=lambda m: None)
    assert res.complete
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("sweep: ")]
    assert lines and lines[-1].startswith(f"sweep: {EXPECTED_ROWS}/{EXPECTED_ROWS} rows (100%)")
    assert "ETA 0m00s" in lines[-1]


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_batches_rerun(tmp_path: Path, reference_db: Path):
    """SIGKILL of one pool worker mid-sweep: the pool restarts, the lost batches rerun, the sweep ends
    by itself with exit 0 and its rows equal the uninterrupted sweep's (none lost, none duplicated)."""
    db = tmp_path / "k.sqlite"
    proc = _start(db, "--workers", "2")
    try:
        t0 = time.monotonic()
        while _count(db) < 2:
            assert proc.poll() is None and time.monotonic() - t0 < 180, "sweep made no progress"
            time.sleep(0.05)
        workers = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert workers, "no pool worker found"
        os.kill(workers[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "a sweep worker died" in out
    assert _rows(db) == _rows(reference_db)


def test_large_sweeps_run_batch_index_zero_of_every_point_first():
    """Chunks of at most MAX_CHUNK_BATCHES: two workers finish batch 0 of all points before batch 1."""
    from megen.experiments.sweep import MAX_CHUNK_BATCHES, BatchTask, chunk_tasks

    tasks = [BatchTask(f"k{p}", "{}", "i2i", b, (b,), 0, 0) for b in (0, 1) for p in range(711)]
    chunks = chunk_tasks(tasks, 2)
    assert max(len(c) for c in chunks) == MAX_CHUNK_BATCHES
    assert all(len({t.batch for t in c}) == 1 for c in chunks)
    first = [c[0].batch for c in chunks]
    assert first == sorted(first)  # every chunk of batch 0 is handed out before any of batch 1
    assert sum(len(c) for c in chunks if c[0].batch == 0) == 711
