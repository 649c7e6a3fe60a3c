"""``megen sweep --backend ray``: rows equal the process pool's; a killed driver resumes; a 2-node cluster.

Every test starts (and stops) its own Ray, so they are all slow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megen.experiments.spec import spec_from_flags
from megen.experiments.sweep import run_sweep
from megen.store import COST_COLUMNS, METRIC_COLUMNS

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FLAGS = [
    "--protocols", "central,CIAG,DIUG",
    "--channels", "awgn",
    "--snr-db", "0,10",
    "--samples", "4",
    "--batch-size", "2",
    "--steps", "3",
    "--model", "tiny-random",
]  # fmt: skip
EXPECTED_ROWS = 3 * 2 * 4
COMPARED = ("config_hash", "sample", "batch", "run_seed", "ref_index", "prompt", *METRIC_COLUMNS, *COST_COLUMNS,
            "costs_json", "image_png")  # fmt: skip
CLI = "import typer; from megen.cli.experiments import register; app = typer.Typer(); register(app); app()"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def _spec():
    return spec_from_flags(
        protocols="central,CIAG,DIUG",
        channels="awgn",
        snr_db="0,10",
        transmissions="analog",
        samples=4,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 3},
    )


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {', '.join(COMPARED)} FROM rows ORDER BY config_hash, sample").fetchall()


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def pool_db(tmp_path_factory) -> Path:
    """The sweep on the process pool (2 workers)."""
    db = tmp_path_factory.mktemp("pool") / "pool.sqlite"
    res = run_sweep(_spec(), db, workers=2, progress=False, log=lambda _: None)
    assert res.complete and res.written_rows == EXPECTED_ROWS
    return db


def test_ray_sweep_rows_equal_the_process_pool(tmp_path, pool_db):
    db = tmp_path / "ray.sqlite"
    res = run_sweep(_spec(), db, workers=2, progress=False, log=lambda _: None, backend="ray")
    assert res.complete and res.written_rows == EXPECTED_ROWS
    assert _rows(db) == _rows(pool_db)


def test_killed_ray_sweep_resumes_without_loss_or_duplicates(tmp_path, pool_db):
    db = tmp_path / "killed.sqlite"
    cmd = [
        sys.executable,
        "-c",
        CLI,
        "sweep",
        *FLAGS,
        "--db",
        str(db),
        "--no-progress",
        "--backend",
        "ray",
        "-j",
        "2",
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        while _count(db) < 2:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() - t0 < 600, "the Ray sweep made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    after_kill = _count(db)
    assert 2 <= after_kill < EXPECTED_ROWS and after_kill % 2 == 0
    res = run_sweep(_spec(), db, workers=2, progress=False, log=lambda _: None, backend="ray")
    assert res.existing_rows == after_kill and res.written_rows == EXPECTED_ROWS - after_kill
    rows = _rows(db)
    assert len({(r[0], r[1]) for r in rows}) == len(rows) == EXPECTED_ROWS
    assert rows == _rows(pool_db)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_pids(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (this test's cluster: its temp dir and port)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


def _stop_cluster(markers: list[str]) -> None:
    """Stop this test's cluster only: SIGTERM its processes by id, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = {p for m in markers for p in _cluster_pids(m)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)


def test_two_node_cluster_on_loopback(tmp_path, pool_db):
    env = {
        **ENV,
        "RAY_AUTH_MODE": "token",
    }  # the head's token (~/.ray/auth_token) for the second node and driver
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp_dir = (
        Path("/tmp") / f"megen-ray-{os.getpid()}-{port}"
    )  # short: Ray's socket paths have a length limit
    head = [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    head += ["--num-cpus", "1", "--include-dashboard", "false", "--temp-dir", str(temp_dir)]
    worker = [str(ray_bin), "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1"]
    worker += ["--num-cpus", "1"]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=300)
        subprocess.run(worker, env=env, check=True, capture_output=True, timeout=300)
        db = tmp_path / "cluster.sqlite"
        cmd = [sys.executable, "-c", CLI, "sweep", *FLAGS, "--db", str(db), "--no-progress"]
        cmd += ["--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "-j", "2"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _rows(db) == _rows(pool_db)
    finally:
        _stop_cluster([str(temp_dir), f"127.0.0.1:{port}"])
        shutil.rmtree(temp_dir, ignore_errors=True)
