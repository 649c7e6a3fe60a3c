"""Comparisons of aggregated cells: SNR thresholds, equal quality against a baseline, paired differences."""

from __future__ import annotations

import math

import numpy as np

from megen.link.theory import capacity_channel_uses
from megen.metrics import mean_ci95


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
