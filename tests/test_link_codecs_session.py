"""PNG and session JPEG across the link: exactly the bytes counted cross it, and the receiver decodes them."""

from __future__ import annotations

import pytest
import torch

from megen.link.channels import ChannelConfig
from megen.link.codecs import (
    decode_image,
    encode_image,
    jpeg_session_header,
    send_image_digital,
    split_jpeg,
)
from megen.link.mcs import select_mcs


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    smooth = torch.nn.functional.interpolate(torch.rand(3, 1, 8, 8, generator=g), size=32, mode="bilinear")
    return (smooth * 255).round() / 255


@pytest.mark.parametrize("channels", [1, 3])
def test_session_jpeg_sends_only_the_scan_and_decodes_like_jpeg(channels):
    img = torch.rand(channels, 32, 32, generator=torch.Generator().manual_seed(channels))
    full = encode_image(img, "jpeg", 90)
    scan = encode_image(img, "jpeg-session", 90)
    header = jpeg_session_header(90, channels, 32, 32)
    assert full == header + scan + b"\xff\xd9"
    assert split_jpeg(full) == (header, scan)
    plain, ok = decode_image(full, channels, 32, 32)
    session, ok_session = decode_image(scan, channels, 32, 32, codec="jpeg-session", quality=90)
    assert ok and ok_session and torch.equal(plain, session)
    _, ok_wrong = decode_image(scan, channels, 32, 32)  # without the session header: not an image
    assert not ok_wrong


def test_session_header_is_the_same_for_every_image():
    g = torch.Generator().manual_seed(0)
    headers = {split_jpeg(encode_image(torch.rand(1, 32, 32, generator=g), "jpeg", 75))[0] for _ in range(5)}
    assert headers == {jpeg_session_header(75, 1, 32, 32)}


@pytest.mark.parametrize("codec", ["png", "jpeg-session"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0, 20.0])
def test_image_codecs_end_to_end_over_awgn(images, codec, snr_db):
    channel = ChannelConfig("awgn", snr_db)
    mcs = select_mcs(snr_db, channel).mcs
    r = send_image_digital(images, codec, 90, mcs, channel, torch.Generator().manual_seed(int(snr_db) + 50))
    payloads = [encode_image(img, codec, 90) for img in images]
    assert r.info_bits == 8 * sum(len(p) for p in payloads)  # exactly what crosses the link
    assert r.payload_bytes == tuple(len(p) for p in payloads)
    for i in range(len(images)):
        if bool(r.ok[i]):  # every block decoded: the receiver rebuilds the image
            want = (
                images[i]
                if codec == "png"
                else decode_image(payloads[i], 1, 32, 32, codec=codec, quality=90)[0]
            )
            assert bool(r.decoded[i]) and torch.equal(r.images[i], want)
    if snr_db >= 5.0:  # link adaptation aims at 10% BLER per block: most images arrive
        assert bool(r.ok.any())
