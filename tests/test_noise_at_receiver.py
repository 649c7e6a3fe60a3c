"""``protocol.noise_at = receiver``: the clean latent crosses, the ES adds the shared seed's noise."""

from __future__ import annotations

import pytest
import torch

from megen import rng
from megen.config import RunConfig
from megen.costs.flops import FlopMeter
from megen.data import prompt_for
from megen.errors import MegenError
from megen.link.channels import ChannelConfig
from megen.link.seed_codecs import send_seed
from megen.protocols.builders import build_plan
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import NOISE_STREAM, LocalExecutor, RunContext
from megen.protocols.items import ItemMeta
from megen.protocols.plan import ItemRef, Stage
from megen.protocols.runner import run_protocol
from megen.protocols.unsplit import run_unsplit

PROMPTS = [prompt_for(2), prompt_for(5)]
STEPS = 6


@pytest.fixture(scope="module")
def reference():
    return (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 255).round() / 255


def _cfg(**kw) -> RunConfig:
    base = dict(steps=STEPS, strength=0.5, guidance=3.0, seed=4, channel="none", mcs="16qam-0.5")
    base.update(kw)
    return RunConfig.from_paths(base)


def _kinds(plan) -> list[str]:
    return [op.describe() if isinstance(op, Stage) else f"{op.item}:{op.src}>{op.dst}" for op in plan.ops]


def test_plans_move_z_to_the_receiver():
    cfg = _cfg(protocol="UIEG", noise_at="receiver")
    assert _kinds(build_plan("UIEG", cfg, 3, True))[:4] == ["E", "z_ref:UE>ES1", "Z", "prompt:UE>ES1"]
    # text-to-image: the seed is the shared seed's noise: only the prompt (and its control bits) crosses
    t2i = build_plan("UIEG", cfg, 0, False)
    assert [str(t.item) for t in t2i.transfers()] == ["prompt"]
    assert [op.node for op in t2i.ops if isinstance(op, Stage) and op.kind == "Z"] == ["ES1"]
    ciag = build_plan("CIAG", _cfg(protocol="CIAG", noise_at="receiver"), 3, True)
    assert [str(t.item) for t in ciag.transfers()] == ["z_ref", "prompt", "latent"]
    uidcg = build_plan("UIDCG", _cfg(protocol="UIDCG", noise_at="receiver"), 3, True)
    assert _kinds(uidcg)[:3] == ["E", "z_ref:UE>ES1", "Z"]
    eiug = build_plan("EIUG", _cfg(protocol="EIUG", noise_at="receiver", ref_as_seed=True), 3, True)
    assert "z_ref:UE>ES1" in _kinds(eiug)
    # the default is today's plan
    assert _kinds(build_plan("UIEG", _cfg(protocol="UIEG"), 3, True))[:3] == ["E", "Z", "latent:UE>ES1"]


def test_receiver_noise_where_impossible_is_one_line_error():
    with pytest.raises(MegenError, match="UIDG: --noise-at receiver"):
        build_plan("UIDG", _cfg(protocol="UIDG", noise_at="receiver"), 3, True)
    with pytest.raises(MegenError, match="UE denoises before the hand-over"):
        build_plan("UIEG", _cfg(protocol="UIEG", noise_at="receiver", split_step=5), 3, True)
    with pytest.raises(MegenError):
        RunConfig.from_paths({"noise_at": "middle"})


@pytest.mark.equivalence
@pytest.mark.parametrize("protocol", ["UIEG", "CIAG", "UIDCG"])
@pytest.mark.parametrize("i2i", [False, True])
def test_error_free_receiver_noise_is_bit_equal(random_tiny, reference, protocol, i2i):
    """Channel none: the ES draws the eps the UE would (one named stream): the same latent, bit for bit."""
    ref = reference if i2i else None
    extra = {"ue_model": "es"} if protocol == "CIAG" else {}
    sender = run_protocol(_cfg(protocol=protocol, **extra), PROMPTS, ref, model=random_tiny)
    receiver = run_protocol(
        _cfg(protocol=protocol, noise_at="receiver", **extra), PROMPTS, ref, model=random_tiny
    )
    assert torch.equal(receiver.output.latent, sender.output.latent)
    assert torch.equal(receiver.images, sender.images)
    unsplit = run_unsplit(random_tiny, PROMPTS, ref, num_steps=STEPS, strength=0.5, guidance=3.0, seed=4)
    assert torch.allclose(receiver.output.latent, unsplit.latent, atol=1e-6)


def test_received_clean_latent_noised_carries_scaled_link_noise(random_tiny):
    """``Z`` of a received ``z_ref`` (noise ``s2``): noise ``a s2`` on the latent, the same eps on both."""
    ecfg = EngineConfig(num_steps=STEPS, strength=0.5, seed=9)
    ex = LocalExecutor("ES1", random_tiny, ecfg.es_parts, None, FlopMeter())
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(3, *random_tiny.latent_shape, generator=g)
    unbiased = clean + 0.3 * torch.randn(clean.shape, generator=g)
    s2 = torch.tensor([0.09, 0.09, 0.09])
    ex.put(ItemRef("z_ref"), clean, ItemMeta(noise_var=s2, unbiased=unbiased))
    ctx = RunContext(ecfg, 3, True, random_tiny.start_step(STEPS, 0.5))
    ex.run_stage(Stage("Z", "ES1"), ctx)
    meta = ex.meta(ItemRef("latent"))
    a = random_tiny.alpha_bar_at(STEPS, ctx.start_step)
    assert 0.0 < a < 1.0
    torch.testing.assert_close(meta.noise_var, s2 * a)
    assert meta.step == ctx.start_step
    # noised unbiased minus noised value = sqrt(a) (unbiased - value): the eps cancels (same stream)
    diff = meta.unbiased - ex.get(ItemRef("latent"))
    torch.testing.assert_close(diff, a**0.5 * (unbiased - clean), atol=1e-5, rtol=0)
    # and the eps is the run's shared stream
    gen = torch.Generator().manual_seed(rng.derive(9, *NOISE_STREAM))
    want = random_tiny.noise(clean, num_steps=STEPS, strength=0.5, generator=gen)
    assert torch.equal(ex.get(ItemRef("latent")), want)


def test_clean_latent_compacts_far_better_than_the_noisy_seed():
    """Linear codec at 64 uses, 20 dB: the clean latent (receiver noise) vs the a=0.2 state (sender)."""
    from megen.link.seed_prior import load_prior

    prior = load_prior("tiny", (4, 8, 8))
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(64, prior.numel, generator=g, dtype=torch.float64)
    x0 = (prior.mean + (eps * prior.eigvals.sqrt()) @ prior.basis.T).reshape(64, 4, 8, 8).float()
    a = 0.201
    noisy = a**0.5 * x0 + (1 - a) ** 0.5 * torch.randn(x0.shape, generator=g)
    ch = ChannelConfig(kind="awgn", snr_db=20.0)

    def seed_mse(x: torch.Tensor) -> float:
        r = send_seed(x, ch, torch.Generator().manual_seed(1), codec="linear", uses=64, model="tiny")
        return float((r.estimate - x).square().mean())

    # the receiver's added noise is known to it; what reaches the denoiser is sqrt(a) (x0 + n)
    receiver_err = a * seed_mse(x0)
    sender_err = seed_mse(noisy)
    assert receiver_err < sender_err / 20, (receiver_err, sender_err)
