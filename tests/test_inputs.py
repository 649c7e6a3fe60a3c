"""Input files the user names: reference images and cost profiles fail with one clear MegenError."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from megen.cli.main import app
from megen.costs.profiles import default_profiles_path, load_profiles
from megen.errors import MegenError
from megen.images import MAX_IMAGE_PIXELS, load_image


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and header that claims ``width x height`` pixels (no real pixel data)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _png(size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 50).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def test_image_is_converted_and_reported(tmp_path) -> None:
    path = tmp_path / "ref.png"
    path.write_bytes(_png((40, 30)))
    image, notes = load_image(path, channels=1, size=16)
    assert image.shape == (1, 1, 16, 16) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert notes == ["converted mode RGB -> L", "centre-cropped to 30x30", "resized 30x30 -> 16x16"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (png_claiming(20_000, 20_000), f"too large: more than {MAX_IMAGE_PIXELS} pixels"),  # PIL's bomb error
        (png_claiming(9_000, 9_000), "too large (9000x9000 pixels)"),  # over megen's own cap
        (_png()[: len(_png()) // 2], "not a valid image file"),
        (_png()[:40], "not a valid image file"),
        (b"\x89PNG\r\n\x1a\nthis is not a png", "not a valid image file"),
        (b"", "not a valid image file"),
    ],
)
def test_bad_images_raise_megen_error(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "ref.png"
    path.write_bytes(content)
    with pytest.raises(MegenError) as info:
        load_image(path, channels=3, size=32)
    assert message in str(info.value) and str(path) in str(info.value)


def test_image_path_errors(tmp_path) -> None:
    with pytest.raises(MegenError, match="not found"):
        load_image(tmp_path / "nope.png", channels=1, size=8)
    with pytest.raises(MegenError, match="is a folder"):
        load_image(tmp_path, channels=1, size=8)


def test_profiles_default_loads() -> None:
    profiles = load_profiles()
    assert profiles.source == "default"
    assert profiles.ue.peak_flops > 0 and set(profiles.links) == {"uplink", "downlink", "backhaul"}


def test_profiles_path_errors(tmp_path) -> None:
    with pytest.raises(MegenError, match="profile file .* is a folder"):
        load_profiles(tmp_path)
    with pytest.raises(MegenError, match="not found"):
        load_profiles(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff")
    with pytest.raises(MegenError, match="not valid TOML"):
        load_profiles(bad)
    good = tmp_path / "p.toml"
    good.write_text(default_profiles_path().read_text())
    assert load_profiles(good).source == str(good)


@pytest.mark.cli
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (png_claiming(20_000, 20_000), "too large"),
        (png_claiming(9_000, 9_000), "too large (9000x9000 pixels)"),
        (_png()[: len(_png()) // 2], "not a valid image"),
    ],
)
def test_bad_reference_image_exits_2_and_writes_nothing(tmp_path, content: bytes, message: str) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(content)
    out = tmp_path / "out.png"
    args = ["generate", "--prompt", "a bag", "--image", str(image), "--steps", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert not out.exists()
