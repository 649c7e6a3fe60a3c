"""The "Explore" tab of ``megen app``: a results database of ``megen sweep``/``reproduce``, read-only.

:func:`explore_options` lists what can be plotted (metrics, x axes, protocols), :func:`explore_series`
gives one line per series (cells pooled over seeds, :mod:`megen.analysis.cells`) with the mean of the
metric at each x value, and :func:`explore_images` the stored images of the points behind one marker.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

from megen.errors import MegenError

#: Point columns usable as the x axis besides the configuration columns that vary.
_X_POINT_COLUMNS = ("snr_db",)
#: Images returned for one marker at most.
MAX_IMAGES = 16


def _frame(db: Path | str):
    """The rows of ``db`` (no images) with ``cell``, ``series`` and ``label`` columns."""
    from megen.analysis.cells import add_keys
    from megen.store import ResultsStore

    with ResultsStore.open(db) as store:
        df = store.frame()
    if df.empty:
        raise MegenError(f"{db} holds no rows yet; run the sweep first")
    return add_keys(df)


def _x_columns(df) -> list[str]:
    """Numeric columns that vary across the rows (candidates for the x axis)."""
    import pandas as pd

    out = []
    for c in (*_X_POINT_COLUMNS, *sorted(c for c in df.columns if c.startswith("cfg_"))):
        if c in ("cfg_seed",) or c not in df:
            continue
        values = pd.to_numeric(df[c], errors="coerce")
        if values.notna().any() and df[c].astype(str).nunique() > 1 and not df[c].map(type).eq(bool).any():
            out.append(c)
    return out


def explore_options(db: Path | str) -> dict[str, Any]:
    """What the database offers: metrics and costs, x axes, protocols and row count.

    Raises:
        MegenError: a missing, corrupt or foreign file, or a database without rows.
    """
    from megen.store import COST_COLUMNS, METRIC_COLUMNS

    df = _frame(db)
    metrics = [m for m in METRIC_COLUMNS if df[m].notna().any()]
    return {
        "db": str(db),
        "rows": len(df),
        "metrics": metrics,
        "costs": list(COST_COLUMNS),
        "x_axes": _x_columns(df),
        "protocols": sorted(df["protocol"].astype(str).unique()),
        "channels": sorted(df["channel"].astype(str).unique()),
    }


def explore_series(
    db: Path | str, metric: str, x: str, protocols: list[str] | None = None, channel: str | None = None
) -> dict[str, Any]:
    """One line per series: the metric's mean (and 95% CI half width) at each value of ``x``.

    Args:
        db: The results database.
        metric: A metric or cost column (``psnr_fidelity_db``, ``uses_total`` ...).
        x: The x axis: ``snr_db`` or a varying ``cfg_*`` column.
        protocols: Protocols to keep (``None``: all).
        channel: Channel to keep (``None``: all; the series label then names the channel).

    Returns:
        ``{"metric", "x", "series": [{"label", "protocol", "points": [{"x", "y", "ci95", "n",
        "config_hashes"}]}]}``, points sorted by ``x``; rows without an ``x`` value (channel ``none``
        has no SNR) are left out.

    Raises:
        MegenError: an unknown metric or axis.
    """
    import pandas as pd

    from megen.metrics import mean_ci95
    from megen.store import COST_COLUMNS, METRIC_COLUMNS

    if metric not in (*METRIC_COLUMNS, *COST_COLUMNS):
        raise MegenError(
            f"unknown metric {metric!r}; choose one of {', '.join((*METRIC_COLUMNS, *COST_COLUMNS))}"
        )
    df = _frame(db)
    axes = _x_columns(df)
    if x not in axes:
        raise MegenError(f"unknown x axis {x!r}; this database varies {', '.join(axes) or 'nothing numeric'}")
    if protocols:
        df = df[df["protocol"].astype(str).isin(protocols)]
    if channel:
        df = df[df["channel"].astype(str) == channel]
    df = df.assign(_x=pd.to_numeric(df[x], errors="coerce"), _y=pd.to_numeric(df[metric], errors="coerce"))
    df = df[df["_x"].notna()]
    label = df["label"] if channel else df["label"] + " / " + df["channel"].astype(str)
    series = []
    for name, sub in df.assign(_label=label).groupby("_label", sort=True):
        points = []
        for xv, at in sub.groupby("_x", sort=True):
            mean, half, n = mean_ci95(at["_y"].to_numpy(dtype=float, copy=True))
            points.append(
                {
                    "x": float(xv),
                    "y": None if math.isnan(mean) else mean,
                    "ci95": None if math.isnan(half) else half,
                    "n": n,
                    "config_hashes": sorted(at["config_hash"].unique()),
                }
            )
        series.append({"label": str(name), "protocol": str(sub["protocol"].iloc[0]), "points": points})
    return {"metric": metric, "x": x, "series": series}


def explore_images(db: Path | str, config_hashes: list[str]) -> list[dict[str, Any]]:
    """The stored images (PNG data URLs) of the points ``config_hashes``, at most :data:`MAX_IMAGES`.

    Raises:
        MegenError: a missing or corrupt database.
    """
    from megen.store import ResultsStore

    out: list[dict[str, Any]] = []
    with ResultsStore.open(db) as store:
        for h in config_hashes[:MAX_IMAGES]:
            rows = store.conn.execute(
                "SELECT sample, prompt, image_png FROM rows WHERE config_hash = ? ORDER BY sample LIMIT ?",
                (str(h), MAX_IMAGES),
            ).fetchall()
            for sample, prompt, png in rows:
                if len(out) >= MAX_IMAGES:
                    return out
                out.append(
                    {
                        "config_hash": h,
                        "sample": int(sample),
                        "prompt": str(prompt),
                        "png": "data:image/png;base64," + base64.b64encode(bytes(png)).decode(),
                    }
                )
    return out
