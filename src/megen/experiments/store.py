"""The results database of a sweep: one SQLite file, one row per finished image.

Schema (``SCHEMA_VERSION`` 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)
        schema = "megen-sweep", schema_version, spec_json (the SweepSpec that created it, canonical JSON),
        spec_digest, points_digest (what the sweep computes: see points_digest), model_fingerprint,
        megen_version, created_utc
    points(config_hash TEXT PRIMARY KEY, tags TEXT (comma list), task TEXT, protocol TEXT, channel TEXT,
           snr_db REAL (NULL for channel none), transmission TEXT, seed INTEGER,
           samples INTEGER (rows expected), config_json TEXT (the RunConfig))
    rows(config_hash TEXT REFERENCES points, sample INTEGER, batch INTEGER, run_seed INTEGER,
         ref_index INTEGER, prompt TEXT, prompt_class INTEGER,
         <METRIC_COLUMNS> REAL, <COST_COLUMNS> REAL, link_failures REAL,
         costs_json TEXT, wall_s REAL, image_png BLOB,
         PRIMARY KEY (config_hash, sample))

* The primary key ``(config_hash, sample)`` makes a row unique: a resumed sweep can never duplicate
  one. Rows are written one batch per transaction, so a killed sweep leaves whole batches only.
* Costs are **per image**: the batch's totals (channel uses, bits, FLOPs, seconds, joules, failed code
  blocks) divided by the batch size. Every cost in this model is linear in the batch size (FLOPs scale
  with the batch, airtime with the channel uses), so this is each image's own share.
* ``image_png`` is the final image as an 8-bit lossless PNG (32x32 grey: ~0.5-1 kB). FID and the
  image grids read it back; FID therefore sees images quantised to 8 bits, like any image file.
* ``wall_s`` is the measured compute time per image (varies from run to run; not a result).
* A file that is not SQLite, a SQLite file of another program, a database of another sweep (another
  set of configurations, sample counts or tags: specifications that differ only in wording, such as
  the name or a scalar written as a one-element list, are the same sweep), or one written with other
  model weights is refused and never modified.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import math
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from megen.config import RunConfig
from megen.errors import MegenError
from megen.experiments.spec import RANDOM_MODEL, Point, SweepSpec

SCHEMA = "megen-sweep"
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

#: Per-image quality metrics (NULL where they do not apply, e.g. reference metrics for text-to-image).
METRIC_COLUMNS: tuple[str, ...] = (
    "psnr_fidelity_db",
    "ssim_fidelity",
    "ms_ssim_fidelity",
    "psnr_reference_db",
    "ssim_reference",
    "prompt_match",
)
LINKS = ("uplink", "downlink", "backhaul")
#: Per-image costs (batch totals / batch size). Units in the names; ``busy_*_s`` is the time a node or
#: link is busy (the critical path ``latency_s`` overlaps parallel work).
COST_COLUMNS: tuple[str, ...] = (
    *(f"uses_{k}" for k in (*LINKS, "total")),
    *(f"bits_{k}" for k in (*LINKS, "total")),
    "flops_ue",
    "flops_es",
    "flops_total",
    "latency_s",
    "energy_j",
    "busy_ue_s",
    "busy_es_s",
    *(f"busy_{k}_s" for k in LINKS),
    "energy_ue_j",
    "energy_es_j",
    *(f"energy_{k}_j" for k in LINKS),
    "link_failures",
)
ROW_COLUMNS: tuple[str, ...] = (
    "config_hash",
    "sample",
    "batch",
    "run_seed",
    "ref_index",
    "prompt",
    "prompt_class",
    *METRIC_COLUMNS,
    *COST_COLUMNS,
    "costs_json",
    "wall_s",
    "image_png",
)
POINT_COLUMNS = (
    "config_hash",
    "tags",
    "task",
    "protocol",
    "channel",
    "snr_db",
    "transmission",
    "seed",
    "samples",
    "config_json",
)

_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS points (config_hash TEXT PRIMARY KEY, tags TEXT NOT NULL, task TEXT NOT NULL, "
    "protocol TEXT NOT NULL, channel TEXT NOT NULL, snr_db REAL, transmission TEXT NOT NULL, "
    "seed INTEGER NOT NULL, samples INTEGER NOT NULL, config_json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rows (config_hash TEXT NOT NULL REFERENCES points(config_hash), "
    "sample INTEGER NOT NULL, batch INTEGER NOT NULL, run_seed INTEGER NOT NULL, ref_index INTEGER, "
    "prompt TEXT NOT NULL, prompt_class INTEGER, "
    + ", ".join(f"{c} REAL" for c in (*METRIC_COLUMNS, *COST_COLUMNS))
    + ", costs_json TEXT NOT NULL, wall_s REAL, image_png BLOB NOT NULL, PRIMARY KEY (config_hash, sample))",
)


# ---------------------------------------------------------------------------------------------- images
def encode_png(image: torch.Tensor) -> bytes:
    """``[C, H, W]`` float in ``[0, 1]`` -> lossless 8-bit PNG bytes (grey for C = 1, RGB for C = 3)."""
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    pil = Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def decode_png(blob: bytes) -> torch.Tensor:
    """PNG bytes -> ``[C, H, W]`` float32 in ``[0, 1]``."""
    with Image.open(io.BytesIO(blob)) as im:
        arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


# ---------------------------------------------------------------------------------------------- model id
def model_fingerprint(model: str) -> str:
    """A short hash that changes when the model's weights change.

    ``tiny`` and tiny folders: SHA-256 of every weight file's bytes; ``tiny-random``: a constant;
    other checkpoints: names, sizes and modification times of their files (cheap for gigabytes).
    """
    if model == RANDOM_MODEL:
        return "tiny-random:seed0"
    from megen.models.tiny import is_tiny_folder, packaged_weights_dir

    folder = packaged_weights_dir() if model == "tiny" else Path(model).expanduser()
    h = hashlib.sha256()
    if folder.is_dir():
        deep = is_tiny_folder(folder)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = f.relative_to(folder).as_posix()
            if "__pycache__" in rel:
                continue
            st = f.stat()
            h.update(f"{rel}:{st.st_size}".encode())
            if deep:
                h.update(f.read_bytes())
            else:
                h.update(str(st.st_mtime_ns).encode())
    else:
        h.update(f"hub:{model}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- checks
def _check_sqlite_file(path: Path) -> None:
    if path.is_dir():
        raise MegenError(f"{path} is a folder, not a results database")
    if path.exists() and path.stat().st_size > 0:
        try:
            with path.open("rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise MegenError(f"cannot read results database {path}: {exc.strerror}") from exc
        if head != SQLITE_MAGIC:
            raise MegenError(f"{path} is not a SQLite database (corrupt or foreign file); left untouched")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    tables = _tables(conn)
    if not tables:
        return {}
    if "meta" not in tables:
        raise MegenError(
            f"{path} is a SQLite database of another program (no megen meta table); left untouched"
        )
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("schema") != SCHEMA:
        raise MegenError(f"{path} is a SQLite database of another program (schema {meta.get('schema')!r})")
    if int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
        raise MegenError(
            f"{path} has results schema version {meta.get('schema_version')}, this megen reads {SCHEMA_VERSION}"
        )
    missing = {"points", "rows"} - tables
    if missing:
        raise MegenError(f"{path} is an incomplete megen results database (missing tables {sorted(missing)})")
    return meta


def points_digest(points: Sequence[Point]) -> str:
    """Hash of what a sweep computes: every point's config key, sample count and tags (order-free)."""
    items = sorted(f"{p.key}:{p.samples}:{','.join(sorted(p.tags))}" for p in points)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def _difference(conn: sqlite3.Connection, points: Sequence[Point]) -> str:
    stored = {k: (n, t) for k, n, t in conn.execute("SELECT config_hash, samples, tags FROM points")}
    wanted = {p.key: (p.samples, ",".join(p.tags)) for p in points}
    only_db = len(set(stored) - set(wanted))
    only_new = len(set(wanted) - set(stored))
    other = sum(1 for k in set(stored) & set(wanted) if stored[k] != wanted[k])
    return (
        f"{only_db} configuration(s) only in the database, {only_new} only in this sweep, "
        f"{other} with other sample counts or tags"
    )


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=30.0)
        else:
            conn = sqlite3.connect(str(path), timeout=30.0)
        conn.execute("PRAGMA foreign_keys = ON")
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise MegenError(f"{path} is not a readable SQLite database ({exc}); left untouched") from exc
    if ok != "ok":
        conn.close()
        raise MegenError(f"{path} is a corrupt SQLite database ({ok}); left untouched")
    return conn


# ---------------------------------------------------------------------------------------------- store
class ResultsStore:
    """A sweep's results database. Open with :meth:`create_or_resume` (writer) or :meth:`open` (reader).

    The writer holds an exclusive lock file (``<db>.lock``, released when the process ends, even by
    SIGKILL) so two sweeps never write the same database.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str], lock: Any = None) -> None:
        self.path = path
        self.conn = conn
        self.meta = meta
        self._lock = lock

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path | str) -> ResultsStore:
        """Open an existing results database read-only.

        Raises:
            MegenError: a missing, corrupt or foreign file.
        """
        path = Path(path)
        if not path.exists():
            raise MegenError(f"results database not found: {path}")
        _check_sqlite_file(path)
        conn = _connect(path, readonly=True)
        try:
            meta = _read_meta(conn, path)
        except MegenError:
            conn.close()
            raise
        if not meta:
            conn.close()
            raise MegenError(f"{path} is an empty SQLite database, not megen results")
        return cls(path, conn, meta)

    @classmethod
    def create_or_resume(cls, path: Path | str, spec: SweepSpec, points: Sequence[Point]) -> ResultsStore:
        """Open ``path`` for writing the sweep ``spec``: create it, or resume the same sweep.

        Raises:
            MegenError: an unwritable folder, a corrupt or foreign file, a database of another sweep or
                of other model weights, or another sweep writing it right now. Nothing is modified then.
        """
        path = Path(path)
        _check_sqlite_file(path)
        writable_folder(path.parent if str(path.parent) else Path("."))
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise MegenError(f"results database {path} is not writable")
        lock = _acquire_lock(path)
        existed = path.exists() and path.stat().st_size > 0
        try:
            conn = _connect(path, readonly=False)
        except MegenError:
            lock.close()
            raise
        try:
            meta = _read_meta(conn, path)
            fingerprint = model_fingerprint(spec.model)
            if meta:
                if meta.get("points_digest") != points_digest(points):
                    raise MegenError(
                        f"{path} holds the results of another sweep ({_difference(conn, points)}); "
                        "use another --db to run this one"
                    )
                if meta.get("model_fingerprint") != fingerprint:
                    raise MegenError(
                        f"{path} was written with other weights of model {spec.model!r}; "
                        "its rows cannot be continued (use another --db)"
                    )
            else:
                meta = _init_schema(conn, spec, fingerprint, points_digest(points))
            with conn:
                conn.executemany(
                    f"INSERT OR IGNORE INTO points ({', '.join(POINT_COLUMNS)}) VALUES ({', '.join('?' * len(POINT_COLUMNS))})",
                    [_point_row(p) for p in points],
                )
        except MegenError:
            conn.close()
            lock.close()
            if not existed and path.exists() and path.stat().st_size == 0:
                path.unlink()
            raise
        return cls(path, conn, meta, lock)

    def close(self) -> None:
        """Close the connection and release the writer's lock."""
        self.conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ contents
    @property
    def spec(self) -> SweepSpec:
        """The sweep specification stored in the database."""
        return SweepSpec.model_validate_json(self.meta["spec_json"])

    def done_samples(self) -> dict[str, set[int]]:
        """Finished sample indices per config hash."""
        out: dict[str, set[int]] = {}
        for key, sample in self.conn.execute("SELECT config_hash, sample FROM rows"):
            out.setdefault(key, set()).add(int(sample))
        return out

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def insert_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Write one batch of rows in one transaction; rows already present are kept as they are.

        Returns:
            The number of rows actually inserted.
        """
        values = [tuple(_sql_value(r.get(c)) for c in ROW_COLUMNS) for r in rows]
        sql = f"INSERT OR IGNORE INTO rows ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
        before = self.conn.total_changes
        with self.conn:  # one transaction: all rows of the batch or none
            self.conn.executemany(sql, values)
        return self.conn.total_changes - before

    def points_frame(self):
        """The ``points`` table as a pandas DataFrame (one column per RunConfig field added)."""
        import pandas as pd

        df = pd.read_sql_query("SELECT * FROM points", self.conn)
        return _expand_config(df)

    def frame(self, *, images: bool = False, where: str = "", params: Sequence[Any] = ()):
        """All rows joined with their point, as a pandas DataFrame.

        Columns: the row columns, the point's ``tags task protocol channel snr_db transmission seed``, and
        one column per RunConfig field (``image_quality``, ``mcs``, ``sync_every`` ...) prefixed ``cfg_``.
        ``image_png`` only with ``images=True``.
        """
        import pandas as pd

        cols = [c for c in ROW_COLUMNS if c != "config_hash" and (images or c != "image_png")]
        sql = (
            "SELECT p.config_hash, p.tags, p.task, p.protocol, p.channel, p.snr_db, p.transmission, p.seed, "
            "p.config_json, "
            + ", ".join(f"r.{c}" for c in cols)
            + " FROM rows r JOIN points p USING (config_hash)"
        )
        if where:
            sql += f" WHERE {where}"
        sql += " ORDER BY p.rowid, r.sample"
        df = pd.read_sql_query(sql, self.conn, params=list(params))
        return _expand_config(df)

    def images(self, config_hash: str, samples: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """Decoded images of one point: ``{sample: [C, H, W]}``."""
        sql = "SELECT sample, image_png FROM rows WHERE config_hash = ?"
        args: list[Any] = [config_hash]
        if samples is not None:
            sql += f" AND sample IN ({', '.join('?' * len(samples))})"
            args.extend(int(s) for s in samples)
        return {int(s): decode_png(b) for s, b in self.conn.execute(sql, args)}

    def image_tensor(self, config_hash: str) -> torch.Tensor:
        """All images of one point, ``[N, C, H, W]`` in sample order."""
        imgs = self.images(config_hash)
        if not imgs:
            return torch.empty(0)
        return torch.stack([imgs[k] for k in sorted(imgs)])


def _init_schema(conn: sqlite3.Connection, spec: SweepSpec, fingerprint: str, digest: str) -> dict[str, str]:
    from megen import __version__

    meta = {
        "schema": SCHEMA,
        "schema_version": str(SCHEMA_VERSION),
        "spec_json": spec.to_json(),
        "spec_digest": spec.digest(),
        "points_digest": digest,
        "model_fingerprint": fingerprint,
        "megen_version": str(__version__),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with conn:
        for ddl in _DDL:
            conn.execute(ddl)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
    return meta


def _point_row(p: Point) -> tuple[Any, ...]:
    c = p.config.flat()
    return (
        p.key,
        ",".join(p.tags),
        p.task,
        c["protocol"],
        c["channel"],
        None if c["channel"] == "none" else c["snr_db"],
        c["transmission"],
        c["seed"],
        p.samples,
        p.config.model_dump_json(),
    )


def _sql_value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _expand_config(df):
    if df.empty or "config_json" not in df:
        return df
    import pandas as pd

    cfgs = pd.DataFrame([RunConfig.model_validate_json(s).flat() for s in df["config_json"]]).add_prefix(
        "cfg_"
    )
    cfgs.index = df.index
    return pd.concat([df.drop(columns=["config_json"]), cfgs], axis=1)


class _Lock:
    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def close(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _acquire_lock(path: Path) -> _Lock:
    lock_path = path.with_name(path.name + ".lock")
    try:
        fh = lock_path.open("a+")
    except OSError as exc:
        raise MegenError(f"cannot create the lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise MegenError(f"another megen sweep is writing {path} right now (lock {lock_path})") from exc
    return _Lock(fh)


def writable_folder(folder: Path | str) -> Path:
    """Create ``folder`` if needed and check that files can be written into it.

    Raises:
        MegenError: it exists as something other than a folder, cannot be created, or is not writable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MegenError(f"output folder {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MegenError(f"cannot create the output folder {folder}: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MegenError(f"output folder {folder} is not writable")
    return folder


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds.

    Raises:
        MegenError: the folder does not exist or is not writable (checked before anything is written).
    """
    path = Path(path)
    if path.is_dir():
        raise MegenError(f"{path} is a folder; give a file name")
    writable_folder(path.parent if str(path.parent) else Path("."))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export(store: ResultsStore, *, csv: Path | None = None, parquet: Path | None = None) -> int:
    """Write every row (without the image blobs) to CSV and/or Parquet; returns the row count.

    Each file is written to a temporary name and moved into place, so a failure never leaves half a
    file or clobbers an existing one.
    """
    if csv is None and parquet is None:
        raise MegenError("nothing to export: give --csv FILE and/or --parquet FILE")
    df = store.frame()
    if csv is not None:
        with atomic_output(csv) as tmp:
            df.to_csv(tmp, index=False)
    if parquet is not None:
        with atomic_output(parquet) as tmp:
            df.to_parquet(tmp, index=False)
    return len(df)
