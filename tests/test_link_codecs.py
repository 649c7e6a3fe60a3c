"""Source codecs on the digital link: seed quantiser, JPEG/WebP/PNG, and the decoding-failure fallback."""

from __future__ import annotations

import pytest
import torch

from megen.errors import MegenError
from megen.link.channels import ChannelConfig
from megen.link.codecs import (
    FALLBACK_PIXEL,
    IMAGE_CODECS,
    decode_image,
    encode_image,
    pack_codes,
    quantize,
    send_image_digital,
    send_tensor_quantized,
    unpack_codes,
)
from megen.link.modulation import Mcs


def _images(batch: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    noise = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool2d(noise, 5, 1, 2)  # smooth, image-like


@pytest.mark.parametrize("bits", [1, 4, 8, 12, 16])
def test_quantiser_error_within_half_step(bits: int) -> None:
    x = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(bits)) * torch.tensor(
        [1.0, 10.0, 0.01]
    ).view(3, 1, 1, 1)
    q = quantize(x, bits)
    assert int(q.codes.max()) <= 2**bits - 1 and int(q.codes.min()) >= 0
    err = (q.dequantize() - x).abs().reshape(3, -1).amax(dim=1)
    assert torch.all(err <= q.step * 0.5 + 1e-6 * x.reshape(3, -1).abs().amax(dim=1))


@pytest.mark.parametrize("bits", [1, 3, 8, 11, 16])
def test_pack_unpack_roundtrip(bits: int) -> None:
    codes = torch.randint(0, 2**bits, (37,), generator=torch.Generator().manual_seed(bits))
    data = pack_codes(codes, bits)
    assert len(data) == -(-37 * bits // 8)
    assert torch.equal(unpack_codes(data, bits, 37), codes)


def test_constant_tensor_quantises_exactly() -> None:
    x = torch.full((2, 10), 3.5)
    assert torch.equal(quantize(x, 4).dequantize(), x)


def test_quantized_link_ideal_and_accounting() -> None:
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    res = send_tensor_quantized(x, 6, Mcs("16qam", 0.5), ChannelConfig("none"), torch.Generator())
    assert torch.equal(res.received, quantize(x, 6).dequantize())
    assert bool(res.ok.all()) and bool(res.header_ok.all())
    assert res.info_bits == 3 * 8 * (-(-256 * 6 // 8))
    assert res.header_bits == 3 * (32 + 64)
    assert res.channel_uses == sum(item.channel_uses for item in res.items)


def test_quantized_link_failure_gives_zeros_not_garbage() -> None:
    x = torch.randn(2, 256, generator=torch.Generator().manual_seed(2))
    res = send_tensor_quantized(
        x, 8, Mcs("256qam", 0.9), ChannelConfig("awgn", 0.0), torch.Generator().manual_seed(3)
    )
    assert not bool(res.ok.any()) and not bool(res.header_ok.any())
    assert torch.equal(res.received, torch.zeros_like(x))


@pytest.mark.parametrize("codec", IMAGE_CODECS)
@pytest.mark.parametrize("channels", [1, 3])
def test_image_codecs_roundtrip(codec: str, channels: int) -> None:
    image = _images(1, channels)[0]
    data = encode_image(image, codec, 90)
    decoded, ok = decode_image(data, channels, 32, 32, codec=codec, quality=90)
    assert ok and decoded.shape == image.shape and decoded.dtype == torch.float32
    tolerance = 0.5 / 255 + 1e-6 if codec == "png" else 0.1
    assert float((decoded - image).abs().mean()) <= tolerance


def test_jpeg_quality_controls_size() -> None:
    image = _images(1, 3, 64)[0]
    assert len(encode_image(image, "jpeg", 20)) < len(encode_image(image, "jpeg", 95))


@pytest.mark.parametrize("data", [b"", b"not an image at all", bytes(300)])
def test_undecodable_bytes_give_fallback(data: bytes) -> None:
    image, ok = decode_image(data, 3, 16, 16)
    assert not ok and torch.equal(image, torch.full((3, 16, 16), FALLBACK_PIXEL))


def test_truncated_or_wrong_size_image_gives_fallback() -> None:
    data = encode_image(_images(1, 1)[0], "jpeg", 75)
    assert not decode_image(data[: len(data) // 3], 1, 32, 32)[1]
    assert not decode_image(data, 1, 16, 32)[1]


def test_image_link_ideal_matches_codec() -> None:
    images = _images(3, 1)
    res = send_image_digital(images, "jpeg", 75, Mcs("qpsk", 0.5), ChannelConfig("none"), torch.Generator())
    assert bool(res.ok.all()) and bool(res.decoded.all())
    for i in range(3):
        assert torch.equal(res.images[i], decode_image(encode_image(images[i], "jpeg", 75), 1, 32, 32)[0])
    assert res.info_bits == 8 * sum(res.payload_bytes)
    assert res.header_bits == 3 * 32


def test_jpeg_corrupted_by_channel_errors_falls_back_to_grey() -> None:
    images = _images(4, 1, seed=5)
    channel = ChannelConfig("awgn", -5.0)
    res = send_image_digital(
        images, "jpeg", 75, Mcs("16qam", 0.75), channel, torch.Generator().manual_seed(6)
    )
    assert not bool(res.ok.any())  # every image lost blocks (CRC)
    assert not bool(res.decoded.any())  # and none of the corrupted JPEGs could be decoded
    assert torch.equal(res.images, torch.full_like(images, FALLBACK_PIXEL))
    assert res.block_errors == res.blocks


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: encode_image(torch.rand(3, 8, 8), "gif", 75), "unknown image codec"),
        (lambda: encode_image(torch.rand(3, 8, 8), "jpeg", 0), "quality"),
        (lambda: encode_image(torch.rand(3, 8, 8), "jpeg", 101), "quality"),
        (lambda: encode_image(torch.rand(2, 8, 8), "png", 75), "C = 1 or 3"),
        (lambda: encode_image(torch.full((1, 4, 4), float("nan")), "png", 75), "NaN"),
        (lambda: quantize(torch.randn(2, 3), 0), "1..16"),
        (lambda: quantize(torch.randn(2, 3), 17), "1..16"),
        (lambda: quantize(torch.tensor([[1.0, float("inf")]]), 8), "NaN or infinite"),
        (lambda: quantize(torch.zeros(0, 3), 8), "non-empty"),
    ],
)
def test_bad_codec_input_is_a_clear_error(call, match: str) -> None:
    with pytest.raises(MegenError, match=match):
        call()
