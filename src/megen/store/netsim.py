"""System-level (``megen netsim``) results in the SQLite results database, beside a sweep's rows.

One table, ``netsim_results``: one row per (run, figure, protocol, x), where ``run`` is a digest of
the netsim configuration, ``figure`` names what was swept (``table``: the configuration itself;
``latency_vs_load`` with ``x`` the offered load in requests/s; ``capacity_vs_bandwidth`` with ``x`` in
MHz; ``capacity_vs_es`` with ``x`` edge servers; ``capacity_vs_batch`` with ``x`` the largest ES
batch), and the measures are those of :class:`megen.netsim.system.PointStats` plus the service
capacity, the stability bound and the bottleneck (NULL where not computed). Writing the same key
again replaces the row, so a re-run updates in place.

The table lives in any megen results file: a sweep's ``results.sqlite`` (the sweep store ignores
it) or a file holding netsim results only. A file that is not SQLite is refused and left untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from megen.errors import MegenError

NETSIM_TABLE = "netsim_results"
KEY_COLUMNS = ("run", "figure", "protocol", "x")
MEASURE_COLUMNS = (
    "latency_mean_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "deadline_share",
    "es_utilisation",
    "es_mean_batch",
    "uplink_utilisation",
    "downlink_utilisation",
    "ue_energy_j",
    "quality_psnr_db",
    "failed_share",
    "stable",
    "backlog_growth_per_s",
    "service_capacity",
    "stability_bound",
    "bottleneck",
)
NETSIM_COLUMNS = (*KEY_COLUMNS, *MEASURE_COLUMNS, "config_json")
FIGURES = ("table", "latency_vs_load", "capacity_vs_bandwidth", "capacity_vs_es", "capacity_vs_batch")
NETSIM_DDL = (
    f"CREATE TABLE IF NOT EXISTS {NETSIM_TABLE} (run TEXT NOT NULL, figure TEXT NOT NULL, "
    "protocol TEXT NOT NULL, x REAL NOT NULL, "
    + ", ".join(f"{c} {'TEXT' if c == 'bottleneck' else 'REAL'}" for c in MEASURE_COLUMNS)
    + ", config_json TEXT NOT NULL, PRIMARY KEY (run, figure, protocol, x))"
)


def run_digest(config: Mapping[str, Any]) -> str:
    """16 hex digits naming a netsim configuration (its JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _connect(path: Path) -> sqlite3.Connection:
    from megen.store.results import _check_sqlite_file

    _check_sqlite_file(path)
    try:
        return sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise MegenError(f"cannot open results database {path}: {exc}") from None


def _value(v: Any) -> Any:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_netsim(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert (or replace) netsim result rows in one transaction; returns how many.

    Args:
        path: The SQLite file (created when missing).
        rows: Mappings with ``run``, ``figure``, ``protocol``, ``x``, ``config_json`` and any of
            :data:`MEASURE_COLUMNS` (missing ones are NULL; non-finite numbers become NULL).

    Raises:
        MegenError: a file that is not SQLite, an unknown figure or column, a missing key.
    """
    records = []
    for r in rows:
        unknown = set(r) - set(NETSIM_COLUMNS)
        if unknown:
            raise MegenError(f"netsim result has unknown columns {sorted(unknown)}")
        if r.get("figure") not in FIGURES:
            raise MegenError(
                f"netsim result figure must be one of {', '.join(FIGURES)}, got {r.get('figure')!r}"
            )
        missing = [c for c in (*KEY_COLUMNS, "config_json") if r.get(c) is None]
        if missing:
            raise MegenError(f"netsim result lacks {', '.join(missing)}")
        records.append(tuple(_value(r.get(c)) for c in NETSIM_COLUMNS))
    p = Path(path)
    conn = _connect(p)
    try:
        with conn:
            conn.execute(NETSIM_DDL)
            marks = ", ".join("?" for _ in NETSIM_COLUMNS)
            conn.executemany(f"INSERT OR REPLACE INTO {NETSIM_TABLE} VALUES ({marks})", records)
    except sqlite3.Error as exc:
        raise MegenError(f"cannot write netsim results to {p}: {exc}") from None
    finally:
        conn.close()
    return len(records)


def read_netsim(path: Path | str, run: str | None = None):  # type: ignore[no-untyped-def]
    """The netsim rows of ``path`` (of one ``run`` if given) as a pandas DataFrame, in key order.

    Raises:
        MegenError: a missing file, a file that is not SQLite, or one without netsim results.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise MegenError(f"results database {p} does not exist")
    conn = _connect(p)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if NETSIM_TABLE not in tables:
            raise MegenError(f"{p} holds no netsim results (no {NETSIM_TABLE} table)")
        where, params = ("WHERE run = ?", (run,)) if run is not None else ("", ())
        sql = f"SELECT * FROM {NETSIM_TABLE} {where} ORDER BY run, figure, protocol, x"
        return pd.read_sql_query(sql, conn, params=params)
    except sqlite3.Error as exc:
        raise MegenError(f"cannot read netsim results from {p}: {exc}") from None
    finally:
        conn.close()


def export_netsim(path: Path | str, *, csv: Path | None = None, parquet: Path | None = None) -> int:
    """Write the netsim rows of ``path`` to CSV and/or Parquet (atomically); returns the row count."""
    from megen.files import refuse_overwriting
    from megen.store.export import write_frame

    if csv is None and parquet is None:
        raise MegenError("nothing to export: give a CSV and/or a Parquet file")
    refuse_overwriting([csv, parquet], [Path(path)])
    return write_frame(read_netsim(path), csv=csv, parquet=parquet)


__all__ = [
    "FIGURES",
    "MEASURE_COLUMNS",
    "NETSIM_COLUMNS",
    "NETSIM_TABLE",
    "export_netsim",
    "read_netsim",
    "run_digest",
    "write_netsim",
]
