"""The stage memo: content keys, bounds, and exact reuse inside the engine (results and costs unchanged)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megen.config import RunConfig
from megen.data import prompt_for
from megen.protocols.memo import StageMemo, fingerprint
from megen.protocols.runner import make_links, run_protocol
from megen.session import Session

PROMPTS = [prompt_for(2), prompt_for(5), prompt_for(9)]


@pytest.fixture(scope="module")
def reference():
    return (torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 255).round() / 255


def test_fingerprint_is_content_dtype_and_shape():
    a = torch.arange(6, dtype=torch.float32)
    assert fingerprint(a) == fingerprint(a.clone())
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    assert fingerprint(a) != fingerprint(a.double())
    b = a.clone()
    b[3] += 1e-6
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint((1, "x", None, a)) == fingerprint((1, "x", None, a.clone()))
    with pytest.raises(TypeError):
        fingerprint(object())


def test_memo_hands_out_clones_and_respects_bounds():
    memo = StageMemo(max_entries=2, max_bytes=10_000)
    x = torch.zeros(4)
    memo.put("a", x)
    got = memo.get("a")
    assert got is not None and torch.equal(got, x)
    got += 1  # a caller writing into its result must not change the memo
    assert torch.equal(memo.get("a"), x)
    memo.put("b", torch.ones(4))
    memo.put("c", torch.ones(4))
    assert len(memo) == 2 and memo.get("a") is None  # least recently used went first
    memo.put("big", torch.zeros(10_000))  # larger than max_bytes: not kept
    assert memo.get("big") is None and len(memo) == 2
    calls = []
    assert torch.equal(memo.run("d", lambda: calls.append(1) or torch.full((2,), 7.0)), torch.full((2,), 7.0))
    assert torch.equal(memo.run("d", lambda: calls.append(1) or torch.zeros(2)), torch.full((2,), 7.0))
    assert calls == [1]


def _run_without_memo(cfg, prompts, reference, model):
    """The same run with nothing memoised before it (every stage computed: the reference computation)."""
    return run_protocol(cfg, prompts, reference, model=model, session=Session())


def _costs(run):
    out = run.output
    return (
        out.channel_uses(),
        out.payload_bits(),
        out.flops(),
        round(out.latency_s, 15),
        round(out.energy_j, 15),
        [dataclasses.astuple(s) for s in out.stages],
    )


@pytest.mark.parametrize(
    "protocol,snrs",
    [("central", (5.0, 15.0)), ("CIAG", (0.0, 10.0)), ("ESUC", (2.0, 12.0)), ("UIDG", (5.0, 20.0))],
)
def test_memo_reuse_is_exact(random_tiny, reference, protocol, snrs):
    """Runs that hit the memo give the same images and the same accounted costs as fresh runs."""
    session = Session()
    kw = dict(steps=5, strength=0.6, guidance=3.0, seed=11, channel="awgn", mcs="qpsk-0.5")
    for snr in snrs:
        cfg = RunConfig.from_paths(dict(protocol=protocol, snr_db=snr, **kw))
        memo_run = run_protocol(cfg, PROMPTS, reference, model=random_tiny, session=session)
        fresh = _run_without_memo(cfg, PROMPTS, reference, random_tiny)
        assert torch.equal(memo_run.images, fresh.images), (protocol, snr)
        assert _costs(memo_run) == _costs(fresh), (protocol, snr)
        assert memo_run.quality == fresh.quality


def test_central_generation_is_reused_across_downlink_snrs(random_tiny, reference):
    """With the reference delivered intact, the ES's whole generation repeats: the memo serves it."""
    session = Session()
    memo = session.memo(random_tiny)
    kw = dict(protocol="central", steps=5, strength=0.6, guidance=3.0, seed=11, channel="awgn")
    run_protocol(
        RunConfig.from_paths(dict(snr_db=30.0, **kw)), PROMPTS, reference, model=random_tiny, session=session
    )
    hits = memo.hits
    # downlink at another SNR, uplink kept at 30 dB (the reference arrives with the same bytes)
    cfg = RunConfig.from_paths(dict(snr_db=30.0, dl_snr_db=12.0, **kw))
    assert make_links(cfg).channel("downlink").snr_db == 12.0
    run_protocol(cfg, PROMPTS, reference, model=random_tiny, session=session)
    assert memo.hits - hits >= 4  # E, Z, D and G on the ES
