"""Aggregation of a sweep's rows: means with 95% CIs, classifier FID, comparisons and bounds.

* A **cell** is a point with its seed removed: the rows of every seed of the same configuration are
  pooled. :func:`aggregate` gives one line per cell with ``<metric>_mean``, ``<metric>_ci95`` (half
  width of the normal 95% interval, :func:`megen.metrics.mean_ci95`) and ``<metric>_n`` for every
  per-image metric, the mean of every cost column, and optionally the classifier-feature FID against
  the Fashion-MNIST test set (10 000 images) with its sample count ``fid_n``. FID is refused (NaN, with
  the reason in ``fid_note``) below 100 samples and flagged as biased upwards below 1000.
* A **series** is a cell with its channel and SNR removed: one line of a quality-vs-SNR figure. Its
  label names the protocol and the options that vary between that protocol's series.
* :func:`capacity_channel_uses` is the physical limit of any digital scheme: ``bits / C`` channel uses
  with ``C = log2(1 + SNR)`` (AWGN) or the ergodic capacity ``E[log2(1 + |h|^2 SNR)]`` (fading, CSI at
  the receiver).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from megen.errors import MegenError
from megen.experiments.store import COST_COLUMNS, METRIC_COLUMNS, ResultsStore
from megen.metrics import FID_MIN_SAMPLES, FID_WARN_SAMPLES, mean_ci95, optional_metrics_status
from megen.units import db_to_linear

#: Fields that do not make a new series (the x axis, the panel, and pooled seeds).
_NOT_SERIES = ("seed", "model", "channel", "snr_db", "ul_snr_db", "dl_snr_db", "bh_snr_db")
_POINT_COLS = ("tags", "task", "protocol", "channel", "snr_db", "transmission")


def _cell_key(config_json: str, task: str, drop: Sequence[str]) -> str:
    cfg = {k: v for k, v in json.loads(config_json).items() if k not in drop}
    return hashlib.sha256(json.dumps([cfg, task], sort_keys=True).encode()).hexdigest()[:16]


def add_keys(df):
    """Add ``cell`` (config without seed) and ``series`` (also without channel/SNR) and ``label`` columns."""
    if df.empty:
        for c in ("cell", "series", "label"):
            df[c] = []
        return df
    cfg_cols = [c for c in df.columns if c.startswith("cfg_")]
    records = df[cfg_cols].rename(columns=lambda c: c[4:]).to_dict("records")
    tasks = df["task"].tolist()
    df = df.copy()
    df["cell"] = [
        _cell_key(json.dumps(r, default=str), t, ("seed",)) for r, t in zip(records, tasks, strict=True)
    ]
    df["series"] = [
        _cell_key(json.dumps(r, default=str), t, _NOT_SERIES) for r, t in zip(records, tasks, strict=True)
    ]
    df["label"] = series_labels(df)
    return df


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
        varying[str(proto)] = [c for c in cfg_cols if series[c].astype(str).nunique() > 1]
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
    if _missing(a) and _missing(b):
        return True
    return not _missing(a) and not _missing(b) and str(_short(a)) == str(_short(b))


def _missing(v: Any) -> bool:
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
    if _missing(v):
        return "auto"
    return str(v)


# ---------------------------------------------------------------------------------------------- FID
class FidScorer:
    """Classifier-feature FID against a fixed reference set, whose features are computed once.

    Same statistic as :func:`megen.metrics.classifier_fid` (torchmetrics FID on the evaluation
    classifier's features), but the reference statistics are kept across calls.

    Args:
        classifier: The evaluation classifier (with ``features``).
        reference: Reference images ``[N, C, H, W]`` in ``[0, 1]`` (the Fashion-MNIST test set).
    """

    def __init__(self, classifier: torch.nn.Module, reference: torch.Tensor, *, batch: int = 500) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        from megen.metrics import ClassifierFeatures

        self.batch = batch
        self.fid = FrechetInceptionDistance(
            feature=ClassifierFeatures(classifier), normalize=True, reset_real_features=False
        )
        with torch.no_grad():
            for i in range(0, len(reference), batch):
                self.fid.update(reference[i : i + batch], real=True)
        self.reference_n = int(len(reference))

    def __call__(self, generated: torch.Tensor) -> float:
        """FID of ``generated`` ``[N, C, H, W]`` against the reference.

        Raises:
            MegenError: fewer than 100 samples.
        """
        n = int(generated.shape[0])
        if n < FID_MIN_SAMPLES:
            raise MegenError(f"FID needs at least {FID_MIN_SAMPLES} samples, got {n}")
        self.fid.reset()
        with torch.no_grad():
            for i in range(0, n, self.batch):
                self.fid.update(generated[i : i + self.batch], real=False)
            return float(self.fid.compute())


def make_fid_scorer(model_name: str) -> tuple[FidScorer | None, str]:
    """A scorer for a sweep's model, or ``None`` and the reason (no classifier, no dataset)."""
    from megen.data import dataset_available, load_fashion_mnist
    from megen.experiments.sweep import load_sweep_model

    if not dataset_available():
        return (
            None,
            "FID skipped: the Fashion-MNIST test set is not installed (apt-get install dataset-fashion-mnist)",
        )
    model = load_sweep_model(model_name)
    if getattr(model, "classifier", None) is None:
        return None, f"FID skipped: model {model_name!r} has no evaluation classifier"
    images, _ = load_fashion_mnist("test")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        return (
            None,
            f"FID skipped: the classifier expects {model.image_shape}, the test set is {tuple(images.shape[1:])}",
        )
    return FidScorer(
        model.classifier, images
    ), "FID on the evaluation classifier's features vs the Fashion-MNIST test set"


# ---------------------------------------------------------------------------------------------- aggregate
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
    lines = []
    for cell, sub in df.groupby("cell", sort=False):
        first = sub.iloc[0]
        line: dict[str, Any] = {"cell": cell, "series": first["series"], "label": first["label"]}
        for c in (*_POINT_COLS, *[c for c in df.columns if c.startswith("cfg_") and c != "cfg_seed"]):
            line[c] = first[c]
        line["config_hashes"] = ",".join(sorted(sub["config_hash"].unique()))
        line["seeds"] = int(sub["seed"].nunique())
        line["rows"] = len(sub)
        for m in METRIC_COLUMNS:
            mean, half, n = mean_ci95(pd.to_numeric(sub[m], errors="coerce").to_numpy(dtype=float, copy=True))
            line[f"{m}_mean"], line[f"{m}_ci95"], line[f"{m}_n"] = mean, half, n
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


# ---------------------------------------------------------------------------------------------- bounds
def ergodic_capacity(snr_db: float, channel: str, *, k_factor_db: float = 3.0) -> float:
    """Capacity in bit per complex channel use: AWGN ``log2(1+snr)``; fading: ``E[log2(1+|h|^2 snr)]``.

    Rayleigh uses the closed form ``exp(1/snr) E1(1/snr) / ln 2``; Rician a fixed-seed Monte-Carlo
    average over 2^18 draws (unit mean power, K-factor ``k_factor_db``).

    Example:
        >>> round(ergodic_capacity(0.0, "awgn"), 6)
        1.0
    """
    snr = db_to_linear(snr_db)
    if channel in ("awgn", "none"):
        return math.log2(1.0 + snr)
    if channel == "rayleigh":
        from scipy.special import exp1

        return float(math.exp(1.0 / snr) * exp1(1.0 / snr) / math.log(2.0))
    if channel == "rician":
        k = db_to_linear(k_factor_db)
        rng = np.random.default_rng(0)
        n = 1 << 18
        los = math.sqrt(k / (k + 1))
        scat = math.sqrt(1 / (2 * (k + 1)))
        h = los + scat * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
        return float(np.mean(np.log2(1.0 + np.abs(h) ** 2 * snr)))
    raise MegenError(f"no capacity for channel {channel!r}")


def capacity_channel_uses(bits: float, snr_db: float, channel: str = "awgn") -> float:
    """Fewest channel uses any digital scheme needs for ``bits`` at ``snr_db``: ``bits / C``."""
    return bits / ergodic_capacity(snr_db, channel)


# ---------------------------------------------------------------------------------------------- comparisons
def threshold_snr(agg, *, metric: str = "prompt_match", fraction: float = 0.9, min_snrs: int = 3):
    """Per series and channel: the SNR below which ``metric`` falls under ``fraction`` of its error-free value.

    The error-free value is the same series' cell with channel ``none`` when the sweep has one, else its
    value at the highest SNR swept (the column ``reference_from`` says which). The crossing is
    interpolated linearly in dB between the two swept SNRs around it; ``crossing`` is ``"below all"``
    when even the highest SNR is under the threshold and ``"above all"`` when the lowest is not. Series
    swept over fewer than ``min_snrs`` SNRs on a channel are left out.
    """
    import pandas as pd

    col = f"{metric}_mean"
    out = []
    for _series, sub in agg.groupby("series", sort=False):
        free = sub[sub["channel"] == "none"]
        for ch, cs in sub[sub["channel"] != "none"].groupby("channel", sort=False):
            if cs["snr_db"].nunique() < min_snrs:
                continue
            cs = cs.sort_values("snr_db")
            snrs = cs["snr_db"].to_numpy(float)
            vals = cs[col].to_numpy(float)
            if not free.empty and np.isfinite(free[col].iloc[0]):
                ref, src = float(free[col].iloc[0]), "channel none"
            else:
                ref, src = float(vals[-1]), f"{snrs[-1]:g} dB"
            thr = fraction * ref
            below = vals < thr
            crossing: float | str
            if not below.any():
                crossing = "above all"
            elif below[-1]:
                crossing = "below all"
            else:
                j = int(np.nonzero(below)[0].max())  # last swept SNR that is below, j + 1 is above
                x0, x1, y0, y1 = snrs[j], snrs[j + 1], vals[j], vals[j + 1]
                crossing = float(x0 + (thr - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
            out.append(
                {
                    "label": sub["label"].iloc[0],
                    "protocol": sub["protocol"].iloc[0],
                    "channel": ch,
                    "error_free": ref,
                    "reference_from": src,
                    "threshold": thr,
                    "snr_db_below": crossing,
                }
            )
    return pd.DataFrame(out)


def equal_quality(agg, *, metric: str = "psnr_fidelity_db", baseline: str = "central"):
    """MEG cells against the baseline at equal quality and at equal bandwidth (same task, channel, SNR).

    Columns: the MEG cell's ``uses_total`` and metric; ``baseline_uses_equal_quality``: the fewest channel
    uses of any baseline variant (codec quality, MCS) whose mean metric is at least the MEG cell's (NaN
    when none reaches it); ``baseline_quality_equal_uses``: the best metric of any baseline variant that
    spends at most the MEG cell's channel uses (NaN when none fits); ``capacity_uses``: the capacity bound
    for the bits of that equal-quality baseline variant; ``baseline_failures_equal_quality``: its failed
    code blocks per image (where it fails, "equal quality" compares two broken images).
    """
    import pandas as pd

    col = f"{metric}_mean"
    base = agg[agg["protocol"] == baseline]
    rows = []
    for _, r in agg[~agg["protocol"].isin([baseline, "local"])].iterrows():
        same = base[(base["task"] == r["task"]) & (base["channel"] == r["channel"])]
        same = (
            same[np.isclose(same["snr_db"].astype(float), float(r["snr_db"]))]
            if r["channel"] != "none"
            else same
        )
        good = same[same[col] >= r[col]]
        fits = same[same["uses_total"] <= r["uses_total"]]
        eq = good.sort_values("uses_total").iloc[0] if not good.empty else None
        cap = math.nan
        if eq is not None and r["channel"] != "none":
            cap = capacity_channel_uses(float(eq["bits_total"]), float(r["snr_db"]), str(r["channel"]))
        rows.append(
            {
                "label": r["label"],
                "protocol": r["protocol"],
                "task": r["task"],
                "channel": r["channel"],
                "snr_db": r["snr_db"],
                metric: r[col],
                "uses_total": r["uses_total"],
                "baseline_label": None if eq is None else eq["label"],
                "baseline_uses_equal_quality": math.nan if eq is None else float(eq["uses_total"]),
                "baseline_bits_equal_quality": math.nan if eq is None else float(eq["bits_total"]),
                "baseline_failures_equal_quality": math.nan if eq is None else float(eq["link_failures"]),
                "capacity_uses": cap,
                "baseline_quality_equal_uses": float(fits[col].max()) if not fits.empty else math.nan,
            }
        )
    return pd.DataFrame(rows)


def paired_difference(rows, cell_a: str, cell_b: str, metric: str) -> dict[str, float]:
    """Compare two cells on the samples both have (same seed and sample index = same noise and prompt).

    Args:
        rows: Row frame with ``cell`` keys (:func:`add_keys`).
        cell_a, cell_b: The two cells.
        metric: A per-image metric column.

    Returns:
        ``n`` (common samples), ``mean_a``, ``mean_b``, and ``diff`` with ``diff_ci95``: the mean of the
        per-image differences ``a - b`` and the half width of its 95% interval (paired, so much tighter
        than comparing the two means).
    """
    import pandas as pd

    keys = ["seed", "sample"]
    a = rows.loc[rows["cell"] == cell_a, [*keys, metric]]
    b = rows.loc[rows["cell"] == cell_b, [*keys, metric]]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    va = pd.to_numeric(m[f"{metric}_a"], errors="coerce").to_numpy(dtype=float, copy=True)
    vb = pd.to_numeric(m[f"{metric}_b"], errors="coerce").to_numpy(dtype=float, copy=True)
    diff, half, n = mean_ci95(va - vb)
    return {"n": n, "mean_a": mean_ci95(va)[0], "mean_b": mean_ci95(vb)[0], "diff": diff, "diff_ci95": half}
