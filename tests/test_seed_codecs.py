"""Seed codecs (:mod:`megen.link.seed_codecs`): power constraint, exactness, errors, water-filling, sweeps."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from megen.config import RunConfig, parse_assignments
from megen.errors import MegenError
from megen.link.channels import ChannelConfig
from megen.link.modulation import Mcs
from megen.link.seed_codecs import check_budget, encode_analog, send_seed, uses_seed_codec
from megen.link.seed_power import block_powers, component_energies, transmit_waterfilled
from megen.link.seed_prior import load_prior

SHAPE = (4, 8, 8)
IDEAL = ChannelConfig(kind="none")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _prior_latents(batch: int, seed: int = 0) -> torch.Tensor:
    """Latents drawn from the shipped prior (Gaussian with the KLT statistics of tiny latents)."""
    prior = load_prior("tiny", SHAPE)
    eps = torch.randn(batch, prior.numel, generator=_gen(seed), dtype=torch.float64)
    flat = prior.mean + (eps * prior.eigvals.sqrt()) @ prior.basis.T
    return flat.reshape(batch, *SHAPE).float()


def _real_latents(batch: int) -> torch.Tensor:
    """Latents of the shipped Fashion-MNIST reference images through the tiny model's VAE (what a seed is)."""
    from megen.experiments.references import load_references
    from megen.models.registry import load_model

    images = load_references("fashion-mnist").images[:batch]
    with torch.no_grad():
        return load_model("tiny").encode_image(images).float()


# ---------------------------------------------------------------- unit: power constraint, budgets
@pytest.mark.parametrize(
    ("codec", "uses"), [("identity", 128), ("linear", 16), ("linear", 64), ("linear", 512)]
)
def test_power_constraint_exact_per_image(codec: str, uses: int) -> None:
    x = _prior_latents(6) * torch.linspace(0.1, 10.0, 6).view(-1, 1, 1, 1)
    prior = None if codec == "identity" else load_prior("tiny", SHAPE)
    enc = encode_analog(x, prior, uses, noise=0.05)
    assert enc.symbols.shape == (6, uses)
    power = enc.symbols.abs().square().mean(dim=1)
    torch.testing.assert_close(power, torch.ones(6, dtype=power.dtype), atol=1e-12, rtol=0)


def test_waterfilling_power_constraint_exact() -> None:
    gains = torch.rand(5, 7, generator=_gen(1), dtype=torch.float64) * 20
    lengths = torch.tensor([16, 16, 16, 16, 16, 16, 4], dtype=torch.float64)
    p = block_powers(gains, lengths)
    assert bool((p >= 0).all())
    torch.testing.assert_close(
        (p * lengths).sum(1), torch.full((5,), float(lengths.sum()), dtype=torch.float64)
    )
    ch = ChannelConfig(kind="rayleigh", snr_db=5.0, coherence_symbols=16)
    x = torch.polar(torch.ones(3, 100), torch.rand(3, 100, generator=_gen(2)) * 6.28)
    wf = transmit_waterfilled(x, ch, _gen(3))
    torch.testing.assert_close(wf.power.mean(1), torch.ones(3, dtype=torch.float64))
    assert wf.feedback_uses == 3 * 7 * 8 and wf.channel_uses == 300 + wf.feedback_uses


def test_component_energies_is_reverse_waterfilling() -> None:
    var = torch.tensor([[4.0, 1.0, 0.25, 0.0001]], dtype=torch.float64)
    copies = torch.tensor([1, 1, 1, 1])
    e = component_energies(var, copies, energy=2.0, noise=0.1)
    torch.testing.assert_close(e.sum(), torch.tensor(2.0, dtype=torch.float64))
    assert float(e[0, 3]) == 0.0  # too weak to be worth energy
    # KKT: lam_i sigma^2 / (sigma^2 + E_i)^2 is equal on the active set
    grad = var[0, :3] * 0.1 / (0.1 + e[0, :3]) ** 2
    torch.testing.assert_close(grad, grad.mean().expand(3), rtol=1e-6, atol=0)


def test_budget_range() -> None:
    assert check_budget("linear", 256, None) == 128
    assert check_budget("linear", 256, 16) == 16 and check_budget("learned", 256, 512) == 512
    for bad in (15, 513):
        with pytest.raises(MegenError, match=r"16\.\.512"):
            check_budget("linear", 256, bad)
    with pytest.raises(MegenError, match="identity sends the raw seed in 128"):
        check_budget("identity", 256, 64)
    with pytest.raises(MegenError, match="analog"):
        uses_seed_codec("linear", None, "uniform", "digital", 256)
    assert not uses_seed_codec("identity", None, "uniform", "analog", 256)
    assert uses_seed_codec("identity", None, "waterfilling", "analog", 256)


def test_missing_weights_is_one_line_error(tmp_path) -> None:
    with pytest.raises(MegenError, match="no seed-codec weights") as info:
        send_seed(_prior_latents(1), IDEAL, _gen(), codec="linear", uses=64, model=str(tmp_path))
    assert "\n" not in str(info.value)
    with pytest.raises(MegenError, match="are for latents"):
        send_seed(torch.zeros(1, 4, 4, 4), IDEAL, _gen(), codec="linear", uses=16)
    with pytest.raises(MegenError, match="no seed-codec weights"):
        send_seed(_prior_latents(1), IDEAL, _gen(), codec="linear", uses=64, model="org/some-hub-model")


# ---------------------------------------------------------------- exactness at infinite SNR
@pytest.mark.parametrize("codec", ["identity", "linear"])
def test_full_budget_reproduces_latent_without_noise(codec: str) -> None:
    x = _prior_latents(4, seed=5)
    r = send_seed(x, IDEAL, _gen(), codec=codec, uses=128)
    torch.testing.assert_close(r.estimate, x, atol=1e-4, rtol=1e-4)
    assert r.channel_uses == 4 * 128


def test_linear_above_raw_size_repeats_and_stays_exact() -> None:
    x = _prior_latents(2, seed=6)
    r = send_seed(x, IDEAL, _gen(), codec="linear", uses=512, power="waterfilling")
    torch.testing.assert_close(r.estimate, x, atol=1e-4, rtol=1e-4)


def test_learned_error_is_reported_and_estimated_at_receiver() -> None:
    """The learned codec's latent MSE at 0 dB and 64 uses on real latents, and its own residual estimate.

    The learned codec is fitted to the tiny model's latents: on them it beats ``linear`` (on Gaussian
    draws from the KLT prior it does not; docs/seed_codecs.md).
    """
    x = _real_latents(64)
    ch = ChannelConfig(kind="awgn", snr_db=0.0)
    lin = send_seed(x, ch, _gen(8), codec="linear", uses=64)
    lrn = send_seed(x, ch, _gen(8), codec="learned", uses=64)
    mse_lin = float((lin.estimate - x).square().mean())
    mse_lrn = float((lrn.estimate - x).square().mean())
    print(f"latent MSE at 0 dB, 64 uses: linear {mse_lin:.4f}, learned {mse_lrn:.4f}")
    assert mse_lrn < mse_lin
    assert lrn.noise_var is not None and lrn.noise_var.shape == (64,)
    reported = float(lrn.noise_var.mean())
    assert 0.7 * mse_lrn < reported < 1.4 * mse_lrn
    # the linear receiver's estimate matches theory: error within the sample's spread
    assert lin.noise_var is not None
    assert abs(float(lin.noise_var.mean()) - mse_lin) < 4 * mse_lin / math.sqrt(64)


def test_linear_beats_identity_on_latents() -> None:
    x = _prior_latents(32, seed=9)
    ch = ChannelConfig(kind="awgn", snr_db=-5.0)
    ident = send_seed(x, ch, _gen(10), codec="identity")
    lin = send_seed(x, ch, _gen(10), codec="linear", uses=128)
    assert float((lin.estimate - x).square().mean()) < 0.8 * float((ident.estimate - x).square().mean())


# ---------------------------------------------------------------- digital
def test_digital_round_trip_without_noise() -> None:
    x = _prior_latents(3, seed=11)
    r = send_seed(x, IDEAL, _gen(), codec="digital", uses=512, mcs=Mcs("64qam", 0.75))
    assert r.ok and r.failures == 0
    assert 0 < r.channel_uses <= 3 * 512
    err = float((r.estimate - x).square().mean())
    assert r.noise_var is not None
    assert err < 1e-3 and err <= 3 * float(r.noise_var.mean()) + 1e-9
    with pytest.raises(MegenError, match="MCS"):
        send_seed(x, IDEAL, _gen(), codec="digital", uses=64)


def test_digital_fills_a_small_budget_coarsely() -> None:
    x = _prior_latents(2, seed=12)
    small = send_seed(x, IDEAL, _gen(), codec="digital", uses=32, mcs=Mcs("qpsk", 0.5))
    large = send_seed(x, IDEAL, _gen(), codec="digital", uses=512, mcs=Mcs("qpsk", 0.5))
    assert small.channel_uses <= 2 * 32
    assert float((small.estimate - x).square().mean()) > float((large.estimate - x).square().mean())


def test_digital_block_failure_is_per_item() -> None:
    """A lost block puts only its own item in outage (it keeps the prior mean), not the whole batch."""
    x = _prior_latents(12, seed=12)
    ch = ChannelConfig(kind="awgn", snr_db=6.5)
    r = send_seed(x, ch, _gen(), codec="digital", uses=128, mcs=Mcs("16qam", 0.5))
    assert len(r.item_ok) == 12 and 0 < sum(r.item_ok) < 12 and r.ok == all(r.item_ok)
    prior = load_prior("tiny", SHAPE)
    lost = [b for b in range(12) if not r.item_ok[b]]
    mean = prior.latents(prior.moments(torch.ones(1, dtype=torch.float64))[0]).reshape(SHAPE).float()
    for b in lost:
        torch.testing.assert_close(r.estimate[b], mean, atol=1e-4, rtol=0)
    from megen.protocols.links import LinkSet

    cfg = RunConfig.from_paths(
        {"seed_codec": "digital", "seed_uses": 128, "mcs": "16qam-0.5", "snr_db": 6.5, "harq": "off"}
    )
    sent = LinkSet(cfg.links).send("latent", x, "analog", "uplink", _gen())
    assert sent.item_ok == r.item_ok


def test_digital_seed_uses_the_links_harq_and_counts_every_transmission() -> None:
    """HARQ (IR, 4 transmissions) recovers the blocks one transmission loses; each retransmission costs
    the first transmission's uses again, and ``harq=off`` is the single-shot codec bit for bit."""
    from megen.link.harq import Harq

    x = _prior_latents(12, seed=12)
    ch = ChannelConfig(kind="awgn", snr_db=6.5)
    args = {"codec": "digital", "uses": 128, "mcs": Mcs("16qam", 0.5)}
    once = send_seed(x, ch, _gen(), **args)
    off = send_seed(x, ch, _gen(), **args, harq=Harq("off"))
    torch.testing.assert_close(off.estimate, once.estimate, atol=0, rtol=0)
    assert off.item_ok == once.item_ok and off.channel_uses == once.channel_uses and off.transmissions == 12
    ir = send_seed(x, ch, _gen(), **args, harq=Harq("ir", 4))
    assert sum(once.item_ok) < 12 and all(ir.item_ok) and ir.ok
    retransmitted = ir.transmissions - 12
    assert retransmitted >= 12 - sum(once.item_ok)
    # the first round is the single-shot one; each retransmission repeats a block of <= 128 uses
    assert once.channel_uses <= 12 * 128
    assert retransmitted < ir.channel_uses - once.channel_uses <= retransmitted * 128
    assert float((ir.estimate - x).square().mean()) < float((once.estimate - x).square().mean())
    from megen.protocols.links import LinkSet

    cfg = RunConfig.from_paths({"seed_codec": "digital", "seed_uses": 128, "mcs": "16qam-0.5", "snr_db": 6.5})
    sent = LinkSet(cfg.links).send("latent", x, "analog", "uplink", _gen())
    assert sent.ok and sent.transmissions == ir.transmissions and sent.channel_uses == ir.channel_uses


# ---------------------------------------------------------------- water-filling over fading blocks
def test_waterfilling_beats_uniform_on_fading() -> None:
    """Same latents, same fading draws (4 x 32 items, 8 blocks each): MSE-optimal block powers win."""
    ch = ChannelConfig(kind="rayleigh", snr_db=20.0, coherence_symbols=16)
    mse = dict.fromkeys(("uniform", "waterfilling"), 0.0)
    for draw in range(4):
        x = _prior_latents(32, seed=draw)
        for power in mse:
            r = send_seed(x, ch, _gen(100 + draw), codec="identity", power=power)
            mse[power] += float((r.estimate - x).square().mean()) / 4
    assert mse["waterfilling"] < 0.95 * mse["uniform"], mse


# ---------------------------------------------------------------- learned (deep JSCC) encoder
def test_learned_encoder_power_exact_and_starts_as_linear() -> None:
    from megen.link.seed_learned import SeedDecoderNet, SeedEncoderNet
    from megen.training.seed_codec import beats_linear, jscc_pass

    prior = load_prior("tiny", SHAPE)
    x = _prior_latents(8, seed=3)
    enc, dec = SeedEncoderNet(prior.numel, (16, 64)), SeedDecoderNet(prior.numel)
    # untrained (zero heads): exactly the linear transmitter and the linear MMSE receiver
    r = jscc_pass(prior, enc, dec, x, 64, 5.0, _gen(4))
    torch.testing.assert_close(r.learned, r.linear, atol=1e-5, rtol=0)
    assert r.learned.shape == r.target.shape == (8, prior.numel) and r.predicted.shape == (8,)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=_gen(5)))
        base = torch.randn(8, 32, generator=_gen(6))
        out = enc(torch.randn(8, prior.numel, generator=_gen(7)), torch.full((8,), 3.0), torch.ones(8), base)
    # a perturbed encoder still sends exactly unit average power per channel use, per image
    torch.testing.assert_close(out.square().sum(1) / 16, torch.ones(8), atol=1e-5, rtol=0)
    assert not beats_linear({}) and beats_linear({"a": {"linear": 0.2, "jscc": 0.1}})
    assert not beats_linear({"a": {"linear": 0.2, "jscc": 0.1}, "b": {"linear": 0.2, "jscc": 0.3}})


def test_training_writes_prior_decoder_and_encoder_report(tmp_path) -> None:
    from safetensors.torch import load_file

    from megen.link.seed_learned import load_jscc
    from megen.training.seed_codec import SeedCodecTrainConfig, train_seed_codec

    x = _prior_latents(300, seed=8)
    cfg = SeedCodecTrainConfig(steps=3, encoder_steps=3, batch_size=16, tile_steps=0)
    out = tmp_path / "seed_codec.safetensors"
    report = train_seed_codec(x[:260], x[260:], out, cfg, log=lambda _: None)
    assert len(report.jscc_mse) == len(report.jscc_mse_noisy) == 20 and len(report.jscc_ideal) == 4
    assert all(v["linear"] > 0 and v["reported"] > 0 for v in report.jscc_mse.values())
    tensors = load_file(str(out))
    assert {"mean", "basis", "eigvals"} <= set(tensors) and any(k.startswith("decoder.") for k in tensors)
    pair = load_jscc(tensors, 256)  # the learned encoder and its decoder are always stored
    assert pair is not None and pair[0].budgets == (16, 32, 64, 128, 256, 512)


@pytest.mark.parametrize("uses", [16, 64, 128, 512])
def test_learned_power_constraint_exact_per_image(uses: int) -> None:
    """The shipped learned transmitter: exactly unit average power per channel use, per image."""
    from megen.link.seed_codecs import _learned, learned_symbols

    prior = load_prior("tiny", SHAPE)
    x = _prior_latents(6, seed=11) * torch.linspace(0.1, 10.0, 6).view(-1, 1, 1, 1)
    encoder, _ = _learned("tiny", SHAPE, uses)
    for snr_db in (-10.0, 5.0, 20.0, math.inf):
        noise = 10 ** (-snr_db / 10) / 2
        enc = learned_symbols(encode_analog(x, prior, uses, noise), x, prior, encoder, snr_db)
        assert enc.symbols.shape == (6, uses)
        power = enc.symbols.abs().square().mean(dim=1)
        torch.testing.assert_close(power, torch.ones(6, dtype=power.dtype), atol=1e-12, rtol=0)


def test_learned_error_at_infinite_snr_is_reported_and_bounded() -> None:
    """The learned codec is not exactly invertible: its ideal-link latent MSE is printed and small."""
    x = _real_latents(32)
    for uses, bound in ((128, 1e-4), (512, 1e-4), (16, 0.1)):
        lin = send_seed(x, IDEAL, _gen(), codec="linear", uses=uses)
        lrn = send_seed(x, IDEAL, _gen(), codec="learned", uses=uses)
        mse_lin = float((lin.estimate - x).square().mean())
        mse_lrn = float((lrn.estimate - x).square().mean())
        print(f"infinite SNR, {uses} uses: latent MSE linear {mse_lin:.2e}, learned {mse_lrn:.2e}")
        assert mse_lrn < bound and lrn.noise_var is not None and bool(torch.isfinite(lrn.noise_var).all())
    assert mse_lrn < 1.5 * mse_lin  # 16 uses: both drop the same weak components


def test_learned_without_encoder_or_budget_is_one_line_error(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    from megen.link.seed_prior import weights_path

    tensors = load_file(str(weights_path("tiny")))
    save_file({k: v for k, v in tensors.items() if not k.startswith(("encoder.", "jscc_decoder."))},
              str(tmp_path / "seed_codec.safetensors"))  # fmt: skip
    with pytest.raises(MegenError, match="hold no learned encoder") as info:
        send_seed(_prior_latents(1), IDEAL, _gen(), codec="learned", uses=64, model=str(tmp_path))
    assert "\n" not in str(info.value)
    send_seed(_prior_latents(1), IDEAL, _gen(), codec="linear", uses=64, model=str(tmp_path))  # still works
    with pytest.raises(MegenError, match="budgets 16, 32, 64, 128, 256, 512 channel uses, not 100"):
        send_seed(_prior_latents(1), IDEAL, _gen(), codec="learned", uses=100)


# ---------------------------------------------------------------- config, sweep axes, CLI
def test_config_shorthands_and_sweep_axes() -> None:
    cfg = RunConfig.from_paths({"seed_codec": "linear", "seed_uses": 64, "seed_power": "waterfilling"})
    assert cfg.links.uplink.codec.seed == "linear" and cfg.links.backhaul.codec.seed_uses == 64
    flat = cfg.flat()
    assert flat["seed_codec"] == "linear" and flat["seed_uses"] == 64
    axes = parse_assignments(["seed_codec=linear,learned", "seed_uses=64,128,512"], lists=True)
    assert axes == {"links.*.codec.seed": ["linear", "learned"], "links.*.codec.seed_uses": [64, 128, 512]}
    from megen.experiments.spec import expand, spec_from_flags

    spec = spec_from_flags(
        protocols="UIEG", channels="awgn", snr_db="0", transmissions="analog", samples=2, seeds="0",
        model="tiny-random", extra=axes,
    )  # fmt: skip
    points = expand(spec)
    got = {(p.config.flat()["seed_codec"], p.config.flat()["seed_uses"]) for p in points}
    assert got == {(c, u) for c in ("linear", "learned") for u in (64, 128, 512)}


def _cli_error(args: list[str], tmp_path) -> str:
    cmd = [sys.executable, "-m", "megen.cli.main", "generate", "-p", "a photo of a bag", "--protocol", "UIEG",
           "--steps", "2", *args, "--out", str(tmp_path / "x.png")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_cli_bad_budget_exits_2_with_one_line(tmp_path) -> None:
    assert "16..512" in _cli_error(["--seed-codec", "linear", "--seed-uses", "8"], tmp_path)


def test_cli_model_without_learned_weights_exits_2_with_one_line(tmp_path) -> None:
    """A model folder whose seed-codec weights hold no learned encoder: exit 2, one line."""
    import shutil

    from safetensors.torch import load_file, save_file

    from megen.models.tiny import packaged_weights_dir

    model = tmp_path / "model"
    shutil.copytree(packaged_weights_dir(), model)
    tensors = load_file(str(model / "seed_codec.safetensors"))
    save_file({k: v for k, v in tensors.items() if not k.startswith(("encoder.", "jscc_decoder."))},
              str(model / "seed_codec.safetensors"))  # fmt: skip
    args = ["--model", str(model), "--seed-codec", "learned", "--seed-uses", "64", "--snr-db", "0"]
    assert "hold no learned encoder" in _cli_error(args, tmp_path)


def test_docstring_examples() -> None:
    import doctest

    import megen.link.seed_codecs as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
