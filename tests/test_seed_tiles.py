"""Seed codecs on latent tiles (UIDG, DIUG, DSUC): tile priors, budgets shared by tiles, exactness."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from megen.config import RunConfig
from megen.data import prompt_for
from megen.errors import MegenError
from megen.link.channels import ChannelConfig
from megen.link.seed_codecs import (
    _learned,
    check_budget,
    encode_analog,
    learned_symbols,
    send_seed,
    tile_uses,
)
from megen.link.seed_prior import load_prior, prior_from_latents, tile_prior
from megen.protocols.runner import run_protocol

SHAPE = (4, 8, 8)
IDEAL = ChannelConfig(kind="none")
#: The tiles of the default multi-ES layout (2 ESs, halo 2): UIDG windows, DIUG cores, halo strips.
TILES = [((0, 6), "window"), ((2, 8), "window"), ((0, 4), "core"), ((4, 8), "core"), ((4, 6), "strip")]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _latents(batch: int, seed: int = 0) -> torch.Tensor:
    """Correlated latents ``[batch, 4, 8, 8]``: a random mixing of i.i.d. noise plus a mean."""
    mix = torch.randn(256, 256, generator=_gen(99), dtype=torch.float64) / 16
    eps = torch.randn(batch, 256, generator=_gen(seed), dtype=torch.float64)
    return (eps @ mix.T + torch.linspace(-1, 1, 256, dtype=torch.float64)).reshape(batch, *SHAPE)


def _cov(prior) -> torch.Tensor:
    return (prior.basis * prior.eigvals) @ prior.basis.T


def _tiny_tiles(batch: int, cols: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Latents drawn from the shipped prior, cut to columns ``cols``."""
    prior = load_prior("tiny", SHAPE)
    eps = torch.randn(batch, prior.numel, generator=_gen(seed), dtype=torch.float64)
    flat = prior.mean + (eps * prior.eigvals.sqrt()) @ prior.basis.T
    return flat.reshape(batch, *SHAPE)[..., cols[0] : cols[1]].float().contiguous()


# ---------------------------------------------------------------- unit: tile priors
@pytest.mark.parametrize("cols", [(0, 6), (2, 8), (3, 5), (7, 8)])
def test_tile_prior_is_the_empirical_window_covariance(cols: tuple[int, int]) -> None:
    x = _latents(400)
    whole = prior_from_latents(x)
    tile = tile_prior(whole, cols[1] - cols[0], cols)
    direct = prior_from_latents(x[..., cols[0] : cols[1]])
    assert tile.shape == (4, 8, cols[1] - cols[0])
    torch.testing.assert_close(tile.mean, direct.mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(_cov(tile), _cov(direct), atol=1e-10, rtol=0)
    assert bool((tile.eigvals[:-1] >= tile.eigvals[1:]).all())
    torch.testing.assert_close(tile.basis.T @ tile.basis, torch.eye(tile.numel, dtype=torch.float64))


def test_tile_prior_without_position_is_the_mixture_over_positions() -> None:
    x = _latents(300)
    whole = prior_from_latents(x)
    avg = tile_prior(whole, 6, None)
    parts = [tile_prior(whole, 6, (lo, lo + 6)) for lo in range(3)]
    mean = sum(p.mean for p in parts) / 3
    second = sum(_cov(p) + torch.outer(p.mean, p.mean) for p in parts) / 3
    torch.testing.assert_close(avg.mean, mean)
    torch.testing.assert_close(_cov(avg), second - torch.outer(mean, mean), atol=1e-10, rtol=0)


def test_shipped_tile_priors_are_cached_and_checked() -> None:
    a = load_prior("tiny", (4, 8, 6), (2, 8))
    assert load_prior("tiny", (4, 8, 6), (2, 8)) is a
    full = load_prior("tiny", SHAPE)
    torch.testing.assert_close(a.mean, full.mean.reshape(SHAPE)[..., 2:8].reshape(-1))
    with pytest.raises(MegenError, match="do not fit"):
        load_prior("tiny", (4, 8, 6), (4, 8))
    with pytest.raises(MegenError, match="nor a tile"):
        load_prior("tiny", (4, 4, 6), (0, 6))


# ---------------------------------------------------------------- unit: budgets of tiles
def test_tile_budget_is_its_share_of_the_whole_latents() -> None:
    assert check_budget("linear", 192, 64, whole=256) == 48
    assert check_budget("linear", 64, 16, whole=256) == 4
    assert check_budget("linear", 64, 512, whole=256) == 128
    assert check_budget("identity", 192, 128, whole=256) == 96  # the raw tile
    assert check_budget("identity", 192, None, whole=256) == 96
    assert tile_uses(25, 128, 256) == 13  # halves round up
    with pytest.raises(MegenError, match="16..512"):
        check_budget("linear", 192, 600, whole=256)
    with pytest.raises(MegenError, match="raw seed in 128"):
        check_budget("identity", 64, 32, whole=256)
    # a tile's share must also fit the tile's own 1/8 .. 4x range (one line)
    with pytest.raises(MegenError, match=r"gives a tile of 18 values 1, outside its 2\.\.36") as err:
        check_budget("linear", 18, 16, whole=256)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- theory: power, exactness
@pytest.mark.parametrize(("cols", "kind"), TILES)
@pytest.mark.parametrize("codec", ["identity", "linear", "learned"])
def test_tile_symbols_have_exact_unit_power_per_image(cols, kind, codec) -> None:
    x = _tiny_tiles(5, cols) * torch.linspace(0.2, 5.0, 5).view(-1, 1, 1, 1)
    shape = tuple(x.shape[1:])
    numel = x[0].numel()
    uses = math.ceil(numel / 2) if codec == "identity" else tile_uses(64, numel, 256)
    prior = None if codec == "identity" else load_prior("tiny", shape, cols)
    enc = encode_analog(x, prior, uses, noise=0.05)
    if codec == "learned":
        assert prior is not None
        enc = learned_symbols(enc, x, prior, _learned("tiny", shape, uses)[0], 5.0)
    assert enc.symbols.shape == (5, uses)
    power = enc.symbols.abs().square().mean(dim=1)
    torch.testing.assert_close(power, torch.ones(5, dtype=power.dtype), atol=1e-12, rtol=0)


@pytest.mark.parametrize(("cols", "kind"), TILES)
def test_linear_full_budget_reproduces_the_tile_without_noise(cols, kind) -> None:
    x = _tiny_tiles(4, cols, seed=3)
    r = send_seed(x, IDEAL, _gen(), codec="linear", uses=128, cols=cols)  # the raw whole-latent budget
    assert r.channel_uses == 4 * x[0].numel() // 2  # the tile's raw size
    torch.testing.assert_close(r.estimate, x, atol=1e-4, rtol=0)
    # the position only changes the prior: without it (averaged prior) the tile is still exact
    torch.testing.assert_close(
        send_seed(x, IDEAL, _gen(), codec="linear", uses=128).estimate, x, atol=1e-4, rtol=0
    )


def test_exact_window_prior_beats_the_averaged_one_on_a_noisy_link() -> None:
    cols = (2, 8)
    x = _tiny_tiles(200, cols, seed=5)
    ch = ChannelConfig(kind="awgn", snr_db=0.0)
    exact = send_seed(x, ch, _gen(1), codec="linear", uses=64, cols=cols).estimate
    blind = send_seed(x, ch, _gen(1), codec="linear", uses=64).estimate
    assert float((exact - x).square().mean()) < float((blind - x).square().mean())


# ---------------------------------------------------------------- protocols on tiles
PROMPTS = [prompt_for(7), prompt_for(2)]


@pytest.fixture(scope="module")
def reference():
    from megen.experiments.references import load_references

    return load_references("fashion-mnist").images[:2]


def _run(tiny, reference, **kw):
    base = dict(steps=4, strength=0.6, guidance=3.0, seed=4, channel="none")
    return run_protocol(RunConfig.from_paths({**base, **kw}), PROMPTS, reference, model=tiny)


@pytest.mark.parametrize("protocol", ["UIDG", "DIUG"])
def test_codecs_on_tiles_match_identity_on_the_ideal_link(tiny, reference, protocol) -> None:
    """PSNR (dB) of each codec's images against identity's: linear exact, learned and digital close."""
    base = _run(tiny, reference, protocol=protocol).images
    for codec, uses, bound in [("linear", 128, 60.0), ("learned", 512, 40.0), ("digital", 512, 35.0)]:
        kw = {"mcs": "256qam-0.9"} if codec == "digital" else {}
        img = _run(tiny, reference, protocol=protocol, seed_codec=codec, seed_uses=uses, **kw).images
        psnr = -10 * math.log10(max(float((img - base).square().mean()), 1e-12))
        print(protocol, codec, uses, f"{psnr:.1f} dB")
        assert psnr > bound, (codec, psnr)


@pytest.mark.parametrize(
    ("protocol", "link", "per_image"), [("UIDG", "uplink", 96), ("DIUG", "downlink", 64)]
)
def test_row_channel_uses_add_up_over_tiles(tiny, reference, protocol, link, per_image) -> None:
    """64 more uses per whole latent: UIDG's two 6-column windows (3/4 each) 2 x 48; DIUG's cores 64."""
    a = _run(tiny, reference, protocol=protocol, seed_codec="linear", seed_uses=64).output
    b = _run(tiny, reference, protocol=protocol, seed_codec="linear", seed_uses=128).output
    seeds = [t for t in b.transfers if t.item.startswith("latent@")]
    assert len(seeds) == 2 and {t.link for t in seeds} == {link}
    assert (b.channel_uses()[link] - a.channel_uses()[link]) / len(PROMPTS) == per_image
    # halo strips (the backhaul, 4x8x2 each = 1/4 of a latent) share the budget too: 16 more each
    strips = [t for t in b.transfers if t.item.startswith("halo@")]
    extra = sum(t.channel_uses for t in strips) - sum(
        t.channel_uses for t in a.transfers if t.item.startswith("halo@")
    )
    assert strips and extra == len(strips) * len(PROMPTS) * 16


def test_tile_columns_travel_with_the_item_over_the_wire() -> None:
    """Remote edge servers (megen serve) get a tile's columns with its metadata, strictly checked."""
    from megen.protocols.items import ItemMeta
    from megen.runtime.wire import Packer, Unpacker, WireError

    meta = ItemMeta(step=3, core=True, cols=(2, 8))
    pack = Packer()
    head = pack.meta(meta)
    assert Unpacker(pack.tensors).meta(head) == meta
    assert Unpacker({}).meta({**head, "cols": None}).cols is None
    with pytest.raises(WireError, match=r"meta\.cols"):
        Unpacker({}).meta({**head, "cols": [2, "8"]})


# ---------------------------------------------------------------- cli
def _cli_error(args: list[str], tmp_path) -> str:
    cmd = [sys.executable, "-m", "megen.cli.main", "generate", "-p", "a photo of a bag", "--protocol", "UIDG",
           "--steps", "2", "--channel", "awgn", *args, "--out", str(tmp_path / "x.png")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_cli_tile_budget_out_of_range_exits_2_with_one_line(tmp_path) -> None:
    assert "16..512" in _cli_error(["--seed-codec", "linear", "--seed-uses", "600"], tmp_path)


def test_cli_learned_without_weights_for_a_tile_shape_exits_2_with_one_line(tmp_path) -> None:
    line = _cli_error(["--seed-codec", "learned", "--seed-uses", "64", "--num-es", "3"], tmp_path)
    assert "no learned encoder for tiles 4x8x" in line


# ---------------------------------------------------------------- training
def test_tile_training_keeps_the_whole_latents_tensors_bit_identical(tmp_path) -> None:
    from safetensors.torch import load_file

    from megen.link.seed_learned import load_jscc, tile_prefix
    from megen.link.seed_prior import weights_path
    from megen.training.seed_codec import SeedCodecTrainConfig, add_tile_codecs, tile_columns

    assert tile_columns(8) == {6: [(0, 6), (2, 8)], 4: [(0, 4), (4, 8)], 2: [(4, 6), (2, 4)]}
    x = torch.cat([_tiny_tiles(40, (0, 8), seed=s) for s in (1, 2)])
    out = tmp_path / "seed_codec.safetensors"
    cfg = SeedCodecTrainConfig(batch_size=8, tile_steps=2)
    report = add_tile_codecs(weights_path("tiny"), x[:60], x[60:], out, cfg, log=lambda _: None)
    before, after = load_file(str(weights_path("tiny"))), load_file(str(out))
    for k, v in before.items():
        if not k.startswith("tile"):
            assert torch.equal(after[k], v), k
    for width, budgets in [
        (6, (12, 24, 48, 96, 192, 384)),
        (4, (8, 16, 32, 64, 128, 256)),
        (2, (4, 8, 16, 32, 64, 128)),
    ]:
        pair = load_jscc(after, 32 * width, tile_prefix((4, 8, width)))
        assert pair is not None and pair[0].budgets == budgets
    assert set(report.tile_mse) == {
        "4x8x6@0:6",
        "4x8x6@2:8",
        "4x8x4@0:4",
        "4x8x4@4:8",
        "4x8x2@4:6",
        "4x8x2@2:4",
    }
    assert all(v["linear"] > 0 and v["jscc"] > 0 for r in report.tile_mse.values() for v in r.values())


def test_tile_codecs_train_for_any_layout(tmp_path) -> None:
    """``megen train --seed-codec-tile-layouts 2:1``: the tile shapes of 2 ESs with a 1-column halo."""
    from safetensors.torch import load_file

    from megen.cli.train import tile_layouts
    from megen.errors import MegenError
    from megen.link.seed_learned import load_jscc, tile_prefix
    from megen.link.seed_prior import weights_path
    from megen.training.seed_codec import SeedCodecTrainConfig, add_tile_codecs

    assert tile_layouts("2:2, 4:1") == ((2, 2), (4, 1))
    for bad in ("2", "1:1", "a:b", ","):
        with pytest.raises(MegenError, match="tile-layouts"):
            tile_layouts(bad)
    x = torch.cat([_tiny_tiles(40, (0, 8), seed=s) for s in (1, 2)])
    out = tmp_path / "seed_codec.safetensors"
    cfg = SeedCodecTrainConfig(batch_size=8, tile_steps=2, tile_layouts=((2, 1),))
    report = add_tile_codecs(weights_path("tiny"), x[:60], x[60:], out, cfg, log=lambda _: None)
    after = load_file(str(out))
    for width in (5, 4, 1):  # windows, cores, halo strips
        assert load_jscc(after, 32 * width, tile_prefix((4, 8, width))) is not None, width
    assert {k.split("@")[0] for k in report.tile_mse} == {"4x8x5", "4x8x4", "4x8x1"}
