"""The report names the destination of every comparison, with and without the outage columns (issue 10)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from megen.experiments.spec import spec_from_flags
from megen.experiments.sweep import run_sweep

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """A finished sweep of the random tiny model (rows without outage/delivered_to) and its report."""
    from megen.report.markdown import write_report

    out = tmp_path_factory.mktemp("report")
    spec = spec_from_flags(
        protocols="central,EIUG,UIEG",
        channels="awgn,none",
        snr_db="-5,-4,-3",
        transmissions="analog",
        samples=2,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 2},
    )
    res = run_sweep(spec, out / "results.sqlite", progress=False, log=lambda _m: None)
    assert res.complete
    write_report(out, preset="demo", workers=1, sweep_s=None, log=lambda _m: None)
    return out


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_report_says_where_every_image_lands(report_dir: Path):
    text = (report_dir / "report.md").read_text()
    main = _section(text, "## Quality and costs per configuration")
    assert "| image lands at |" in main and "| outage [95% CI] |" in main
    for line in main.splitlines():
        if line.startswith("| UIEG |"):
            assert "| ES1 |" in line
        if line.startswith(("| central |", "| EIUG |")):
            assert "| UE |" in line
            assert "| 0 [0, 0.66] |" in line  # no outage column in the rows: 0 of 2, Wilson upper 0.66
    eq = _section(text, "## Channel uses against the matched baselines")
    assert "### image at the UE: against `central`" in eq
    assert "### image at the ES: against `central-es`" in eq
    ue, es = eq.split("### image at the ES")
    assert "| EIUG |" in ue and "| UIEG |" not in ue
    assert "| UIEG |" in es and "none reaches it" in es  # no ES baseline was swept: nothing to compare
    thr = _section(text, "## Where each protocol falls below")
    assert "| image lands at |" in thr and "dB (grid too coarse)" not in thr.split("|---|")[0]


def test_summary_carries_outage_and_destination(report_dir: Path):
    import pandas as pd

    summary = pd.read_csv(report_dir / "summary.csv")
    for col in ("outage_mean", "outage_lo", "outage_hi", "outage_n", "delivered_to", "destination"):
        assert col in summary.columns
    assert set(summary.loc[summary["protocol"] == "UIEG", "destination"]) == {"ES"}
    assert (summary["outage_mean"] == 0).all()


def test_report_renders_the_new_columns(report_dir: Path, tmp_path: Path):
    """Rows with outage and the ES baselines: outage beside quality, ES protocols against central-es."""
    from megen.analysis import add_keys, aggregate, equal_quality, threshold_snr
    from megen.report.markdown import ReportContext, report_markdown
    from megen.store import ResultsStore

    db = tmp_path / "r.sqlite"
    shutil.copy(report_dir / "results.sqlite", db)
    with ResultsStore.open(db) as store:
        agg = aggregate(store, fid=False)
        frame = add_keys(store.frame())
        spec, meta = store.spec, dict(store.meta)
    es = agg[agg["protocol"] == "central"].copy()
    es["protocol"], es["label"], es["delivered_to"], es["destination"] = (
        "central-es",
        "central-es",
        "ES1",
        "ES",
    )
    es["series"] = es["series"] + "-es"
    es["uses_total"] = 1.0  # the ES generates: only the prompt goes up
    es["psnr_fidelity_db_mean"] = 99.0
    import pandas as pd

    agg = pd.concat([agg, es], ignore_index=True)
    low = agg["snr_db"] == -5.0
    agg.loc[low, ["outage_mean", "outage_lo", "outage_hi"]] = [0.5, 0.09, 0.91]
    ctx = ReportContext(
        spec=spec,
        meta=meta,
        agg=agg,
        frame=frame,
        thresholds=threshold_snr(agg, metric="ssim_fidelity"),
        equal=equal_quality(agg),
        figures=[],
        preset="demo",
        workers=1,
        sweep_s=None,
    )
    text = report_markdown(ctx)
    assert "| 0.5 [0.09, 0.91] |" in text
    es_part = _section(text, "## Channel uses against the matched baselines").split("### image at the ES")[1]
    uieg = [ln for ln in es_part.splitlines() if ln.startswith("| UIEG |") and "| -4 |" in ln]
    assert uieg and "| central-es |" in uieg[0]  # matched to central-es, never to central
    thr = _section(text, "## Where each protocol falls below")
    assert "between -5 and -4 dB" in thr  # outage 50% at -5 dB, none from -4 dB
    bare = dataclasses.replace(ctx, agg=agg.drop(columns=["outage_mean", "delivered_to", "destination"]))
    assert "| n/a |" in report_markdown(bare)  # an aggregate without the columns still renders


def test_genie_section_pairs_genie_with_estimated():
    import types

    import pandas as pd

    from megen.report.markdown import _genie

    def cell(name, noise, csi):
        return {"cell": name, "protocol": "UIEG", "delivered_to": "ES1", "channel": "rayleigh", "snr_db": 0.0,
                "task": "i2i", "cfg_noise": noise, "cfg_csi": csi, "cfg_seed": 0, "cfg_protocol": "UIEG",
                "outage_mean": 0.0, "outage_lo": 0.0, "outage_hi": 0.5}  # fmt: skip

    agg = pd.DataFrame([cell("g", "genie", "perfect"), cell("e", "estimated", "estimated")])
    frame = pd.DataFrame(
        [
            {"cell": c, "seed": 0, "sample": i, "psnr_fidelity_db": v + i}
            for c, v in (("g", 30.0), ("e", 29.0))
            for i in range(4)
        ]
    )
    text = "\n".join(_genie(types.SimpleNamespace(agg=agg, frame=frame)))
    assert "## What the genie receiver hides" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| UIEG |"))
    assert "| ES1 | rayleigh | 0 | 31.5 | 30.5 | 1 ± 0 |" in row and row.endswith("| 4 |")
    assert _genie(types.SimpleNamespace(agg=agg.drop(columns=["cfg_noise"]), frame=frame)) == []


def test_report_opens_with_the_at_a_glance_tables(report_dir: Path):
    """Per destination and channel: quality/outage/uses at the summary SNRs, the ES protocols apart."""
    text = (report_dir / "report.md").read_text()
    glance = _section(text, "## At a glance")
    assert text.index("## At a glance") < text.index("## Quality and costs per configuration")
    ue, es = glance.split("### Image at the ES, awgn: quality and cost")
    assert "### Image at the UE, awgn: quality and cost" in ue
    assert "| protocol | -5 dB | -3 dB |" in ue  # -4 dB is not a summary SNR
    assert "| EIUG |" in ue and "| central |" in ue and "| UIEG |" not in ue
    assert "| UIEG |" in es and "| EIUG |" not in es
    row = next(line for line in ue.splitlines() if line.startswith("| central |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    psnr, acc, outage, uses = cells[0].split(" / ")
    assert float(outage) == 0.0 and int(uses.replace(",", "")) > 0 and float(psnr) > 0
    assert "saving at equal fidelity" not in glance  # no frontier was swept: no saving claimed
