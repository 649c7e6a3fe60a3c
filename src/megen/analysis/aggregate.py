"""Aggregation of a sweep's rows: one line per cell with means, 95% CIs, mean costs, FID and CLIP score.

:func:`aggregate` gives one line per cell (:mod:`megen.analysis.cells`) with ``<metric>_mean``,
``<metric>_ci95`` (half width of the normal 95% interval, :func:`megen.metrics.mean_ci95`) and
``<metric>_n`` for every per-image metric (fidelity is averaged over the delivered images: an outage
image has no fidelity), the outage probability ``outage_mean`` with its 95% Wilson interval
``outage_lo``/``outage_hi`` over ``outage_n`` images, where the image lands (``delivered_to``,
``destination``), the mean of every cost column, and optionally the
classifier-feature FID against the Fashion-MNIST test set (10 000 images) with its sample count
``fid_n``. FID is refused (NaN, with the reason in ``fid_note``) below 100 samples and flagged as
biased upwards below 1000.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from megen.analysis.cells import POINT_COLS, add_keys, with_outcome_columns
from megen.analysis.fid import make_fid_scorer
from megen.errors import MegenError
from megen.metrics import FID_MIN_SAMPLES, FID_WARN_SAMPLES, mean_ci95, optional_metrics_status
from megen.store import COST_COLUMNS, METRIC_COLUMNS, ResultsStore


def aggregate(store: ResultsStore, *, fid: bool = True, log: Callable[[str], None] | None = None):
    """One line per cell: means, 95% CIs and counts of every metric, mean costs, FID.

    Args:
        store: An open results database.
        fid: Compute the classifier FID per cell (needs the model's classifier and the test set).
        log: Receives one-line notes (FID skipped or biased, optional metrics skipped).

    Returns:
        A pandas DataFrame sorted by protocol, channel and SNR.
    """
    import pandas as pd

    say = log or (lambda _m: None)
    df = add_keys(store.frame())
    if df.empty:
        raise MegenError(f"{store.path} holds no rows yet; run the sweep first")
    df = with_outcome_columns(df)
    lines = []
    for cell, sub in df.groupby("cell", sort=False):
        first = sub.iloc[0]
        line: dict[str, Any] = {"cell": cell, "series": first["series"], "label": first["label"]}
        for c in (*POINT_COLS, *[c for c in df.columns if c.startswith("cfg_") and c != "cfg_seed"]):
            line[c] = first[c]
        line["config_hashes"] = ",".join(sorted(sub["config_hash"].unique()))
        line["seeds"] = int(sub["seed"].nunique())
        line["rows"] = len(sub)
        for m in METRIC_COLUMNS:
            mean, half, n = mean_ci95(pd.to_numeric(sub[m], errors="coerce").to_numpy(dtype=float, copy=True))
            line[f"{m}_mean"], line[f"{m}_ci95"], line[f"{m}_n"] = mean, half, n
        line.update(outage_line(sub))
        for c in COST_COLUMNS:
            line[c] = float(pd.to_numeric(sub[c], errors="coerce").mean())
        line["wall_s"] = float(sub["wall_s"].mean())
        lines.append(line)
    agg = pd.DataFrame(lines)
    agg["fid"] = math.nan
    agg["fid_n"] = 0
    agg["fid_note"] = ""
    if fid:
        _add_fid(store, agg, say)
    _add_clip(store, agg, df, say)
    for name, status in optional_metrics_status().items():
        if status != "available":
            say(f"optional metric {name}: {status}")
    return agg.sort_values(["protocol", "label", "channel", "snr_db"], na_position="first").reset_index(
        drop=True
    )


def wilson_ci95(k: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval ``(low, high)`` of a proportion ``k / n`` (NaNs for ``n == 0``).

    Unlike the normal interval it is not empty at ``k = 0`` or ``k = n``: 0 outages in 25 images
    still allows up to 13%.

    Example:
        >>> [round(x, 3) for x in wilson_ci95(0, 25)]
        [0.0, 0.133]
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    return (lo, 1.0 if k >= n else min(1.0, centre + half))


def outage_line(sub) -> dict[str, Any]:
    """Outage probability of one cell's rows and where its images land.

    Args:
        sub: The cell's rows, with ``outage`` (0/1), ``delivered_to`` and ``destination``
            (:func:`megen.analysis.cells.with_outcome_columns`).

    Returns:
        ``outage_mean`` (fraction of images in outage), ``outage_lo``/``outage_hi`` (95% Wilson
        interval), ``outage_n`` (images), ``delivered_to`` (the most frequent node) and ``destination``.
    """
    import pandas as pd

    out = pd.to_numeric(sub["outage"], errors="coerce").dropna().to_numpy(dtype=float)
    n, k = len(out), float(out.sum())
    lo, hi = wilson_ci95(k, n)
    return {
        "outage_mean": k / n if n else math.nan,
        "outage_lo": lo,
        "outage_hi": hi,
        "outage_n": n,
        "delivered_to": str(sub["delivered_to"].mode().iloc[0]),
        "destination": str(sub["destination"].mode().iloc[0]),
    }


def _add_clip(store: ResultsStore, agg, rows, say: Callable[[str], None]) -> None:
    """CLIP score (mean, 95% CI, n) per cell from the stored images and the rows' prompts, when CLIP loads."""
    from megen.clip_score import load_clip_scorer

    for col, value in (("clip_score_mean", math.nan), ("clip_score_ci95", math.nan), ("clip_score_n", 0)):
        agg[col] = value
    scorer, note = load_clip_scorer()
    if scorer is None:
        return
    say(note)
    prompts = rows[["config_hash", "sample", "prompt"]]
    by_key = {(h, int(s)): p for h, s, p in prompts.itertuples(index=False)}
    for i, line in agg.iterrows():
        images, texts = [], []
        for h in line["config_hashes"].split(","):
            for sample, img in store.images(h).items():
                images.append(img)
                texts.append(by_key[(h, int(sample))])
        if not images:
            continue
        mean, half, n = mean_ci95(scorer(torch.stack(images), texts))
        agg.at[i, "clip_score_mean"], agg.at[i, "clip_score_ci95"], agg.at[i, "clip_score_n"] = mean, half, n


def _add_fid(store: ResultsStore, agg, say: Callable[[str], None]) -> None:
    agg["fid_n"] = agg["rows"]
    if int(agg["rows"].max()) < FID_MIN_SAMPLES:
        agg["fid_note"] = f"refused: < {FID_MIN_SAMPLES} samples"
        say(f"FID refused: every configuration has fewer than {FID_MIN_SAMPLES} samples")
        return
    scorer, note = make_fid_scorer(store.spec.model)
    if scorer is None:
        say(note)
        agg["fid_note"] = note
        return
    small, biased = 0, 0
    for i, line in agg.iterrows():
        imgs = [store.image_tensor(h) for h in line["config_hashes"].split(",")]
        images = torch.cat([x for x in imgs if x.numel()])
        n = int(images.shape[0])
        agg.at[i, "fid_n"] = n
        if n < FID_MIN_SAMPLES:
            small += 1
            agg.at[i, "fid_note"] = f"refused: {n} < {FID_MIN_SAMPLES} samples"
            continue
        agg.at[i, "fid"] = scorer(images)
        if n < FID_WARN_SAMPLES:
            biased += 1
            agg.at[i, "fid_note"] = f"biased upwards: {n} < {FID_WARN_SAMPLES} samples"
    if small:
        say(f"FID refused for {small} configuration(s) with fewer than {FID_MIN_SAMPLES} samples")
    if biased:
        say(f"FID on fewer than {FID_WARN_SAMPLES} samples for {biased} configuration(s): biased upwards")
