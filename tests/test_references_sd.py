"""Reference sets, and the case-study pipeline (sweep, plots, report) on a Stable Diffusion checkpoint."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from megen.errors import MegenError
from megen.experiments.references import (
    PHOTOS,
    fit_to_model,
    load_references,
    resolve_references,
)
from megen.experiments.spec import point_key, spec_from_flags
from megen.experiments.sweep import sample_inputs


def test_photo_references_ship_offline():
    refs = load_references("photos")
    assert refs.images.shape == (len(PHOTOS), 3, 512, 512)
    assert float(refs.images.min()) >= 0.0 and float(refs.images.max()) <= 1.0
    assert refs.prompts == tuple(c for _, c in PHOTOS)
    # 8-bit values (as from an image file), and no two photos alike
    assert torch.equal(refs.images, (refs.images * 255).round() / 255)
    flat = refs.images.flatten(1)
    assert torch.cdist(flat, flat).fill_diagonal_(1e9).min() > 1.0


def test_fit_to_model_sizes_and_channels():
    img = load_references("photos").images[:2]
    gray = fit_to_model(img, (1, 32, 32))
    assert gray.shape == (2, 1, 32, 32)
    # luminance of a mid-grey RGB image is the same grey
    assert torch.allclose(
        fit_to_model(torch.full((1, 3, 8, 8), 0.4), (1, 8, 8)), torch.full((1, 1, 8, 8), 0.4)
    )
    rgb = fit_to_model(torch.rand(1, 1, 32, 32), (3, 64, 64))
    assert rgb.shape == (1, 3, 64, 64) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_auto_references_by_model():
    assert resolve_references("auto", "tiny") == "fashion-mnist"
    assert resolve_references("auto", "tiny-random") == "fashion-mnist"
    assert resolve_references("auto", "/some/sd-checkpoint") == "photos"
    assert resolve_references("photos", "tiny") == "photos"
    with pytest.raises(MegenError, match="unknown reference set"):
        resolve_references("imagenet", "tiny")


def test_sample_prompts_follow_the_reference_set():
    refs = load_references("photos")
    prompts, ref, idx, classes = sample_inputs("i2i", range(10), 0, refs, (3, 16, 16))
    assert ref is not None and ref.shape == (10, 3, 16, 16)
    assert prompts[:8] == list(refs.prompts) and idx[8] == idx[0]  # 8 photos, then they repeat
    shifted, *_ = sample_inputs("i2i", range(3), 1, refs, (3, 16, 16))
    assert shifted == [refs.prompts[1], refs.prompts[2], refs.prompts[3]]
    t2i, none, _, _ = sample_inputs("t2i", range(3), 0, refs, (3, 16, 16))
    assert none is None and t2i == list(refs.prompts[:3])


def test_auto_references_keep_older_database_keys():
    """``references = auto`` is left out of the spec JSON and the point keys (older databases still match)."""
    kw = dict(protocols="central", channels="awgn", snr_db="10", transmissions="analog", samples=4, seeds="0")
    auto = spec_from_flags(**kw)
    photos = spec_from_flags(**kw, references="photos")
    assert "references" not in auto.to_json() and '"references":"photos"' in photos.to_json()
    from megen.experiments.spec import expand

    p_auto, p_photos = expand(auto)[0], expand(photos)[0]
    assert p_auto.key == point_key(p_auto.config, p_auto.task, auto)
    assert p_auto.key != p_photos.key


def test_sweep_plot_and_report_on_a_stable_diffusion_checkpoint(tmp_path, monkeypatch):
    """The whole case-study path on a (tiny, random-weight) SD checkpoint: photo references, no classifier."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from megen.analysis import aggregate
    from megen.experiments.sweep import run_sweep
    from megen.report.markdown import threshold_metric, write_report
    from megen.report.plots import plot_all
    from megen.store import ResultsStore
    from megen.testing import save_tiny_sd_checkpoint

    ckpt = save_tiny_sd_checkpoint(tmp_path / "sd", seed=0)
    spec = spec_from_flags(
        protocols="central,EIUG,CIAG,local",
        channels="awgn,none",
        snr_db="0,20",
        transmissions="analog",
        samples=4,
        seeds="0",
        model=str(ckpt),
        batch_size=2,
        extra={"steps": 4},
    )
    spec = spec.model_copy(update={"grids": [{**spec.grids[0], "tag": ["main"]}]})
    db = tmp_path / "out" / "results.sqlite"
    res = run_sweep(spec, db, progress=False, log=lambda m: None)
    assert res.complete and res.written_rows == res.expected_rows
    with sqlite3.connect(db) as conn:
        prompts = {r[0] for r in conn.execute("SELECT prompt FROM rows")}
        assert prompts <= set(load_references("photos").prompts)
        assert conn.execute("SELECT COUNT(*) FROM rows WHERE prompt_match IS NOT NULL").fetchone()[0] == 0
        assert (
            conn.execute("SELECT MIN(ssim_reference), MAX(ssim_reference) FROM rows").fetchone()[0]
            is not None
        )
    with ResultsStore.open(db) as store:
        agg = aggregate(store, fid=True, log=lambda m: None)
        assert threshold_metric(agg) == "ssim_fidelity"
        figures = plot_all(store, tmp_path / "out" / "figures", agg=agg, log=lambda m: None)
    assert {p.stem for p in figures} >= {"quality_vs_snr", "channel_uses", "image_grid", "frontier"}
    report = write_report(tmp_path / "out", preset="custom", workers=1, sweep_s=1.0, log=lambda m: None)
    text = report.read_text()
    assert "falls below 90% of its error-free SSIM fidelity" in text
    assert str(ckpt) in text
