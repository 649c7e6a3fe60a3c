"""``megen generate`` / ``megen protocols`` from the command line: outputs and exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from megen.cli import generate as gen_cli
from megen.cli import protocols as proto_cli

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    gen_cli.register(a)
    proto_cli.register(a)
    return a


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _one_line_error(result) -> str:
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert "Error:" in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "   "], "prompt is empty"),
        (["--prompt", "a bag", "--strength", "1.5"], "strength"),
        (["--prompt", "a bag", "--strength", "nan"], "strength"),
        (["--prompt", "a bag", "--steps", "0"], "steps"),
        (["--prompt", "a bag", "--guidance", "-1"], "guidance"),
        (["--prompt", "a bag", "--model", "/nonexistent/model"], "/nonexistent/model"),
        (["--prompt", "a bag", "--image", "/nonexistent.png"], "not found"),
        (["--prompt", "a bag", "--num-images", "0"], "num-images"),
        (["--prompt", "caf\udce9 bag"], "not valid UTF-8"),
        (["--prompt", "a bag", "--guidance", "1e30"], "guidance"),
        (["--prompt", "a bag", "--seed", str(2**63)], "seed"),
        (["--prompt", "a bag", "--set", "links.*.snr_db=[/bold]"], "[/bold]"),
        (["--prompt", "a [/bold] bag", "--protocol", "nope"], "unknown protocol"),
    ],
)
def test_bad_input_exits_2(app, runner, args, message):
    result = runner.invoke(app, ["generate", *args])
    assert message in _one_line_error(result)


def test_corrupt_image_exits_2(app, runner, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    result = runner.invoke(app, ["generate", "--prompt", "a bag", "--image", str(bad), "--steps", "2"])
    assert "not a valid image" in _one_line_error(result)


def test_protocol_errors_exit_2(app, runner):
    base = ["generate", "--prompt", "a photo of a bag", "--steps", "4"]
    assert "unknown protocol" in _one_line_error(runner.invoke(app, [*base, "--protocol", "XYZ"]))
    assert "edge servers" in _one_line_error(
        runner.invoke(app, [*base, "--protocol", "UIDG", "--num-es", "1"])
    )
    assert "split-step" in _one_line_error(
        runner.invoke(app, [*base, "--protocol", "CIAG", "--split-step", "9"])
    )
    assert "channel" in _one_line_error(runner.invoke(app, [*base, "--protocol", "CIAG", "--channel", "foo"]))
    prof = "/nonexistent/profiles.toml"
    assert "profile" in _one_line_error(runner.invoke(app, [*base, "--protocol", "CIAG", "--profiles", prof]))


def test_bad_profile_fields_exit_2(app, runner, tmp_path):
    from megen.costs.profiles import default_profiles_path

    text = default_profiles_path().read_text()
    neg = tmp_path / "neg.toml"
    neg.write_text(text.replace("power_w = 5.0", "power_w = -5.0"))
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace("bandwidth_hz = 1.0e8", ""))
    base = ["generate", "--prompt", "a photo of a bag", "--steps", "2", "--protocol", "EIUG", "--profiles"]
    assert "power_w" in _one_line_error(runner.invoke(app, [*base, str(neg)]))
    assert "bandwidth_hz" in _one_line_error(runner.invoke(app, [*base, str(missing)]))


def test_generate_writes_image_and_json(app, runner, tmp_path):
    out = tmp_path / "img.png"
    result = runner.invoke(
        app, ["generate", "--prompt", "a photo of a sneaker", "--steps", "3", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.exists() and data["prompt_classes"] == ["sneaker"] and data["protocol"] == "unsplit"


def test_generate_with_protocol_json_keys(app, runner, tmp_path, tiny_reference_png):
    out = tmp_path / "p.png"
    result = runner.invoke(
        app,
        [
            "generate", "--prompt", "a photo of a dress", "--steps", "4", "--protocol", "CIAG",
            "--channel", "rayleigh", "--snr-db", "3", "--image", str(tiny_reference_png), "--out", str(out), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "protocol",
        "channel",
        "snr_db",
        "channel_uses",
        "payload_bits",
        "flops",
        "latency_s",
        "energy_j",
    ):
        assert key in data
    for key in ("uplink", "downlink", "backhaul", "total"):
        assert isinstance(data["channel_uses"][key], int)
        assert isinstance(data["payload_bits"][key], int)
    for key in ("psnr_fidelity_db", "ssim_fidelity", "prompt_match"):
        assert key in data["quality"]
    assert out.exists()


def test_protocols_lists_all(app, runner):
    result = runner.invoke(app, ["protocols", "--json"])
    assert result.exit_code == 0
    names = [json.loads(line)["protocol"] for line in result.stdout.strip().splitlines()]
    assert names == [
        "central",
        "central-es",
        "central-fallback",
        "local",
        "local-upload",
        "local-i2i",
        "local-i2i-upload",
        "unsplit",
        "EIUG",
        "UIEG",
        "CIAG",
        "ESUC",
        "UIDG",
        "DIUG",
        "DSUC",
        "UIDCG",
        "DCSUC",
    ]
