"""Exporting a results database: every row as CSV/Parquet, without overwriting any input."""

from __future__ import annotations

from pathlib import Path

from megen.errors import MegenError
from megen.files import atomic_output, folder_of, refuse_overwriting, regular_file_or_new, writable_folder
from megen.store.results import ResultsStore


def check_outputs(store: ResultsStore, outputs: list[Path | None], *, need_rows: bool = False) -> None:
    """Every precondition of an export, checked before anything is written.

    Raises:
        MegenError: an output that is the database (also via a symlink or another spelling), two
            outputs that are one file, an output that is a folder or a device, an unwritable folder,
            or (with ``need_rows``, for summaries and reports) a database without rows.
    """
    refuse_overwriting(outputs, [store.path])
    for out in outputs:
        if out is not None:
            regular_file_or_new(out, "output")
            writable_folder(folder_of(out))
    if need_rows and store.count() == 0:
        raise MegenError(f"{store.path} holds no rows yet; run the sweep first")


def export(store: ResultsStore, *, csv: Path | None = None, parquet: Path | None = None) -> int:
    """Write every row (without the image blobs) to CSV and/or Parquet; returns the row count.

    Each file is written to a temporary name and moved into place, so a failure never leaves half a
    file or clobbers an existing one; all checks (:func:`check_outputs`) run first.
    """
    if csv is None and parquet is None:
        raise MegenError("nothing to export: give --csv FILE and/or --parquet FILE")
    check_outputs(store, [csv, parquet])
    return write_frame(store.frame(), csv=csv, parquet=parquet)


def write_frame(df, *, csv: Path | None = None, parquet: Path | None = None) -> int:
    """Write a data frame to CSV and/or Parquet (each atomically); returns its number of rows."""
    if csv is not None:
        with atomic_output(csv) as tmp:
            df.to_csv(tmp, index=False)
    if parquet is not None:
        with atomic_output(parquet) as tmp:
            df.to_parquet(tmp, index=False)
    return len(df)
