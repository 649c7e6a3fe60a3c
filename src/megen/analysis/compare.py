"""Comparisons of aggregated cells: bracketed SNR thresholds, matched baselines, paired differences.

Every comparison is against the baselines of the protocol's destination (where its image lands,
:data:`megen.analysis.cells.BASELINES`): an image at the ES is never compared with a baseline that
also pays the downlink to the UE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from megen.analysis.cells import BASELINE_PROTOCOLS, BASELINES, NO_LINK, error_free_series, is_missing
from megen.link.theory import capacity_channel_uses
from megen.metrics import mean_ci95

#: Widest gap (dB) between two swept SNRs across which a threshold is still located (issue 10, item 6).
MAX_BRACKET_DB = 1.0
#: Link-system options a baseline must share with the protocol it is compared with: the receiver
#: (a genie-receiver baseline is not a real system's), HARQ and the channel model's parameters.
SAME_SYSTEM = ("csi", "noise", "equalizer", "harq", "max_transmissions", "coherence_symbols", "k_factor_db")


@dataclass(frozen=True)
class Bracket:
    """Where a quantity crosses its threshold on a swept SNR grid: two swept SNRs, never a number between.

    Attributes:
        low_db: Highest swept SNR (dB) where it is still on the bad side (None: good at every SNR swept).
        high_db: The next swept SNR (dB), on the good side from there up (None: bad at the highest SNR).
        text: ``"between -4 and -3 dB"`` (gap <= 1 dB), ``"between -5 and 0 dB (grid too coarse)"``,
            ``"above all"`` (good at every SNR swept, cliff below ``min``) or ``"below all"``.
    """

    low_db: float | None
    high_db: float | None
    text: str

    @property
    def gap_db(self) -> float:
        """Width of the bracket in dB (NaN when open on one side)."""
        if self.low_db is None or self.high_db is None:
            return math.nan
        return self.high_db - self.low_db

    @property
    def located(self) -> bool:
        """Whether the bracket is at most :data:`MAX_BRACKET_DB` wide."""
        return self.gap_db <= MAX_BRACKET_DB + 1e-9


def bracket(snrs_db, bad) -> Bracket:
    """The bracket of the last crossing from bad to good along increasing SNR.

    Args:
        snrs_db: Swept SNRs in dB, increasing, shape ``[n]``.
        bad: Whether the quantity is on the bad side at each SNR, shape ``[n]``.

    Example:
        >>> bracket([-5, -4, -3, 0], [True, True, False, False]).text
        'between -4 and -3 dB'
        >>> bracket([-5, 0, 5], [True, False, False]).text
        'between -5 and 0 dB (grid too coarse)'
    """
    x = np.asarray(snrs_db, dtype=float)
    b = np.asarray(bad, dtype=bool)
    if not b.any():
        return Bracket(None, float(x[0]), "above all")
    if b[-1]:
        return Bracket(float(x[-1]), None, "below all")
    j = int(np.nonzero(b)[0].max())  # last swept SNR on the bad side; j + 1 is good
    lo, hi = float(x[j]), float(x[j + 1])
    text = f"between {lo:g} and {hi:g} dB"
    if hi - lo > MAX_BRACKET_DB + 1e-9:
        text += " (grid too coarse)"
    return Bracket(lo, hi, text)


def threshold_snr(
    agg,
    *,
    metric: str = "prompt_match",
    fraction: float = 0.9,
    min_snrs: int = 3,
    max_outage: float = 0.1,
):
    """Per series and channel: where ``metric`` falls under ``fraction`` of its error-free value, bracketed.

    The error-free value is the series' cell with channel ``none`` (every link ideal) when the sweep has
    one, else the one its series shares with series that differ only in a link's channel (a wired
    backhaul's series shares the radio series' run, :func:`~megen.analysis.cells.error_free_series`),
    else its value at the highest SNR swept; ``reference_from`` says which. The crossing is never interpolated:
    ``snr_db_below`` is the bracket's text (:func:`bracket`): two swept SNRs at most 1 dB apart, or
    the two SNRs with "(grid too coarse)", or ``"above all"`` / ``"below all"``; ``bracket_low_db``,
    ``bracket_high_db`` and ``bracket_gap_db`` hold the numbers. Where the cells carry ``outage_mean``
    the outage cliff (outage probability above ``max_outage``) is bracketed the same way
    (``outage_below``). Series swept over fewer than ``min_snrs`` SNRs on a channel are left out.
    """
    import pandas as pd

    col = f"{metric}_mean"
    out = []
    free_key = pd.Series(error_free_series(agg), index=agg.index)
    free_cells = agg[agg["channel"] == "none"]
    for _series, sub in agg.groupby("series", sort=False):
        free = sub[sub["channel"] == "none"]
        shared = free.empty
        if shared:
            free = free_cells[free_key[free_cells.index] == free_key[sub.index[0]]]
        for ch, cs in sub[sub["channel"] != "none"].groupby("channel", sort=False):
            if cs["snr_db"].nunique() < min_snrs:
                continue
            cs = cs.sort_values("snr_db")
            snrs = cs["snr_db"].to_numpy(float)
            vals = cs[col].to_numpy(float)
            if not free.empty and np.isfinite(free[col].iloc[0]):
                ref, src = float(free[col].iloc[0]), "channel none"
                if shared:
                    src += f" ({free['label'].iloc[0]})"
            else:
                ref, src = float(vals[-1]), f"{snrs[-1]:g} dB"
            thr = fraction * ref
            b = bracket(snrs, ~(vals >= thr))  # NaN (no image delivered) counts as below
            line = {
                "label": sub["label"].iloc[0],
                "protocol": sub["protocol"].iloc[0],
                "destination": sub["destination"].iloc[0] if "destination" in sub else "UE",
                "channel": ch,
                "error_free": ref,
                "reference_from": src,
                "threshold": thr,
                "snr_db_below": b.text,
                "bracket_low_db": b.low_db,
                "bracket_high_db": b.high_db,
                "bracket_gap_db": b.gap_db,
                "outage_below": "",
            }
            if "outage_mean" in cs:
                outage = np.nan_to_num(cs["outage_mean"].to_numpy(float), nan=0.0)
                line["outage_below"] = bracket(snrs, outage > max_outage).text
            out.append(line)
    return pd.DataFrame(out)


def _destination_of(r) -> str:
    return str(r["destination"]) if "destination" in r and isinstance(r["destination"], str) else "UE"


def _at_point(cells, r):
    """The cells at ``r``'s task, channel and SNR."""
    same = cells[(cells["task"] == r["task"]) & (cells["channel"] == r["channel"])]
    if r["channel"] == "none":
        return same
    return same[np.isclose(same["snr_db"].astype(float), float(r["snr_db"]))]


def _ue_alone(cells, r):
    """The baselines that cross no link (:data:`NO_LINK`) at ``r``'s task: they hold at any channel and SNR."""
    return cells[cells["protocol"].isin(NO_LINK) & (cells["task"] == r["task"])]


def _same_system(cells, r):
    """The cells whose link system (:data:`SAME_SYSTEM`: receiver, HARQ, channel parameters) equals ``r``'s."""
    keep = np.ones(len(cells), dtype=bool)
    for name in SAME_SYSTEM:
        col = f"cfg_{name}"
        if col in cells and col in r:
            mine, values = r[col], cells[col]
            same = (values.astype(str) == str(mine)).to_numpy()
            keep &= (same | values.isna().to_numpy()) if is_missing(mine) else same
    return cells[keep]


def _outage(row) -> float:
    v = row.get("outage_mean", 0.0) if hasattr(row, "get") else 0.0
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _digital_point(agg, r, col: str) -> dict[str, Any]:
    """The same protocol with a quantised (digital) seed at ``r``'s point: its best-fidelity variant."""
    none = {"digital_label": None, "digital_uses": math.nan, "digital_quality": math.nan}
    if "transmission" not in agg or r.get("transmission") == "digital":
        return none
    same = _at_point(agg[(agg["protocol"] == r["protocol"]) & (agg["transmission"] == "digital")], r)
    same = same[same[col].notna()]
    if same.empty:
        return none
    d = same.sort_values([col, "uses_total"], ascending=[False, True]).iloc[0]
    return {
        "digital_label": d["label"],
        "digital_uses": float(d["uses_total"]),
        "digital_quality": float(d[col]),
    }


def equal_quality(agg, *, metric: str = "psnr_fidelity_db"):
    """Each protocol against the baselines of its destination, at equal quality and at equal channel uses.

    A protocol whose image lands at the UE is compared with ``central``, ``central-fallback`` and the
    UE alone (``local``, ``local-i2i``: no link, so at every channel and SNR, with 0 channel uses), one
    whose image lands at an ES with ``central-es``, ``local-upload`` and ``local-i2i-upload``
    (:data:`BASELINES`), at the same task, channel and SNR and the same link system (:data:`SAME_SYSTEM`: a genie-receiver
    baseline is compared only with a genie-receiver protocol), over every variant swept (codec,
    quality, MCS). A baseline variant
    qualifies for "equal quality" when its mean metric (over delivered images) is at least the
    protocol's AND its outage probability is at most the protocol's (dropping more images is not equal
    quality).

    Columns: ``destination``, ``baselines`` (the matched baseline protocols, comma list), the cell's
    ``uses_total``, metric and ``outage``; ``baseline_label``/``baseline_uses_equal_quality``/
    ``baseline_bits_equal_quality``/``baseline_outage_equal_quality``/``baseline_failures_equal_quality``
    of the cheapest qualifying variant (NaN/None when none qualifies); ``capacity_uses``: the capacity
    bound ``bits / log2(1 + SNR)`` (ergodic for fading) for that variant's file, the fewest channel
    uses any code needs to send it; ``baseline_quality_equal_uses``: the best metric of any matched
    variant spending at most the cell's channel uses; ``digital_label``/``digital_uses``/
    ``digital_quality``: the same protocol with a quantised seed over LDPC at this point (its
    best-fidelity digital variant), for analog cells.
    """
    import pandas as pd

    col = f"{metric}_mean"
    rows = []
    for _, r in agg[~agg["protocol"].isin(BASELINE_PROTOCOLS)].iterrows():
        dest = _destination_of(r)
        matched = BASELINES[dest]
        cells = agg[agg["protocol"].isin(matched)]
        same = _same_system(_at_point(cells, r), r)
        if r["channel"] != "none":  # error-free runs are no baseline, the UE alone is one at every SNR
            same = pd.concat([same[same["channel"] != "none"], _ue_alone(cells, r)])
        outage = _outage(r)
        b_out = same["outage_mean"].fillna(0.0) if "outage_mean" in same else 0.0 * same[col]
        good = same[(same[col] >= r[col]) & (b_out <= outage + 1e-12)]
        fits = same[same["uses_total"] <= r["uses_total"]]
        eq = good.sort_values("uses_total").iloc[0] if not good.empty else None
        cap = math.nan
        if eq is not None and r["channel"] != "none":
            cap = capacity_channel_uses(float(eq["bits_total"]), float(r["snr_db"]), str(r["channel"]))
        rows.append(
            {
                "label": r["label"],
                "protocol": r["protocol"],
                "destination": dest,
                "baselines": ",".join(matched),
                "task": r["task"],
                "channel": r["channel"],
                "snr_db": r["snr_db"],
                metric: r[col],
                "outage": outage,
                "uses_total": r["uses_total"],
                "baseline_label": None if eq is None else eq["label"],
                "baseline_uses_equal_quality": math.nan if eq is None else float(eq["uses_total"]),
                "baseline_bits_equal_quality": math.nan if eq is None else float(eq["bits_total"]),
                "baseline_outage_equal_quality": math.nan if eq is None else _outage(eq),
                "baseline_failures_equal_quality": math.nan if eq is None else float(eq["link_failures"]),
                "capacity_uses": cap,
                "baseline_quality_equal_uses": float(fits[col].max()) if not fits.empty else math.nan,
                **_digital_point(agg, r, col),
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
