"""The results database of a sweep: one SQLite file, one row per finished image.

* The primary key ``(config_hash, sample)`` makes a row unique: a resumed sweep can never duplicate
  one. Rows are written one batch per transaction, so a killed sweep leaves whole batches only.
* A file that is not SQLite, a SQLite file of another program, a database of another sweep (another
  set of configurations, sample counts or tags: specifications that differ only in wording, such as
  the name or a scalar written as a one-element list, are the same sweep), one written with other
  model weights, or one whose cells are garbled (a configuration that is not JSON, an image that is not
  a PNG) is refused and never modified.
* A new database is created in one transaction (schema, meta and points together) after every check
  passed, so a sweep refused at its start leaves nothing behind.
* The writer holds an exclusive lock on ``<real path of the db>.lock`` (released when the process ends,
  even by SIGKILL), so two sweeps never write one database, even through a symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from megen.config import LINKS, RunConfig
from megen.errors import MegenError
from megen.experiments.spec import Point, SweepSpec
from megen.files import folder_of, regular_file_or_new, writable_folder
from megen.images import PNG_MAGIC, decode_png
from megen.models.fingerprint import SEED_WEIGHT_CODECS, model_fingerprint, seed_codec_fingerprint
from megen.store.netsim import NETSIM_TABLE
from megen.store.schema import (
    DDL,
    INSERT_POINT,
    INSERT_ROW,
    ROW_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SQLITE_MAX_INT,
    Row,
    point_values,
    points_digest,
)

SQLITE_MAGIC = b"SQLite format 3\x00"


# ---------------------------------------------------------------------------------------------- checks
def _check_sqlite_file(path: Path) -> None:
    regular_file_or_new(path, "results database")
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
    tables = _tables(conn) - {NETSIM_TABLE}  # netsim results may share the file (megen.store.netsim)
    if not tables:
        return {}
    if "meta" not in tables:
        raise MegenError(
            f"{path} is a SQLite database of another program (no megen meta table); left untouched"
        )
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("schema") != SCHEMA:
        raise MegenError(f"{path} is a SQLite database of another program (schema {meta.get('schema')!r})")
    if str(meta.get("schema_version", "-1")) != str(SCHEMA_VERSION):
        raise MegenError(
            f"{path} has results schema version {meta.get('schema_version')}, this megen reads "
            f"{SCHEMA_VERSION}; re-run the sweep into a new file"
        )
    missing = {"points", "rows"} - tables
    if missing:
        raise MegenError(f"{path} is an incomplete megen results database (missing tables {sorted(missing)})")
    _check_cells(conn, path, meta)
    return meta


def _check_cells(conn: sqlite3.Connection, path: Path, meta: dict[str, str]) -> None:
    """Refuse garbled cells that ``quick_check`` passes: JSON that is not JSON, images that are not PNG."""
    checks = (
        ("SELECT COUNT(*) FROM points WHERE NOT json_valid(config_json)", (), "configurations are not JSON"),
        ("SELECT COUNT(*) FROM rows WHERE NOT json_valid(costs_json)", (), "cost records are not JSON"),
        (
            "SELECT COUNT(*) FROM rows WHERE typeof(image_png) != 'blob' OR substr(image_png, 1, 8) != ?",
            (PNG_MAGIC,),
            "images are not PNG",
        ),
    )
    try:
        bad = [(int(conn.execute(sql, args).fetchone()[0]), what) for sql, args, what in checks]
    except sqlite3.DatabaseError as exc:
        raise MegenError(f"{path} is a corrupt megen results database ({exc}); left untouched") from exc
    for n, what in bad:
        if n:
            raise MegenError(f"{path} is corrupt: {n} stored {what}; left untouched")
    try:
        json.loads(meta.get("spec_json", ""))
    except ValueError as exc:
        raise MegenError(f"{path} is corrupt: its stored sweep specification is not JSON") from exc


@dataclass(frozen=True)
class _Difference:
    """How a sweep's points differ from a database's.

    Attributes:
        only_db: Stored configurations the sweep lacks.
        only_new: Configurations the sweep adds.
        grown: Stored configurations the sweep keeps with more tags or more samples (a grid added over
            them): key -> (samples, tags) to store.
        other: Stored configurations with fewer samples or a tag dropped.
    """

    only_db: int
    only_new: int
    grown: dict[str, tuple[int, str]]
    other: int

    @property
    def changed(self) -> int:
        """Configurations the sweep adds or grows."""
        return self.only_new + len(self.grown)

    @property
    def extends(self) -> bool:
        """The sweep continues the stored one: nothing dropped or shrunk (it may add or grow)."""
        return not self.only_db and not self.other


_SAME = _Difference(0, 0, {}, 0)


def _difference(conn: sqlite3.Connection, points: Sequence[Point]) -> _Difference:
    """How a sweep's points differ from a database's (see :class:`_Difference`)."""
    stored = {k: (n, t) for k, n, t in conn.execute("SELECT config_hash, samples, tags FROM points")}
    wanted = {p.key: (p.samples, ",".join(p.tags)) for p in points}
    grown, other = {}, 0
    for k in set(stored) & set(wanted):
        (n0, t0), (n1, t1) = stored[k], wanted[k]
        if (n0, t0) == (n1, t1):
            continue
        if n0 <= n1 and set(t0.split(",")) <= set(t1.split(",")):
            grown[k] = wanted[k]
        else:
            other += 1
    return _Difference(len(set(stored) - set(wanted)), len(set(wanted) - set(stored)), grown, other)


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


def _check_point_values(points: Sequence[Point]) -> list[tuple[Any, ...]]:
    """The points' table values, refusing integers SQLite cannot store (seeds >= 2^63)."""
    values = [point_values(p) for p in points]
    for v in values:
        for x in v:
            if isinstance(x, int) and not -SQLITE_MAX_INT - 1 <= x <= SQLITE_MAX_INT:
                raise MegenError(f"value {x} does not fit the results database (at most 2^63 - 1)")
    return values


# ---------------------------------------------------------------------------------------------- store
class ResultsStore:
    """A sweep's results database. Open with :meth:`create_or_resume` (writer) or :meth:`open` (reader).

    The writer holds an exclusive lock file (``<real db path>.lock``, released when the process ends,
    even by SIGKILL) so two sweeps never write the same database.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str], lock: Any = None) -> None:
        self.path = path
        self.conn = conn
        self.meta = meta
        self._lock = lock
        self.created = False
        #: Configurations this writer added to a stored sweep whose grid it extends (0: none).
        self.extended_by = 0

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
            MegenError: a path that is not a regular file, an unwritable folder, a corrupt or foreign
                file, a database of another sweep or of other model weights, or another sweep writing
                it right now. Nothing is modified then.
        """
        path = Path(path)
        _check_sqlite_file(path)
        writable_folder(folder_of(path))
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise MegenError(f"results database {path} is not writable")
        values = _check_point_values(points)
        fingerprints = weights_fingerprints(spec.model, points)
        lock = _acquire_lock(path)
        existed = path.exists() and path.stat().st_size > 0
        try:
            conn = _connect(path, readonly=False)
        except MegenError:
            lock.close()
            raise
        try:
            meta = _read_meta(conn, path)
            fresh = not meta
            diff, meta_changed = _SAME, False
            if not fresh:
                diff = _check_same_sweep(conn, path, meta, spec, points, fingerprints)
            added = diff.changed
            if fresh:
                meta = _new_meta(spec, fingerprints, points_digest(points))
            else:  # the stored meta, with a grown specification and the current fingerprints' form
                grown = _new_meta(spec, fingerprints, points_digest(points))
                keys = [*fingerprints, *(("spec_json", "spec_digest", "points_digest") if added else ())]
                refreshed = {**meta, **{k: grown[k] for k in keys}}
                meta_changed, meta = refreshed != meta, refreshed
            with conn:  # one transaction: schema, meta and points, or nothing
                conn.execute("BEGIN IMMEDIATE")
                for ddl in DDL:
                    conn.execute(ddl)
                if fresh or added or meta_changed:
                    conn.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())
                    )
                conn.executemany(INSERT_POINT, values)
                # a grid added over stored configurations gives them more tags or samples; rows stay
                conn.executemany(
                    "UPDATE points SET samples = ?, tags = ? WHERE config_hash = ?",
                    [(n, tags, key) for key, (n, tags) in diff.grown.items()],
                )
        except (MegenError, sqlite3.Error, OSError) as exc:
            conn.close()
            lock.close()
            if not existed:
                with contextlib.suppress(OSError):
                    path.unlink()
            if isinstance(exc, MegenError):
                raise
            raise MegenError(f"cannot write results database {path}: {_reason(exc)}") from exc
        store = cls(path, conn, meta, lock)
        store.created = not existed
        store.extended_by = added
        return store

    def close(self) -> None:
        """Close the connection and release the writer's lock."""
        self.conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def discard(self) -> None:
        """Close, and delete the database if this writer created it and no row was written.

        A sweep that fails before its first row (a model that does not load) leaves nothing behind, so
        the corrected command starts afresh instead of meeting "another sweep".
        """
        try:
            remove = self.created and self._lock is not None and self.count() == 0
        except sqlite3.Error:
            remove = False
        self.conn.close()
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
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
        """Rows stored."""
        return int(self.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def insert_rows(self, rows: Iterable[Row | Mapping[str, Any]]) -> int:
        """Write one batch of rows in one transaction; rows already present are kept as they are.

        Args:
            rows: :class:`Row` objects, or mappings with exactly the row columns as keys.

        Returns:
            The number of rows actually inserted.

        Raises:
            RowSchemaError: a mapping with a missing or unknown column.
            MegenError: the disk is full or the file cannot be written (the batch is rolled back).
        """
        values = [(r if isinstance(r, Row) else Row.from_mapping(r)).values() for r in rows]
        before = self.conn.total_changes
        try:
            with self.conn:  # one transaction: all rows of the batch or none
                self.conn.executemany(INSERT_ROW, values)
        except sqlite3.OperationalError as exc:
            raise MegenError(f"cannot write results database {self.path}: {_reason(exc)}") from exc
        return self.conn.total_changes - before

    def count_points_with_rows(self) -> int:
        """Configurations with at least one stored row."""
        return int(self.conn.execute("SELECT COUNT(DISTINCT config_hash) FROM rows").fetchone()[0])

    def grown_by(self, points: Sequence[Point]) -> int | None:
        """How many configurations ``points`` add to the stored sweep or grow (more samples or tags; 0:
        the same sweep), or ``None`` when they do not extend it (a stored configuration missing, or
        with fewer samples or a tag dropped)."""
        diff = _difference(self.conn, points)
        return diff.changed if diff.extends else None

    def points_frame(self):
        """The ``points`` table as a pandas DataFrame (one column per RunConfig field added)."""
        import pandas as pd

        df = pd.read_sql_query("SELECT * FROM points", self.conn)
        return _expand_config(df, self.path)

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
        return _expand_config(df, self.path)

    def images(self, config_hash: str, samples: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """Decoded images of one point: ``{sample: [C, H, W]}``.

        Raises:
            MegenError: a stored image that does not decode (a corrupt database).
        """
        sql = "SELECT sample, image_png FROM rows WHERE config_hash = ?"
        args: list[Any] = [config_hash]
        if samples is not None:
            sql += f" AND sample IN ({', '.join('?' * len(samples))})"
            args.extend(int(s) for s in samples)
        out = {}
        for s, blob in self.conn.execute(sql, args):
            try:
                out[int(s)] = decode_png(blob)
            except MegenError as exc:
                raise MegenError(f"{self.path} is corrupt: image of sample {s} ({exc})") from exc
        return out

    def image_tensor(self, config_hash: str) -> torch.Tensor:
        """All images of one point, ``[N, C, H, W]`` in sample order."""
        imgs = self.images(config_hash)
        if not imgs:
            return torch.empty(0)
        return torch.stack([imgs[k] for k in sorted(imgs)])


def weights_fingerprints(model: str, points: Sequence[Point]) -> dict[str, str]:
    """The fingerprints of the weights a sweep's rows depend on (meta keys to values).

    ``model_fingerprint``: the generative model's weights; ``seed_codec_fingerprint``: the seed-codec
    weights, only when a point sends a seed with a codec that reads them (``linear``, ``learned``,
    ``digital``), so retraining the seed codec leaves other sweeps resumable.
    """
    out = {"model_fingerprint": model_fingerprint(model, seed_codec=False)}
    if any(p.config.links.of(link).codec.seed in SEED_WEIGHT_CODECS for p in points for link in LINKS):
        out["seed_codec_fingerprint"] = seed_codec_fingerprint(model)
    return out


def _check_same_sweep(
    conn: sqlite3.Connection,
    path: Path,
    meta: dict[str, str],
    spec: SweepSpec,
    points: Sequence[Point],
    fingerprints: dict[str, str],
) -> _Difference:
    """Check that ``points`` continue the sweep stored in ``path``.

    Returns:
        What the sweep adds or grows (nothing: the same sweep). A sweep whose grid extends the stored
        one (every stored configuration still in it, with at least its samples and tags) continues it,
        so adding SNRs, a protocol or a grid over stored points to a finished sweep computes only what
        is new; a grown configuration keeps its rows.
    """
    stored = meta.get("model_fingerprint")
    # a database of an earlier megen keyed its rows by every weight file, seed codec included
    legacy = stored == model_fingerprint(spec.model) and "seed_codec_fingerprint" not in meta
    if stored != fingerprints["model_fingerprint"] and not legacy:
        raise MegenError(
            f"{path} was written with other weights of model {spec.model!r}; "
            "its rows cannot be continued (use another --db)"
        )
    seed = meta.get("seed_codec_fingerprint")
    if seed is not None and seed != fingerprints.get("seed_codec_fingerprint", seed):
        raise MegenError(
            f"{path} was written with other seed-codec weights of model {spec.model!r}; "
            "its rows cannot be continued (use another --db)"
        )
    if meta.get("points_digest") == points_digest(points):
        return _SAME
    diff = _difference(conn, points)
    if not diff.extends or not diff.changed:
        raise MegenError(
            f"{path} holds the results of another sweep ({diff.only_db} configuration(s) only in the "
            f"database, {diff.only_new} only in this sweep, {diff.other} with fewer samples or a tag "
            "dropped); use another --db to run this one"
        )
    return diff


def _new_meta(spec: SweepSpec, fingerprints: dict[str, str], digest: str) -> dict[str, str]:
    from megen import __version__

    return {
        "schema": SCHEMA,
        "schema_version": str(SCHEMA_VERSION),
        "spec_json": spec.to_json(),
        "spec_digest": spec.digest(),
        "points_digest": digest,
        **fingerprints,
        "megen_version": str(__version__),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _expand_config(df, path: Path):
    if df.empty or "config_json" not in df:
        return df
    import pandas as pd

    try:
        records = [RunConfig.model_validate_json(s).flat() for s in df["config_json"]]
        cfgs = pd.DataFrame(records).add_prefix("cfg_")
    except (TypeError, ValueError):
        raise MegenError(
            f"{path} is corrupt: a stored configuration is not a valid run configuration"
        ) from None
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
    """Lock ``<real path>.lock``: every name of one database (symlinks, ``./``) takes the same lock."""
    real = Path(os.path.realpath(path))
    lock_path = real.with_name(real.name + ".lock")
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
