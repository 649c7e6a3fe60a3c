"""Reliability of the results store, exports and plots: refusals are one line and exit 2, nothing is
overwritten, no row is lost (issue 9, reliability defects 1-3 and the sweep side of 2)."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from megen.cli.experiments import register
from megen.errors import MegenError
from megen.experiments.spec import expand, spec_from_flags
from megen.experiments.sweep import run_sweep
from megen.store import ROW_COLUMNS, ResultsStore, Row, RowSchemaError

pytestmark = pytest.mark.cli

SWEEP = ["--protocols", "central", "--snr-db", "10", "--samples", "2", "--batch-size", "2", "--steps", "2"]


def _spec(**kw):
    args = dict(
        protocols="central",
        channels="awgn",
        snr_db="10",
        transmissions="analog",
        samples=2,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 2},
    )
    args.update(kw)
    return spec_from_flags(**args)


def _cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(r, needle: str, *, notes: bool = False) -> None:
    """Exit 2 with one ``Error:`` line naming ``needle`` (after progress notes, if ``notes``)."""
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and (notes or len(lines) == 1), r.output
    assert needle in errors[0], r.output
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def full_db(tmp_path_factory) -> Path:
    """A finished two-row sweep on the random tiny model."""
    db = tmp_path_factory.mktemp("hard") / "r.sqlite"
    res = run_sweep(_spec(), db, progress=False, log=lambda _m: None)
    assert res.complete and res.written_rows == 2
    return db


@pytest.fixture
def db(full_db: Path, tmp_path: Path) -> Path:
    out = tmp_path / "r.sqlite"
    shutil.copy(full_db, out)
    return out


# ---------------------------------------------------------------------------------------------- 1. data loss
@pytest.mark.parametrize("flag", ["--csv", "--parquet", "--summary"])
@pytest.mark.parametrize("spelling", ["same", "symlink", "relative"])
def test_export_onto_the_database_is_refused(db: Path, tmp_path: Path, monkeypatch, flag: str, spelling: str):
    before = db.read_bytes()
    target: Path | str = db
    if spelling == "symlink":
        target = tmp_path / "link.csv"
        target.symlink_to(db)
    elif spelling == "relative":
        monkeypatch.chdir(tmp_path)
        target = f"./{db.name}"
    r = _cli("export", db, flag, target)
    _one_line_error(r, "refusing to overwrite")
    assert db.read_bytes() == before
    with ResultsStore.open(db) as s:
        assert s.count() == 2


def test_export_two_outputs_one_file_is_refused(db: Path, tmp_path: Path):
    out = tmp_path / "a.csv"
    r = _cli("export", db, "--csv", out, "--summary", out)
    _one_line_error(r, "same file")
    assert not out.exists()


def test_export_of_an_empty_database_writes_nothing(tmp_path: Path):
    spec = _spec()
    empty = tmp_path / "empty.sqlite"
    with ResultsStore.create_or_resume(empty, spec, expand(spec)):
        pass
    csv = tmp_path / "keep.csv"
    csv.write_text("precious\n")
    r = _cli("export", empty, "--csv", csv, "--summary", tmp_path / "s.csv")
    _one_line_error(r, "no rows")
    assert csv.read_text() == "precious\n"
    assert not (tmp_path / "s.csv").exists()


# ---------------------------------------------------------------------------------------------- 2. full disk
def test_db_on_dev_full_is_refused_without_a_lock_file(tmp_path: Path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    r = _cli("sweep", *SWEEP, "--model", "tiny-random", "--db", "/dev/full", "--no-progress")
    _one_line_error(r, "/dev/full is not a regular file")
    assert not Path("/dev/full.lock").exists()
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("flag", ["--csv", "--parquet", "--summary"])
def test_export_to_dev_full_is_refused(db: Path, flag: str):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    r = _cli("export", db, flag, "/dev/full")
    _one_line_error(r, "/dev/full is not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` refuse new files, also for root (who ignores permission bits)."""
    import megen.files as files

    real = files.tempfile.TemporaryFile

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir", "")).resolve() == folder.resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    folder.mkdir(exist_ok=True)
    monkeypatch.setattr(files.tempfile, "TemporaryFile", refuse)


def test_plots_into_a_read_only_folder(db: Path, tmp_path: Path, monkeypatch):
    figs = tmp_path / "figs"
    _read_only(monkeypatch, figs)
    r = _cli("plot", db, "--out", figs)
    _one_line_error(r, "not writable: Read-only file system")
    assert list(figs.iterdir()) == []


def test_reproduce_into_a_read_only_folder(tmp_path: Path, monkeypatch):
    out = tmp_path / "report"
    _read_only(monkeypatch, out)
    r = _cli("reproduce", "--out", out, "--preset", "demo", "--model", "tiny-random", "--no-progress")
    _one_line_error(r, "not writable")
    assert list(out.iterdir()) == []


def test_full_disk_while_exporting_keeps_the_old_file(db: Path, tmp_path: Path, monkeypatch):
    import pandas as pd

    def full(self, path, *a, **k):
        Path(path).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    csv = tmp_path / "rows.csv"
    csv.write_text("old\n")
    r = _cli("export", db, "--csv", csv)
    _one_line_error(r, "No space left on device")
    assert csv.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_full_disk_while_plotting_is_one_line(db: Path, tmp_path: Path, monkeypatch):
    from matplotlib.figure import Figure

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    r = _cli("plot", db, "--out", tmp_path / "figs")
    _one_line_error(r, "No space left on device", notes=True)


def test_full_disk_during_a_sweep_keeps_rows_and_resumes(tmp_path: Path, monkeypatch):
    db = tmp_path / "r.sqlite"
    spec = _spec(samples=4)
    real = ResultsStore.insert_rows
    calls = {"n": 0}

    def second_batch_full(self, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MegenError(f"cannot write results database {self.path}: database or disk is full")
        return real(self, rows)

    monkeypatch.setattr(ResultsStore, "insert_rows", second_batch_full)
    with pytest.raises(MegenError, match="disk is full"):
        run_sweep(spec, db, progress=False, log=lambda _m: None)
    with ResultsStore.open(db) as s:
        assert s.count() == 2  # the first batch stays
    monkeypatch.setattr(ResultsStore, "insert_rows", real)
    res = run_sweep(spec, db, progress=False, log=lambda _m: None)
    assert res.existing_rows == 2 and res.written_rows == 2 and res.complete


def test_sqlite_full_disk_becomes_a_megen_error(db: Path, monkeypatch):
    spec = ResultsStore.open(db).spec
    store = ResultsStore.create_or_resume(db, spec, expand(spec))
    try:
        store.conn.execute("PRAGMA max_page_count = 1")  # no page to add: SQLITE_FULL on the next insert
        key = store.conn.execute("SELECT config_hash FROM points").fetchone()[0]
        row = _row(config_hash=key, sample=99, prompt="x" * 200_000)
        with pytest.raises(MegenError, match="cannot write results database .*full"):
            store.insert_rows([row])
        assert store.count() == 2
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------- 3. store
def test_lock_is_taken_on_the_real_path(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    link = tmp_path / "link.sqlite"
    link.symlink_to(db)
    spec = _spec()
    with (
        ResultsStore.create_or_resume(db, spec, expand(spec)),
        pytest.raises(MegenError, match="another megen sweep"),
    ):
        ResultsStore.create_or_resume(link, spec, expand(spec))
    with ResultsStore.create_or_resume(link, spec, expand(spec)):  # released: the link is fine alone
        pass


def test_a_model_that_does_not_load_leaves_no_database(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    r = _cli("sweep", *SWEEP, "--model", tmp_path / "no-such-model", "--db", db, "--no-progress")
    assert r.exit_code == 2, r.output
    assert not db.exists()
    r = _cli("sweep", *SWEEP, "--model", "tiny-random", "--db", db, "--no-progress")
    assert r.exit_code == 0, r.output
    with ResultsStore.open(db) as s:
        assert s.count() == 2


def test_a_seed_sqlite_cannot_store_writes_nothing(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    with pytest.raises(MegenError, match="seed"):  # refused when the spec is read, before any file
        run_sweep(_spec(seeds=str(2**63)), db, progress=False, log=lambda _m: None)
    assert not db.exists()
    assert run_sweep(_spec(), db, progress=False, log=lambda _m: None).complete


def test_a_failed_new_database_is_removed_but_an_existing_one_kept(tmp_path: Path, monkeypatch):
    from megen.experiments import sweep

    def boom(*a, **k):
        raise MegenError("model exploded")

    monkeypatch.setattr(sweep, "compute_batch", boom)
    new = tmp_path / "new.sqlite"
    with pytest.raises(MegenError, match="exploded"):
        run_sweep(_spec(), new, progress=False, log=lambda _m: None)
    assert not new.exists()
    spec = _spec()
    old = tmp_path / "old.sqlite"
    with ResultsStore.create_or_resume(old, spec, expand(spec)):
        pass  # an earlier run created it (and was stopped before its first row)
    with pytest.raises(MegenError, match="exploded"):
        run_sweep(spec, old, progress=False, log=lambda _m: None)
    assert old.exists()


def _garble(db: Path, sql: str, *args) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, args)
    conn.close()


@pytest.mark.parametrize(
    ("sql", "args", "needle"),
    [
        ("UPDATE points SET config_json = ?", ("{not json",), "not JSON"),
        ("UPDATE rows SET image_png = ?", (b"GIF89a not a png",), "not PNG"),
        ("UPDATE rows SET costs_json = ?", ("[[[",), "not JSON"),
    ],
)
def test_garbled_cells_are_corruption(db: Path, tmp_path: Path, sql: str, args: tuple, needle: str):
    _garble(db, sql, *args)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()
    before = db.read_bytes()
    for cmd in (
        ["sweep", *SWEEP, "--model", "tiny-random", "--db", db, "--no-progress"],
        ["plot", db, "--out", tmp_path / "figs"],
        ["export", db, "--csv", tmp_path / "a.csv"],
    ):
        _one_line_error(_cli(*cmd), needle)
    assert db.read_bytes() == before
    assert not (tmp_path / "a.csv").exists()


def test_truncated_png_is_corruption(db: Path):
    with sqlite3.connect(db) as conn:
        blob = conn.execute("SELECT image_png FROM rows LIMIT 1").fetchone()[0]
        conn.execute("UPDATE rows SET image_png = ?", (blob[:20],))
    conn.close()
    with ResultsStore.open(db) as s:
        key = s.conn.execute("SELECT config_hash FROM rows LIMIT 1").fetchone()[0]
        with pytest.raises(MegenError, match="corrupt"):
            s.images(key)


# ---------------------------------------------------------------------------------------------- schema
def _row(**over) -> dict:
    import torch

    from megen.images import encode_png

    data: dict = dict.fromkeys(ROW_COLUMNS, 0.0)
    data.update(config_hash="k", sample=0, batch=0, run_seed=1, ref_index=None, prompt="p", prompt_class=None)
    data.update(costs_json="{}", image_png=encode_png(torch.zeros(1, 4, 4)))
    data.update(over)
    return data


def test_row_defines_the_columns():
    r = Row.from_mapping(_row())
    assert tuple(r.__dataclass_fields__) == ROW_COLUMNS
    assert len(r.values()) == len(ROW_COLUMNS)
    assert (
        Row.from_mapping(_row(psnr_fidelity_db=float("nan"))).values()[ROW_COLUMNS.index("psnr_fidelity_db")]
        is None
    )


def test_missing_or_renamed_key_is_an_error_not_null(db: Path):
    spec = ResultsStore.open(db).spec
    missing = _row()
    del missing["ssim_fidelity"]
    renamed = _row()
    renamed["psnr_fid_db"] = renamed.pop("psnr_fidelity_db")
    with ResultsStore.create_or_resume(db, spec, expand(spec)) as store:
        key = store.conn.execute("SELECT config_hash FROM points").fetchone()[0]
        missing["config_hash"] = renamed["config_hash"] = key
        with pytest.raises(RowSchemaError, match="missing \\['ssim_fidelity'\\]"):
            store.insert_rows([missing])
        with pytest.raises(RowSchemaError, match="unknown \\['psnr_fid_db'\\]"):
            store.insert_rows([_row(config_hash=key, sample=7), renamed])
        assert store.count() == 2  # nothing of the batch was written


# ---------------------------------------------------------------------------------------------- 4. markup
def test_paths_with_markup_are_printed_verbatim(tmp_path: Path):
    folder = tmp_path / "a[/bold]b[red]"
    folder.mkdir(parents=True)
    missing = folder / "none.sqlite"
    r = _cli("plot", missing)
    _one_line_error(r, f"not found: {missing}")
    db = folder / "r.sqlite"
    r = _cli("sweep", *SWEEP, "--model", "tiny-random", "--db", db, "--no-progress")
    assert r.exit_code == 0, r.output
    assert f"{db}: 2/2 rows" in r.output


def test_report_never_writes_over_its_database(db: Path, tmp_path: Path):
    from megen.report.markdown import write_report

    out = tmp_path / "report"
    out.mkdir()
    shutil.move(db, out / "results.sqlite")
    (out / "rows.csv").symlink_to(out / "results.sqlite")
    before = (out / "results.sqlite").read_bytes()
    with pytest.raises(MegenError, match="refusing to overwrite"):
        write_report(out, preset="demo", workers=1, sweep_s=None, log=lambda _m: None)
    assert (out / "results.sqlite").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["results.sqlite", "rows.csv"]
