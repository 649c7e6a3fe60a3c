"""CLIP score: equal to CLIP's own forward pass on a tiny random CLIP, skipped cleanly without weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from megen import clip_score as cs


def _make_tiny_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from megen.testing import write_tiny_clip_vocab

    write_tiny_clip_vocab(folder)
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    text = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=16,
    )  # fmt: skip
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return _make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture()
def clip_env(tiny_clip, monkeypatch):
    monkeypatch.setenv(cs.CLIP_ENV, str(tiny_clip))
    cs._load.cache_clear()
    yield tiny_clip
    cs._load.cache_clear()


PROMPTS = ["a photo of a cat", "a red house", "a dog on the grass"]


def test_scores_equal_the_full_clip_forward(tiny_clip):
    """Against CLIP's own forward pass with its own (PIL) processor: 100 * cos(image_embeds, text_embeds).

    (torchmetrics' clip_score would be the natural reference, but torchmetrics 1.9 breaks on
    transformers 5, whose ``get_image_features`` returns an output object.)
    """
    from transformers import CLIPModel, CLIPProcessor

    scorer = cs.ClipScorer(str(tiny_clip))
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float() / 255
    ours = scorer(images, PROMPTS)
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    proc = CLIPProcessor.from_pretrained(tiny_clip)
    pil = [(images[i] * 255).round().byte().permute(1, 2, 0).numpy() for i in range(3)]
    with torch.no_grad():
        out = model(**proc(text=PROMPTS, images=pil, return_tensors="pt", padding=True))
    cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds, dim=-1)
    theirs = (100 * cos).clamp(min=0).double()
    assert ours.shape == (3,) and bool(((ours >= 0) & (ours <= 100)).all())
    assert torch.allclose(ours, theirs, atol=1e-3), (ours, theirs)
    assert len({round(float(v), 3) for v in ours}) == 3  # the pairs differ


def test_grey_and_other_sizes(tiny_clip):
    scorer = cs.ClipScorer(str(tiny_clip))
    grey = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(scorer(grey, PROMPTS[:2]), scorer(grey.repeat(1, 3, 1, 1), PROMPTS[:2]))
    big = torch.rand(1, 3, 96, 64, generator=torch.Generator().manual_seed(2))
    assert scorer.pixel_values(big).shape == (1, 3, 32, 32)
    with pytest.raises(Exception, match="2 images for 1 prompts"):
        scorer(grey, PROMPTS[:1])


def test_skipped_with_one_message_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(cs.CLIP_ENV, str(tmp_path / "no-clip-here"))
    cs._load.cache_clear()
    try:
        scorer, reason = cs.load_clip_scorer()
        assert scorer is None and reason.startswith("skipped:") and cs.CLIP_ENV in reason
        assert "\n" not in reason
    finally:
        cs._load.cache_clear()


def test_aggregate_adds_clip_score_per_configuration(clip_env, tmp_path):
    from megen.analysis import aggregate
    from megen.experiments.spec import spec_from_flags
    from megen.experiments.sweep import run_sweep
    from megen.metrics import optional_metrics_status
    from megen.store import ResultsStore

    spec = spec_from_flags(
        protocols="central,local",
        channels="awgn",
        snr_db="10",
        transmissions="analog",
        samples=4,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 2},
    )
    db = tmp_path / "clip.sqlite"
    assert run_sweep(spec, db, progress=False, log=lambda m: None).complete
    notes: list[str] = []
    with ResultsStore.open(db) as store:
        agg = aggregate(store, fid=False, log=notes.append)
    assert optional_metrics_status()["clip_score"] == "available"
    assert all(math.isfinite(v) for v in agg["clip_score_mean"]) and list(agg["clip_score_n"]) == [4, 4]
    assert any(n.startswith("CLIP score with") for n in notes)
    assert any("lpips" in n and "torchvision" in n for n in notes)
