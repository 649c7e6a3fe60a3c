"""The report's summary: each protocol against its matched baselines from -15 to 20 dB, at a glance.

Three tables per destination (where the image lands) and channel, one column per summary SNR that was
swept:

* **quality and cost**: fidelity PSNR (dB, over delivered images) / prompt accuracy / outage
  probability / channel uses per image (every link, control data and retransmissions included);
* **saving at equal fidelity**: the cheapest matched baseline variant reaching the protocol's
  fidelity with no more outage (:func:`megen.analysis.equal_quality`) divided into the protocol's
  channel uses: ``12.5x`` means the baseline needs 12.5 times the uses; below 1 the protocol loses.
  Only at the SNRs where the baselines' codec/quality/MCS variants were swept (tag ``frontier``);
* **fidelity at equal channel uses**: the protocol's fidelity beside the best a matched baseline
  variant reaches within the protocol's channel uses.

These are the tables ``docs/results.md`` quotes; the full per-configuration tables follow in the report.
"""

from __future__ import annotations

import math
from typing import Any

from megen.report.markdown import ReportContext, has_tag, lands_at, md_table

#: SNRs (dB) shown as columns where they were swept.
GLANCE_SNRS_DB: tuple[float, ...] = (-15.0, -12.0, -10.0, -8.0, -5.0, -3.0, 0.0, 5.0, 10.0, 20.0)
#: Baselines of each destination, listed after the MEG protocols in the quality table.
_BASELINE_ORDER = ("central", "central-fallback", "central-es", "local-upload", "local-i2i-upload")


def glance(ctx: ReportContext) -> list[str]:
    """The summary section: quality/cost and equal-fidelity saving tables per destination and channel."""
    agg = ctx.agg
    main = agg[has_tag(agg, "main") & (agg["channel"] != "none")]
    if main.empty:
        return []
    lines = [
        "## At a glance: every protocol against its matched baselines",
        "",
        "Per destination and channel. *Quality and cost*: fidelity PSNR dB (over delivered images; — when "
        "none was delivered) / prompt accuracy / outage probability / channel uses per image (all links, "
        "control data and retransmissions). *Saving at equal fidelity*: the cheapest matched baseline "
        "variant (any codec, quality, MCS) reaching the protocol's fidelity with no more outage, in channel "
        "uses, divided by the protocol's uses: above 1x the protocol saves, below 1x it loses; *none*: no "
        "baseline variant reaches its fidelity at that SNR (the protocol wins outright); *UE alone*: the UE "
        "reaches it with no link at all (`local` from the prompt, `local-i2i` from its own reference): the "
        "protocol loses outright.",
        "",
    ]
    dest = main.apply(lambda r: "UE" if lands_at(r) == "UE" else "ES", axis=1)
    for d in ("UE", "ES"):
        for channel in sorted(set(main[dest == d]["channel"])):
            sub = main[(dest == d) & (main["channel"] == channel)]
            snrs = [s for s in GLANCE_SNRS_DB if bool(_at_snr(sub, s).any())]
            lines += _quality_table(sub, d, channel, snrs)
            lines += _saving_table(ctx.equal, sub, d, channel, _frontier_snrs(agg, d, channel, snrs))
    return lines


def _at_snr(frame, snr_db: float):
    """Boolean mask of the lines of ``frame`` at ``snr_db``."""
    return (frame["snr_db"].astype(float) - snr_db).abs() < 1e-9


def _frontier_snrs(agg, dest: str, channel: str, snrs: list[float]) -> list[float]:
    """The SNRs among ``snrs`` where the destination's baselines were swept over their variants (tag
    ``frontier``): elsewhere only the default variant exists and a saving would be overstated."""
    from megen.analysis import BASELINES

    f = agg[has_tag(agg, "frontier") & agg["protocol"].isin(BASELINES[dest]) & (agg["channel"] == channel)]
    return [s for s in snrs if bool(_at_snr(f, s).any())]


def _order(protocols: set[str]) -> list[str]:
    meg = sorted(p for p in protocols if p not in _BASELINE_ORDER)
    return meg + [p for p in _BASELINE_ORDER if p in protocols]


def _cell(sub, protocol: str, snr: float):
    hit = sub[(sub["label"] == protocol) & _at_snr(sub, snr)]
    return None if hit.empty else hit.iloc[0]


def _quality(r) -> str:
    if r is None:
        return ""
    psnr, acc = float(r["psnr_fidelity_db_mean"]), _float(r, "prompt_match_mean")
    out = _float(r, "outage_mean", 0.0)
    head = "—" if math.isnan(psnr) else f"{psnr:.1f}"
    acc_s = "n/a" if math.isnan(acc) else f"{acc:.2f}"
    return f"{head} / {acc_s} / {out:.2f} / {float(r['uses_total']):,.0f}"


def _float(r, col: str, default: float = math.nan) -> float:
    v: Any = r.get(col, default)
    return default if v is None else float(v)


def _quality_table(sub, dest: str, channel: str, snrs: list[float]) -> list[str]:
    rows = [[p, *(_quality(_cell(sub, p, s)) for s in snrs)] for p in _order(set(sub["label"]))]
    header = ["protocol", *(f"{s:g} dB" for s in snrs)]
    return [f"### Image at the {dest}, {channel}: quality and cost", "", md_table(header, rows), ""]


def _equal_row(eq, protocol: str, channel: str, snr: float):
    """The :func:`~megen.analysis.equal_quality` line of ``protocol`` at ``channel``/``snr`` (None: not swept)."""
    hit = eq[(eq["label"] == protocol) & (eq["channel"] == channel) & _at_snr(eq, snr)]
    return None if hit.empty else hit.iloc[0]


def _saving(eq, protocol: str, channel: str, snr: float) -> str:
    e = _equal_row(eq, protocol, channel, snr)
    if e is None:
        return ""
    if math.isnan(float(e["psnr_fidelity_db"])):
        return "outage"
    if not isinstance(e["baseline_label"], str):
        return "none"
    if float(e["baseline_uses_equal_quality"]) == 0.0:
        return f"UE alone ({e['baseline_label']})"
    ratio = float(e["baseline_uses_equal_quality"]) / max(float(e["uses_total"]), 1e-12)
    return f"{ratio:.2g}x ({e['baseline_label']})" if ratio < 10 else f"{ratio:.0f}x ({e['baseline_label']})"


def _at_equal_uses(eq, protocol: str, channel: str, snr: float) -> str:
    e = _equal_row(eq, protocol, channel, snr)
    if e is None:
        return ""
    mine, best = float(e["psnr_fidelity_db"]), float(e["baseline_quality_equal_uses"])
    mine_s = "outage" if math.isnan(mine) else f"{mine:.1f}"
    return f"{mine_s} vs {'none fits' if math.isnan(best) else f'{best:.1f}'}"


def _saving_table(eq, sub, dest: str, channel: str, snrs: list[float]) -> list[str]:
    if eq is None or eq.empty or not snrs:
        return []
    meg = [p for p in _order(set(sub["label"])) if p not in _BASELINE_ORDER]
    header = ["protocol", *(f"{s:g} dB" for s in snrs)]
    saving = [[p, *(_saving(eq, p, channel, s) for s in snrs)] for p in meg]
    equal_uses = [[p, *(_at_equal_uses(eq, p, channel, s) for s in snrs)] for p in meg]
    return [
        f"### Image at the {dest}, {channel}: saving at equal fidelity",
        "",
        md_table(header, saving),
        "",
        f"### Image at the {dest}, {channel}: fidelity at equal channel uses",
        "",
        "The protocol's fidelity PSNR (dB) vs the best any matched baseline variant reaches within the "
        "protocol's channel uses (*none fits*: every variant needs more uses).",
        "",
        md_table(header, equal_uses),
        "",
    ]


__all__ = ["GLANCE_SNRS_DB", "glance"]
