"""Devices and dtypes: resolution rules, CPU-generator noise, and (marked ``cuda``) GPU == CPU results."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from megen.devices import draw_normal, dtype_name, resolve_device, resolve_dtype, to_host
from megen.errors import MegenError
from megen.link.channels import ChannelConfig, transmit_symbols
from megen.link.digital import send_bytes, transmit_bits
from megen.link.modulation import Mcs
from megen.models.registry import load_model
from megen.models.sd import load_stable_diffusion, staged_from_components
from megen.testing import build_random_tiny, build_tiny_sd_components, save_tiny_sd_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src" / "megen"
PROMPTS = ["a photo of a cat", "a red house"]


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---------------------------------------------------------------------------------------------- resolution
def test_cpu_and_auto_resolve_on_this_machine() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = (
        "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device("auto").type == expected


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "", "cuda:", "cuda:x", "cuda:-1", "cpu:0:1", "cuda 0"])
def test_bad_device_specs_are_one_line_errors(spec: str) -> None:
    with pytest.raises(MegenError, match=r"unknown device .*; choose auto, cpu, cuda, cuda:N or mps") as err:
        resolve_device(spec)
    assert "\n" not in str(err.value)


def test_non_text_device_is_rejected() -> None:
    with pytest.raises(MegenError, match="device must be text"):
        resolve_device(0)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_a_gpu_is_an_error(spec: str) -> None:
    with pytest.raises(MegenError, match="not available: this machine has no CUDA GPU"):
        resolve_device(spec)


def test_cuda_index_beyond_the_gpus_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(MegenError, match=r"'cuda:2' is not available: this machine has 2 CUDA GPU\(s\)"):
        resolve_device("cuda:2")


def test_mps_without_the_backend_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(MegenError, match="'mps' is not available"):
        resolve_device("mps")


def test_dtypes_and_the_half_precision_rule() -> None:
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(torch.float32, "cpu") is torch.float32
    cuda = torch.device("cuda")  # a device object is not re-checked for presence
    assert resolve_dtype("float16", cuda) is torch.float16
    assert resolve_dtype("BFloat16", cuda) is torch.bfloat16
    assert resolve_dtype(torch.bfloat16, torch.device("mps")) is torch.bfloat16
    for name in ("float16", "bfloat16", torch.float16):
        with pytest.raises(MegenError, match="runs only on an accelerator"):
            resolve_dtype(name, "cpu")
    with pytest.raises(MegenError, match="unknown dtype 'float64'"):
        resolve_dtype("float64")
    with pytest.raises(MegenError, match="unsupported dtype"):
        resolve_dtype(torch.int8)
    assert [dtype_name(resolve_dtype(n, cuda)) for n in ("float32", "float16", "bfloat16")] == [
        "float32",
        "float16",
        "bfloat16",
    ]


def test_docstring_examples_run() -> None:
    import doctest

    import megen.devices

    result = doctest.testmod(megen.devices, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_noise_comes_from_the_cpu_generator_whatever_the_target() -> None:
    a = draw_normal((3, 4), torch.Generator().manual_seed(7), dtype=torch.float64)
    b = torch.randn((3, 4), generator=torch.Generator().manual_seed(7)).double()
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.device.type == "cpu"
    x = torch.ones(2, 3, dtype=torch.float64)
    host = to_host(x)
    assert host.dtype == torch.float32 and host.device.type == "cpu"
    y = torch.zeros(2)
    assert to_host(y).data_ptr() == y.data_ptr()  # already CPU float32: no copy


def test_no_hard_coded_device_in_the_library() -> None:
    """Devices come from arguments: no ``device="cpu"`` call and no ``torch.device("cuda")`` in src/."""
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in (r'device="cpu"', r'device\("(cpu|cuda)', r"\.cuda\(\)"):
            if path.name != "devices.py" and re.search(pattern, text):
                offenders.append(f"{path.relative_to(SRC)}: {pattern}")
    assert offenders == []


# ---------------------------------------------------------------------------------------------- models
def test_loading_tiny_on_cpu_explicitly_equals_the_default() -> None:
    from megen.models.registry import model_key
    from megen.session import Session

    session = Session()
    default = session.model("tiny")
    explicit = session.model("tiny", device="cpu", dtype="float32")
    assert explicit is default  # one session entry: same device, same dtype
    assert model_key("tiny") == model_key("tiny", device="cpu", dtype="float32")
    assert default.device == torch.device("cpu") and default.dtype == torch.float32
    _, img = default.generate(PROMPTS, num_steps=3, guidance=3.0, seed=1)
    assert img.device.type == "cpu" and img.dtype == torch.float32


@pytest.mark.usefixtures("no_cuda")
def test_model_loading_rejects_unavailable_devices_and_cpu_half_precision() -> None:
    with pytest.raises(MegenError, match="no CUDA GPU"):
        load_model("tiny", device="cuda")
    with pytest.raises(MegenError, match="float16 runs only on an accelerator"):
        load_model("tiny", dtype="float16")
    with pytest.raises(MegenError, match="unknown device"):
        load_model("tiny", device="gpu0")


@pytest.fixture(scope="module")
def sd_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sd_checkpoint(tmp_path_factory.mktemp("tiny-sd"), seed=0)


def test_stable_diffusion_float16_on_cpu_is_rejected(sd_checkpoint: Path) -> None:
    for dtype in ("float16", "bfloat16"):
        with pytest.raises(MegenError, match=f"{dtype} runs only on an accelerator"):
            load_stable_diffusion(sd_checkpoint, dtype=dtype)
        with pytest.raises(MegenError, match=f"{dtype} runs only on an accelerator"):
            load_model(str(sd_checkpoint), dtype=dtype)
    model = load_stable_diffusion(sd_checkpoint, device="cpu")
    assert model.device.type == "cpu" and model.dtype == torch.float32


def test_link_device_argument_on_cpu_changes_nothing() -> None:
    mcs, channel = Mcs("16qam", 0.5), ChannelConfig(kind="rayleigh", snr_db=8.0, csi="estimated")
    bits = torch.randint(0, 2, (3000,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    a = transmit_bits([bits], mcs, channel, torch.Generator().manual_seed(1))[0]
    b = transmit_bits([bits], mcs, channel, torch.Generator().manual_seed(1), device="cpu")[0]
    assert torch.equal(a.bits, b.bits) and torch.equal(a.block_ok, b.block_ok)
    with pytest.raises(MegenError, match="unknown device"):
        send_bytes(b"x", mcs, channel, torch.Generator(), device="gpu")


# ---------------------------------------------------------------------------------------------- CUDA
def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


@pytest.mark.cuda
def test_tiny_model_on_cuda_equals_cpu() -> None:
    cpu = build_random_tiny(seed=0)
    gpu = build_random_tiny(seed=0).to("cuda")
    assert gpu.device.type == "cuda" and gpu.vae.device.type == "cuda"
    assert gpu.classifier is not None and next(gpu.classifier.parameters()).device.type == "cpu"
    z_c, img_c = cpu.generate(PROMPTS, num_steps=6, guidance=3.0, seed=2)
    z_g, img_g = gpu.generate(PROMPTS, num_steps=6, guidance=3.0, seed=2)
    assert z_g.device.type == "cuda" and img_g.device.type == "cpu" and img_g.dtype == torch.float32
    # the initial noise is drawn on the CPU: identical on both devices
    gen = torch.Generator().manual_seed(5)
    noise_g = gpu.noise(None, num_steps=6, strength=None, generator=gen, batch_size=2)
    noise_c = cpu.noise(
        None, num_steps=6, strength=None, generator=torch.Generator().manual_seed(5), batch_size=2
    )
    assert torch.equal(noise_g.cpu(), noise_c)
    assert _max_abs(z_g, z_c) < 1e-3
    assert _max_abs(img_g, img_c) < 1e-3
    assert torch.equal(gpu.classify(img_g), cpu.classify(img_g))


@pytest.mark.cuda
@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-3), ("float16", 5e-2), ("bfloat16", 2e-1)])
def test_tiny_stable_diffusion_on_cuda_equals_cpu(dtype: str, tol: float) -> None:
    cpu = staged_from_components(build_tiny_sd_components(0), name="tiny-sd")
    gpu = staged_from_components(build_tiny_sd_components(0), name="tiny-sd").to(
        resolve_device("cuda"), resolve_dtype(dtype, "cuda")
    )
    assert gpu.dtype == resolve_dtype(dtype, "cuda") and gpu.vae.dtype == torch.float32
    _, img_c = cpu.generate(PROMPTS, num_steps=4, guidance=5.0, seed=1)
    _, img_g = gpu.generate(PROMPTS, num_steps=4, guidance=5.0, seed=1)
    assert img_g.device.type == "cpu" and img_g.dtype == torch.float32
    assert _max_abs(img_g, img_c) < tol


@pytest.mark.cuda
def test_link_noise_on_cuda_is_the_cpu_noise_with_variance_n0() -> None:
    channel = ChannelConfig(kind="awgn", snr_db=3.0)
    n = 200_000
    x = torch.zeros(4, n, dtype=torch.complex64)
    rx_c = transmit_symbols(x, channel, torch.Generator().manual_seed(9))
    rx_g = transmit_symbols(x.cuda(), channel, torch.Generator().manual_seed(9))
    assert rx_g.symbols.device.type == "cuda"
    assert torch.equal(rx_g.symbols.cpu(), rx_c.symbols)
    n0 = channel.noise_variance
    var = float(rx_g.symbols.abs().square().mean())
    # the sample mean of |e|^2 (exponential, std n0) over 4n draws: 5 standard errors
    assert abs(var - n0) < 5 * n0 / math.sqrt(4 * n)
    fading: Any = ChannelConfig(kind="rayleigh", snr_db=10.0, csi="estimated")
    a = transmit_symbols(torch.ones(2, 1000, dtype=torch.complex64), fading, torch.Generator().manual_seed(3))
    b = transmit_symbols(
        torch.ones(2, 1000, dtype=torch.complex64).cuda(), fading, torch.Generator().manual_seed(3)
    )
    assert _max_abs(torch.view_as_real(a.symbols), torch.view_as_real(b.symbols)) < 1e-5


@pytest.mark.cuda
def test_digital_link_on_cuda_decodes_like_cpu() -> None:
    mcs, channel = Mcs("16qam", 0.5), ChannelConfig(kind="awgn", snr_db=12.0)
    payload = bytes(range(256)) * 8
    a = send_bytes(payload, mcs, channel, torch.Generator().manual_seed(4))
    b = send_bytes(payload, mcs, channel, torch.Generator().manual_seed(4), device="cuda")
    assert a.ok and b.ok and b.bytes_received == a.bytes_received == payload
    bits = torch.randint(0, 2, (20000,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    noisy = ChannelConfig(kind="awgn", snr_db=5.0)
    r_c = transmit_bits([bits], mcs, noisy, torch.Generator().manual_seed(1))[0]
    r_g = transmit_bits([bits], mcs, noisy, torch.Generator().manual_seed(1), device="cuda")[0]
    assert r_g.bits.device.type == "cpu"
    assert abs(int((r_g.bits != bits).sum()) - int((r_c.bits != bits).sum())) <= 20


# ---------------------------------------------------------------------------------------------- per node
def test_nodes_share_the_model_object_when_their_devices_match(random_tiny):
    """``device.ue``/``device.es`` naming the model's own device place no copy (CPU runs unchanged)."""
    from megen.session import Session

    session = Session()
    assert session.placed(random_tiny, "cpu", "float32") is random_tiny
    assert session.placed(random_tiny, "auto", "float32") is random_tiny or torch.cuda.is_available()


@pytest.mark.cli
def test_generate_refuses_an_absent_device(tmp_path):
    import typer
    from typer.testing import CliRunner

    from megen.cli import generate as gen_cli

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    app = typer.Typer()
    gen_cli.register(app)
    app.command("x")(lambda: None)
    for flags in (["--device", "cuda"], ["--es-device", "cuda:0"], ["--device", "cpu", "--dtype", "float16"]):
        res = CliRunner().invoke(
            app, ["generate", "--prompt", "a bag", "--steps", "2", "--out", str(tmp_path / "o.png"), *flags]
        )
        assert res.exit_code == 2 and "Error:" in res.output, (flags, res.output)


@pytest.mark.cuda
def test_es_on_cuda_ue_on_cpu_equals_all_cpu(random_tiny):
    """A split run with the edge server on the GPU and the UE on the CPU matches the all-CPU run."""
    from megen.config import RunConfig
    from megen.protocols.runner import run_protocol

    base = {"protocol": "CIAG", "steps": 6, "channel": "awgn", "snr_db": 5.0}
    cpu = run_protocol(RunConfig.from_paths(base), ["a photo of a bag"] * 2, model=random_tiny)
    split = run_protocol(
        RunConfig.from_paths({**base, "es_device": "cuda"}), ["a photo of a bag"] * 2, model=random_tiny
    )
    assert split.images.device.type == "cpu"
    assert torch.allclose(split.images, cpu.images, atol=2e-3)
    assert split.output.channel_uses() == cpu.output.channel_uses()
