"""Cells, series and labels of a sweep's rows.

* A **cell** is a point with its seed removed: the rows of every seed of the same configuration are
  pooled (:func:`add_keys` adds its key as the column ``cell``).
* A **series** is a cell with its channel and SNR removed: one line of a quality-vs-SNR figure. Its
  label names the protocol and the options that vary between that protocol's series.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from megen.config import LINKS
from megen.protocols.builders import BASELINES
from megen.protocols.builders import NO_LINK as NO_LINK  # re-exported beside BASELINES

#: Fields that do not make a new series (the x axis, the panel, and pooled seeds).
_NOT_SERIES = ("seed", "model", "channel", "snr_db", "ul_snr_db", "dl_snr_db", "bh_snr_db")
POINT_COLS = ("tags", "task", "protocol", "channel", "snr_db", "transmission")


def _cell_key(config_json: str, task: str, drop: Sequence[str]) -> str:
    cfg = {k: v for k, v in json.loads(config_json).items() if k not in drop}
    return hashlib.sha256(json.dumps([cfg, task], sort_keys=True).encode()).hexdigest()[:16]


def add_keys(df):
    """Add ``cell`` (config without seed) and ``series`` (also without channel/SNR) and ``label`` columns."""
    if df.empty:
        for c in ("cell", "series", "label"):
            df[c] = []
        return df
    df = df.copy()
    cfg_cols = [c for c in df.columns if c.startswith("cfg_")]
    records = df[cfg_cols].rename(columns=lambda c: c[4:]).to_dict("records")
    tasks = df["task"].tolist()
    df["cell"] = [
        _cell_key(json.dumps(r, default=str), t, ("seed",)) for r, t in zip(records, tasks, strict=True)
    ]
    # a link whose channel is the point's (the uplink of a point whose backhaul is wired) is not an
    # option of the series: only the link that differs (``backhaul.channel=none``) is
    options = df.copy()
    for link in LINKS:
        col = f"cfg_{link}.channel"
        if col in options and "channel" in options:
            options[col] = options[col].where(
                options[col].astype(object) != options["channel"].astype(object)
            )
    records = options[cfg_cols].rename(columns=lambda c: c[4:]).to_dict("records")
    df["series"] = [
        _cell_key(json.dumps(r, default=str), t, _NOT_SERIES) for r, t in zip(records, tasks, strict=True)
    ]
    options["series"] = df["series"]
    df["label"] = series_labels(options)
    return df


def error_free_series(df) -> list[str]:
    """Per row, the key of its series' **error-free run**: the series with every link ideal.

    A run on channel ``none`` has every link ideal, so series that differ only in one link's channel
    (``backhaul.channel=none``: a wired backhaul beside the radio one) share one error-free run: the
    key drops every link's channel (and, as :func:`add_keys`, the seed, channel and SNRs). Without
    configuration columns (``cfg_*``) each series is its own.
    """
    cfg_cols = [c for c in df.columns if c.startswith("cfg_")]
    if not cfg_cols or "task" not in df:
        return [str(s) for s in df["series"]]
    drop = (*_NOT_SERIES, *(f"{link}.channel" for link in LINKS))
    records = df[cfg_cols].rename(columns=lambda c: c[4:]).to_dict("records")
    return [
        _cell_key(json.dumps(r, default=str), t, drop)
        for r, t in zip(records, df["task"].tolist(), strict=True)
    ]


#: Short names of options in series labels.
_ALIASES = {
    "image_quality": "q",
    "sync_every": "sync",
    "seed_bits": "bits",
    "transmission": "",
    "snr_aware": "",
}


def series_labels(df) -> list[str]:
    """``protocol`` plus the options that vary among that protocol's series and differ from the default.

    The default configuration of a protocol is labelled by its name alone (``"CIAG"``), a variant by its
    differences (``"CIAG (no snr-aware)"``, ``"central (q=10, mcs=16qam-0.5)"``).
    """
    from megen.config import RunConfig

    defaults = RunConfig().flat()
    cfg_cols = [c for c in df.columns if c.startswith("cfg_") and c[4:] not in (*_NOT_SERIES, "protocol")]
    varying: dict[str, list[str]] = {}
    multi_task = df["task"].nunique() > 1
    for proto, sub in df.groupby("protocol", sort=False):
        series = sub.drop_duplicates("series")
        varying[str(proto)] = [c for c in cfg_cols if series[c].astype(str).nunique(dropna=False) > 1]
    labels = []
    for _, r in df.iterrows():
        parts = []
        for c in varying[str(r["protocol"])]:
            key, value = c[4:], r[c]
            if _same(value, defaults.get(key)):
                continue
            parts.append(_option(key, value))
        if multi_task:
            parts.insert(0, str(r["task"]))
        labels.append(f"{r['protocol']} ({', '.join(parts)})" if parts else str(r["protocol"]))
    return labels


def _same(a: Any, b: Any) -> bool:
    if is_missing(a) and is_missing(b):
        return True
    return not is_missing(a) and not is_missing(b) and str(_short(a)) == str(_short(b))


def is_missing(v: Any) -> bool:
    """None or NaN: a configuration value that was not set."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _option(key: str, value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if key == "snr_aware":
        return "snr-aware" if bool(value) else "no snr-aware"
    alias = _ALIASES.get(key, key)
    return f"{alias}={_short(value)}" if alias else _short(value)


def _short(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if is_missing(v):
        return "auto"
    return str(v)


# ---------------------------------------------------------------------------------------------- destinations
# BASELINES (imported from the protocols): the baselines matched to each destination, where the image
# lands; a protocol is compared only with the baselines of its own destination.
#: Every baseline protocol (never compared against a baseline itself).
BASELINE_PROTOCOLS: frozenset[str] = frozenset(p for ps in BASELINES.values() for p in ps)


def destination(delivered_to: str) -> str:
    """The destination class of a node name: ``"ES"`` for ``"ES1"``, ``"ES2"`` ..., else ``"UE"``.

    Example:
        >>> destination("ES2"), destination("UE")
        ('ES', 'UE')
    """
    return "ES" if str(delivered_to).upper().startswith("ES") else "UE"


@functools.cache
def known_delivered_to(protocol: str) -> str:
    """The node where ``protocol``'s image lands (its plan's result node), for rows stored without one.

    Protocols this code version cannot build (e.g. read from a newer database) land at ``"UE"``,
    except the ES baselines (:data:`BASELINES`), which land at ``"ES1"``.
    """
    from megen.config import RunConfig
    from megen.errors import MegenError
    from megen.protocols.builders import build_plan

    if protocol in BASELINES["ES"]:
        return "ES1"
    try:
        cfg = RunConfig.from_paths({"protocol.name": protocol})
        return str(build_plan(protocol, cfg, 0, protocol != "local").result_node)
    except MegenError:
        return "UE"


def with_outcome_columns(df):
    """Rows with ``outage`` (0/1) and ``delivered_to`` filled in where the database predates them.

    A database without an ``outage`` column had no outage (every image was shown): 0. A missing
    ``delivered_to`` is the protocol's known destination (:func:`known_delivered_to`). Adds
    ``destination`` (``"UE"`` or ``"ES"``, :func:`destination`).
    """
    import pandas as pd

    df = df.copy()
    if "outage" not in df.columns:
        df["outage"] = 0
    df["outage"] = pd.to_numeric(df["outage"], errors="coerce").fillna(0).astype(float)
    known = df["protocol"].astype(str).map(known_delivered_to) if len(df) else df["protocol"]
    if "delivered_to" not in df.columns:
        df["delivered_to"] = known
    else:
        df["delivered_to"] = df["delivered_to"].where(df["delivered_to"].notna(), known)
    df["destination"] = [destination(d) for d in df["delivered_to"]]
    return df
