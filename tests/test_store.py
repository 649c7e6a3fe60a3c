"""The results database: refusing corrupt, foreign and mismatched files; spec parsing; CLI errors.

These tests need no model run: they exercise the store and the command line's error paths.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from megen.cli.experiments import register
from megen.errors import MegenError
from megen.experiments.spec import expand, load_spec, make_spec, spec_from_flags
from megen.experiments.sweep import run_sweep
from megen.images import decode_png, encode_png
from megen.store import ResultsStore

pytestmark = pytest.mark.cli


def _spec(**kw):
    args = dict(
        protocols="central,EIUG",
        channels="awgn",
        snr_db="0,10",
        transmissions="analog",
        samples=4,
        seeds="0",
        model="tiny-random",
        batch_size=2,
    )
    args.update(kw)
    return spec_from_flags(**args)


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _invoke(*args: str):
    return CliRunner().invoke(_app(), list(args))


# ---------------------------------------------------------------------------------------------- spec
def test_sweep_grid_cap_is_the_link_cap():
    from megen.grid import MAX_GRID_POINTS

    with pytest.raises(MegenError, match=f"at most {MAX_GRID_POINTS}"):
        _spec(snr_db="-30:60:0.0001")  # 900 001 points: refused before any is built
    with pytest.raises(MegenError, match=f"at most {MAX_GRID_POINTS}"):
        _spec(protocols="central,EIUG,CIAG", snr_db="-30:60:0.1")  # 3 x 901 combinations


def test_expand_canonicalises_points():
    spec = _spec(
        protocols="central,local,EIUG", channels="awgn,none", snr_db="0,10", transmissions="analog,digital"
    )
    points = expand(spec)
    by = {}
    for p in points:
        by.setdefault(p.config.protocol.name, []).append(p)
    assert len(by["local"]) == 1 and by["local"][0].config.flat()["channel"] == "none"
    # central sends no seed: its transmission mode is collapsed; channel none has one SNR
    assert len(by["central"]) == 2 + 1
    assert len(by["EIUG"]) == 2 * 2 + 2
    assert len({p.key for p in points}) == len(points)


def test_toml_spec_and_tags_merge(tmp_path: Path):
    f = tmp_path / "exp.toml"
    f.write_text(
        'name = "t"\nmodel = "tiny-random"\nsamples = 4\nbatch_size = 2\n[defaults]\nsteps = 3\n'
        '[[grid]]\nprotocol = ["central"]\nsnr_db = "0:10:10"\n'
        '[[grid]]\ntag = "frontier"\nprotocol = "central"\nsnr_db = [10]\nimage_quality = [10, 90]\nsamples = 6\n'
    )
    spec = load_spec(f)
    points = expand(spec)
    assert len(points) == 3
    shared = [
        p for p in points if p.config.flat()["snr_db"] == 10.0 and p.config.flat()["image_quality"] == 90
    ]
    assert shared[0].tags == ("main", "frontier") and shared[0].samples == 6
    assert all(p.config.task.steps == 3 for p in points)


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[[grid]]\nprotocol = 'central'\nbogus = 1\n", "unknown grid key"),
        ("[[grid]]\nprotocol = 'central'\nsnr_db = []\n", "empty"),
        ("[[grid]]\nprotocol = 'central'\nseed = 3\n", "set by the sweep"),
        ("samples = 0\n[[grid]]\nprotocol = 'central'\n", "samples"),
        ("[[grid\n", "not valid TOML"),
        ("name = 'x'\n", "no grid"),
    ],
)
def test_bad_toml(tmp_path: Path, body: str, needle: str):
    f = tmp_path / "exp.toml"
    f.write_text(body)
    with pytest.raises(MegenError, match=needle):
        load_spec(f)


# ---------------------------------------------------------------------------------------------- store
def test_png_round_trip():
    import torch

    x = torch.rand(1, 32, 32)
    y = decode_png(encode_png(x))
    assert y.shape == x.shape
    assert (y - x).abs().max() <= 0.5 / 255 + 1e-6


def test_create_resume_and_mismatch(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    spec = _spec()
    points = expand(spec)
    with ResultsStore.create_or_resume(db, spec, points) as s:
        assert s.count() == 0
        assert s.spec == spec
    with ResultsStore.create_or_resume(db, spec, points) as s:  # same sweep: fine
        assert s.count() == 0
    before = db.read_bytes()
    other = _spec(snr_db="0,20")
    with pytest.raises(MegenError, match="another sweep"):
        ResultsStore.create_or_resume(db, other, expand(other))
    assert db.read_bytes() == before


def test_a_grown_grid_extends_the_stored_sweep(tmp_path: Path):
    """Adding SNRs to a sweep continues its database: only the new configurations are added."""
    db = tmp_path / "r.sqlite"
    spec = _spec()
    with ResultsStore.create_or_resume(db, spec, expand(spec)) as s:
        created = s.meta["created_utc"]
        assert s.extended_by == 0
    grown = _spec(snr_db="0,5,10")
    with ResultsStore.create_or_resume(db, grown, expand(grown)) as s:
        assert s.extended_by == 2  # two protocols at the new 5 dB
        assert s.spec == grown and s.meta["created_utc"] == created
        assert len(s.points_frame()) == len(expand(grown))
    with ResultsStore.create_or_resume(db, grown, expand(grown)) as s:  # now the same sweep
        assert s.extended_by == 0
    # the original grid is no longer the stored sweep: a subset is refused, nothing modified
    before = db.read_bytes()
    with pytest.raises(MegenError, match="2 configuration.s. only in the database"):
        ResultsStore.create_or_resume(db, spec, expand(spec))
    assert db.read_bytes() == before


def test_second_writer_is_refused(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    spec = _spec()
    with (
        ResultsStore.create_or_resume(db, spec, expand(spec)),
        pytest.raises(MegenError, match="another megen sweep"),
    ):
        ResultsStore.create_or_resume(db, spec, expand(spec))


def test_corrupt_and_foreign_files_untouched(tmp_path: Path):
    spec = _spec()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 10)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("INSERT INTO people VALUES ('ada')")
    conn.close()
    broken = tmp_path / "broken.sqlite"
    with ResultsStore.create_or_resume(broken, spec, expand(spec)):
        pass
    data = bytearray(broken.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # destroy the schema page, keep the header
    broken.write_bytes(bytes(data))
    for f, needle in ((junk, "not a SQLite"), (foreign, "another program"), (broken, "SQLite")):
        before = f.read_bytes()
        with pytest.raises(MegenError, match=needle):
            ResultsStore.create_or_resume(f, spec, expand(spec))
        with pytest.raises(MegenError):
            ResultsStore.open(f)
        assert f.read_bytes() == before


def test_unwritable_output_folder(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = _spec()
    with pytest.raises(MegenError, match="cannot create the output folder"):
        ResultsStore.create_or_resume(blocker / "sub" / "r.sqlite", spec, expand(spec))


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_empty_snr_list_exit_2(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    r = _invoke("sweep", "--protocols", "central", "--snr-db", "", "--db", str(db), "--model", "tiny-random")
    assert r.exit_code == 2
    assert "empty" in r.output
    assert not db.exists()


def test_cli_corrupt_db_exit_2(tmp_path: Path):
    db = tmp_path / "r.sqlite"
    db.write_bytes(b"garbage" * 100)
    before = db.read_bytes()
    r = _invoke("sweep", "--protocols", "central", "--snr-db", "0", "--db", str(db), "--model", "tiny-random")
    assert r.exit_code == 2 and "not a SQLite database" in r.output
    assert db.read_bytes() == before
    for cmd in (
        ["plot", str(db), "--out", str(tmp_path / "figs")],
        ["export", str(db), "--csv", str(tmp_path / "a.csv")],
    ):
        r = _invoke(*cmd)
        assert r.exit_code == 2, r.output
    assert not (tmp_path / "a.csv").exists()


def test_cli_unwritable_output(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    r = _invoke("sweep", "--snr-db", "0", "--db", str(blocker / "r.sqlite"), "--model", "tiny-random")
    assert r.exit_code == 2 and "output folder" in r.output
    r = _invoke("reproduce", "--out", str(blocker), "--preset", "demo", "--model", "tiny-random")
    assert r.exit_code == 2 and "not a folder" in r.output
    assert blocker.read_text() == "keep"


def test_cli_config_and_flags_conflict(tmp_path: Path):
    f = tmp_path / "exp.toml"
    f.write_text("[[grid]]\nprotocol = 'central'\n")
    r = _invoke("sweep", "--config", str(f), "--protocols", "EIUG", "--db", str(tmp_path / "r.sqlite"))
    assert r.exit_code == 2 and "--config replaces" in r.output


def test_cli_missing_db_and_nothing_to_export(tmp_path: Path):
    r = _invoke("plot", str(tmp_path / "none.sqlite"))
    assert r.exit_code == 2 and "not found" in r.output
    spec = _spec()
    db = tmp_path / "r.sqlite"
    with ResultsStore.create_or_resume(db, spec, expand(spec)):
        pass
    r = _invoke("export", str(db))
    assert r.exit_code == 2 and "nothing to export" in r.output
    r = _invoke("export", str(db), "--summary", str(tmp_path / "s.csv"))
    assert r.exit_code == 2 and "no rows" in r.output
    assert not (tmp_path / "s.csv").exists()


def _tiny_copy(tmp_path: Path) -> Path:
    import shutil

    from megen.models.tiny import packaged_weights_dir

    folder = tmp_path / "tiny"
    shutil.copytree(packaged_weights_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_retrained_seed_codec_leaves_sweeps_without_one_resumable(tmp_path: Path):
    """Rows depend on the seed-codec weights only where a seed codec reads them."""
    from megen.models.fingerprint import model_fingerprint

    model = _tiny_copy(tmp_path)
    plain = _spec(model=str(model), snr_db="0")
    coded = _spec(model=str(model), snr_db="0", protocols="UIEG", extra={"seed_codec": ["linear"]})
    for name, spec in (("plain", plain), ("coded", coded)):
        with ResultsStore.create_or_resume(tmp_path / f"{name}.sqlite", spec, expand(spec)) as s:
            assert ("seed_codec_fingerprint" in s.meta) == (name == "coded")
    seed_file = model / "seed_codec.safetensors"
    seed_file.write_bytes(seed_file.read_bytes() + b" ")  # "retrained"
    with ResultsStore.create_or_resume(tmp_path / "plain.sqlite", plain, expand(plain)) as s:
        assert s.meta["model_fingerprint"] == model_fingerprint(str(model), seed_codec=False)
    before = (tmp_path / "coded.sqlite").read_bytes()
    with pytest.raises(MegenError, match="other seed-codec weights"):
        ResultsStore.create_or_resume(tmp_path / "coded.sqlite", coded, expand(coded))
    assert (tmp_path / "coded.sqlite").read_bytes() == before
    (model / "megen_tiny.json").write_bytes((model / "megen_tiny.json").read_bytes() + b" ")  # other model
    with pytest.raises(MegenError, match="other weights of model"):
        ResultsStore.create_or_resume(tmp_path / "plain.sqlite", plain, expand(plain))


def test_a_database_keyed_by_every_weight_file_resumes(tmp_path: Path):
    """Databases of earlier versions (one fingerprint over every file) resume and get the new keys."""
    from megen.models.fingerprint import model_fingerprint

    model = _tiny_copy(tmp_path)
    spec = _spec(model=str(model), snr_db="0")
    db = tmp_path / "old.sqlite"
    with ResultsStore.create_or_resume(db, spec, expand(spec)):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'model_fingerprint'", (model_fingerprint(str(model)),)
        )
    with ResultsStore.create_or_resume(db, spec, expand(spec)) as s:
        assert s.meta["model_fingerprint"] == model_fingerprint(str(model), seed_codec=False)
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    assert stored["model_fingerprint"] == model_fingerprint(str(model), seed_codec=False)


def test_a_grid_added_over_stored_points_grows_them_and_keeps_their_rows(tmp_path: Path):
    """A grid over stored configurations adds its tag (and samples) to them: the sweep continues, the
    stored rows stay, and only the new samples run; a sweep that drops a tag is another sweep."""
    db = tmp_path / "g.sqlite"
    spec = _spec(protocols="central", snr_db="0")
    run_sweep(spec, db, progress=False, log=lambda m: None)
    data = spec.model_dump()
    grown = make_spec(
        {**data, "grids": [*data["grids"], {**data["grids"][0], "tag": "frontier", "samples": 6}]}
    )
    (point,) = expand(grown)
    assert point.tags == ("main", "frontier") and point.samples == 6
    with ResultsStore.open(db) as s:
        before = s.frame()[["sample", "psnr_fidelity_db"]].sort_values("sample").values.tolist()
    r = run_sweep(grown, db, progress=False, log=lambda m: None)
    assert (r.existing_rows, r.written_rows) == (4, 2)
    with ResultsStore.open(db) as s:
        points = s.points_frame()
        after = s.frame()[["sample", "psnr_fidelity_db"]].sort_values("sample").values.tolist()
    assert points[["tags", "samples"]].values.tolist() == [["main,frontier", 6]]
    assert after[:4] == before and len(after) == 6
    with pytest.raises(MegenError, match="a tag dropped"):
        ResultsStore.create_or_resume(db, spec, expand(spec))


def test_points_with_a_wired_backhaul_or_mixed_links_are_stored(tmp_path: Path):
    """A point whose links differ is stored under its radio channel (it was silently dropped before)."""
    from megen.config import RunConfig
    from megen.store.schema import point_channel

    wired = _spec(
        protocols="UIDG", channels="rayleigh", snr_db="0", extra={"links.backhaul.channel.kind": ["none"]}
    )
    with ResultsStore.create_or_resume(tmp_path / "w.sqlite", wired, expand(wired)) as s:
        points = s.points_frame()
    assert points[["protocol", "channel", "snr_db"]].values.tolist() == [["UIDG", "rayleigh", 0.0]]
    mixed = RunConfig.from_paths({"channel": "awgn", "links.downlink.channel.kind": "rayleigh", "snr_db": 5})
    assert point_channel(mixed) == ("mixed", 5.0)
    per_link = RunConfig.from_paths({"channel": "awgn", "snr_db": 5, "links.uplink.snr_db": 0})
    assert point_channel(per_link) == ("awgn", None)
    assert point_channel(RunConfig.from_paths({"channel": "none"})) == ("none", None)


def test_grown_by_counts_what_a_grown_grid_adds(tmp_path: Path):
    """``megen reproduce --report-only`` reports a database its preset has grown past since it ran."""
    db = tmp_path / "r.sqlite"
    spec = _spec()
    with ResultsStore.create_or_resume(db, spec, expand(spec)):
        pass
    with ResultsStore.open(db) as s:
        assert s.grown_by(expand(spec)) == 0
        assert s.grown_by(expand(_spec(snr_db="0,5,10"))) == 2
        assert s.grown_by(expand(_spec(snr_db="0"))) is None  # a stored configuration missing
        assert s.grown_by(expand(_spec(samples=6))) == 4  # every stored configuration grows
        assert s.grown_by(expand(_spec(samples=2))) is None  # fewer samples
