"""Source codecs on top of the digital link: a b-bit seed quantiser and JPEG/WebP/PNG images.

``jpeg-session`` is baseline JPEG with its header sent once per session: the markers up to and
including the start-of-scan header (JFIF, quantisation tables from the quality, the standard
Huffman tables, the frame size) depend only on (quality, C, H, W), so both ends derive them from the
session's settings (:func:`jpeg_session_header`) and only the entropy-coded scan data crosses the
link per image (the end-of-image marker is implied too). The bits counted are exactly the scan
bytes (plus the link's framing); the one-off header is not charged to any image.

Images are float tensors ``[B, C, H, W]`` in ``[0, 1]`` with ``C = 1`` (grayscale) or ``C = 3`` (RGB);
the codecs work on 8-bit pixels (``round(255 x)``). A received image that the codec cannot decode is a
real outcome (the cliff effect): it becomes the mid-grey :data:`FALLBACK_PIXEL` image and is flagged,
never an exception.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import torch
from PIL import Image

from megen.errors import MegenError
from megen.images import ImageCodec
from megen.link.channels import ChannelConfig
from megen.link.digital import DigitalResult, send_bytes_batch
from megen.link.harq import NO_HARQ, Harq
from megen.link.modulation import Mcs

IMAGE_CODECS: tuple[str, ...] = get_args(ImageCodec)
FALLBACK_PIXEL = 0.5
"""Value of every pixel of the fallback image (mid-grey)."""
QUANTIZER_HEADER_BYTES = 8
"""Quantiser side information per item: offset and step as two float32."""


@dataclass(frozen=True)
class QuantizedTensor:
    """A tensor quantised to ``bits`` bits per value, with per-item offset and step.

    Attributes:
        codes: int64 ``[B, N]`` in ``[0, 2**bits - 1]`` (``N`` values per item, flattened).
        offset: float32 ``[B]``, the value of code 0 (the item's minimum).
        step: float32 ``[B]``, value spacing ``(max - min) / (2**bits - 1)``.
        bits: Bits per value.
        shape: Shape of the original tensor ``[B, ...]``.
    """

    codes: torch.Tensor
    offset: torch.Tensor
    step: torch.Tensor
    bits: int
    shape: tuple[int, ...]

    def dequantize(self) -> torch.Tensor:
        """float32 tensor of the original shape: ``offset + code * step``."""
        values = self.offset.unsqueeze(1) + self.codes.to(torch.float32) * self.step.unsqueeze(1)
        return values.reshape(self.shape)


@dataclass(frozen=True)
class QuantizedLinkResult:
    """Outcome of :func:`send_tensor_quantized`.

    Attributes:
        received: Reconstructed tensor, same shape and dtype as the input. Items whose header (offset,
            step) failed its CRC or is not finite are zeros.
        ok: bool ``[B]``: every code block of the item passed its CRC.
        header_ok: bool ``[B]``: the received offset and step passed their CRC and are finite.
        channel_uses: Total complex channel uses of the batch (data + pilots).
        info_bits: Total payload bits (the packed codes).
        header_bits: Total header bits (32-bit length + 64-bit offset/step per item).
        blocks: Total code blocks; ``block_errors`` of them failed their CRC.
        block_errors: See ``blocks``.
        items: Per-item :class:`~megen.link.digital.DigitalResult`.
    """

    received: torch.Tensor
    ok: torch.Tensor
    header_ok: torch.Tensor
    channel_uses: int
    info_bits: int
    header_bits: int
    blocks: int
    block_errors: int
    items: tuple[DigitalResult, ...]


@dataclass(frozen=True)
class ImageLinkResult:
    """Outcome of :func:`send_image_digital`.

    Attributes:
        images: float32 ``[B, C, H, W]`` in ``[0, 1]``; mid-grey where decoding failed.
        ok: bool ``[B]``: every code block of the image passed its CRC.
        decoded: bool ``[B]``: the codec decoded the received bytes (False: fallback image used).
        payload_bytes: Compressed size of each image, in bytes.
        channel_uses: Total complex channel uses of the batch (data + pilots).
        info_bits: Total compressed-image bits.
        header_bits: Total header bits (32-bit length per image).
        blocks: Total code blocks; ``block_errors`` of them failed their CRC.
        block_errors: See ``blocks``.
        items: Per-image :class:`~megen.link.digital.DigitalResult`.
    """

    images: torch.Tensor
    ok: torch.Tensor
    decoded: torch.Tensor
    payload_bytes: tuple[int, ...]
    channel_uses: int
    info_bits: int
    header_bits: int
    blocks: int
    block_errors: int
    items: tuple[DigitalResult, ...]


def quantize(x: torch.Tensor, bits: int) -> QuantizedTensor:
    """Uniform quantiser with per-item (``x[b]``) offset and step.

    Args:
        x: Real tensor ``[B, ...]`` with finite values.
        bits: Bits per value, 1..16.

    Returns:
        :class:`QuantizedTensor`; ``dequantize()`` is within ``step / 2`` of ``x``.
    """
    _check_bits(bits)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1 or x.numel() == 0:
        raise MegenError("quantize needs a non-empty real floating-point tensor [B, ...]")
    flat = x.detach().reshape(x.shape[0], -1).to(torch.float32).cpu()
    if not bool(torch.isfinite(flat).all()):
        raise MegenError("tensor to quantize contains NaN or infinite values")
    lo = flat.amin(dim=1)
    hi = flat.amax(dim=1)
    levels = (1 << bits) - 1
    step = (hi - lo) / levels
    safe = torch.where(step > 0, step, torch.ones_like(step))
    codes = torch.round((flat - lo.unsqueeze(1)) / safe.unsqueeze(1)).clamp_(0, levels).to(torch.int64)
    return QuantizedTensor(codes, lo, step, bits, tuple(x.shape))


def pack_codes(codes: torch.Tensor, bits: int) -> bytes:
    """Pack non-negative integer codes ``[N]`` into bytes, ``bits`` bits each, MSB first."""
    _check_bits(bits)
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    bit_matrix = (codes.reshape(-1, 1).to(torch.int64) >> shifts) & 1
    return np.packbits(bit_matrix.to(torch.uint8).numpy().reshape(-1)).tobytes()


def unpack_codes(data: bytes, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int64 ``[count]``."""
    _check_bits(bits)
    raw = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    if raw.size < count * bits:
        raise MegenError(f"{len(data)} bytes hold fewer than {count} codes of {bits} bits")
    bit_matrix = torch.from_numpy(raw.astype(np.int64)).view(count, bits)
    weights = 1 << torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    return (bit_matrix * weights).sum(dim=1)


def send_tensor_quantized(
    x: torch.Tensor,
    bits: int,
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    *,
    harq: Harq = NO_HARQ,
    device: str | torch.device = "cpu",
) -> QuantizedLinkResult:
    """Quantise each item of ``x`` to ``bits`` bits per value and send it digitally.

    Each item is one transport block: ``[length | offset, step (2 x float32) | packed codes]``.

    Args:
        x: Real tensor ``[B, ...]`` (e.g. a batch of seeds / initial latents).
        bits: Bits per value, 1..16.
        mcs: Modulation and coding scheme.
        channel: Channel and receiver settings.
        generator: Source of randomness.
        harq: Retransmission policy of each transport block (default: one transmission).
        device: Where the link chain runs (default the CPU; see :func:`~megen.link.digital.transmit_bits`).

    Returns:
        :class:`QuantizedLinkResult`; ``received`` is on ``x``'s device, the flags on the CPU.
    """
    q = quantize(x, bits)
    batch, count = q.codes.shape
    payloads = [pack_codes(q.codes[b], bits) for b in range(batch)]
    headers = [struct.pack(">ff", float(q.offset[b]), float(q.step[b])) for b in range(batch)]
    items = send_bytes_batch(payloads, mcs, channel, generator, headers=headers, harq=harq, device=device)
    values = torch.zeros(batch, count, dtype=torch.float32)
    header_ok = torch.zeros(batch, dtype=torch.bool)
    for b, item in enumerate(items):
        offset, step = struct.unpack(">ff", item.header_received)
        if not (item.header_ok and math.isfinite(offset) and math.isfinite(step) and step >= 0.0):
            continue
        codes = unpack_codes(item.bytes_received, bits, count)
        recon = QuantizedTensor(
            codes.unsqueeze(0), torch.tensor([offset]), torch.tensor([step]), bits, (1, count)
        ).dequantize()[0]
        if not bool(torch.isfinite(recon).all()):
            continue
        values[b] = recon
        header_ok[b] = True
    return QuantizedLinkResult(
        received=values.reshape(x.shape).to(device=x.device, dtype=x.dtype),
        ok=torch.tensor([item.ok for item in items], dtype=torch.bool),
        header_ok=header_ok,
        **_totals(items),
    )


def encode_image(image: torch.Tensor, codec: str, quality: int = 75) -> bytes:
    """Compress one image.

    Args:
        image: float ``[C, H, W]`` in ``[0, 1]`` with ``C`` 1 or 3 (values are clipped, then rounded to
            8 bits).
        codec: ``jpeg``, ``jpeg-session`` (the scan data only), ``webp`` or ``png`` (lossless;
            ``quality`` is ignored).
        quality: 1..100.

    Returns:
        The compressed bytes (what crosses the link).
    """
    _check_codec(codec, quality)
    if codec == "jpeg-session":
        full = encode_image(image, "jpeg", quality)
        header, scan = split_jpeg(full)
        if header != jpeg_session_header(quality, *image.shape):
            raise MegenError("internal: this JPEG encoder's header depends on the image content")
        return scan
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise MegenError("image must be a tensor [C, H, W] with C = 1 or 3")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise MegenError(f"image has an empty side: {tuple(image.shape)}")
    if not bool(torch.isfinite(image).all()):
        raise MegenError("image contains NaN or infinite values")
    pixels = (image.detach().cpu().to(torch.float32).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    pil = (
        Image.fromarray(array[:, :, 0], mode="L")
        if image.shape[0] == 1
        else Image.fromarray(array, mode="RGB")
    )
    buffer = io.BytesIO()
    if codec == "jpeg":
        pil.save(buffer, format="JPEG", quality=quality)
    elif codec == "webp":
        pil.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        pil.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


JPEG_SOI, JPEG_SOS, JPEG_EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"


def split_jpeg(data: bytes) -> tuple[bytes, bytes]:
    """Split a baseline JPEG file into its header (SOI up to the end of the SOS segment) and its scan
    data (without the final EOI marker).

    Raises:
        MegenError: ``data`` is not a JPEG file with one scan.
    """
    if not data.startswith(JPEG_SOI) or not data.endswith(JPEG_EOI):
        raise MegenError("not a complete JPEG file")
    pos = len(JPEG_SOI)
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos : pos + 2], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        pos += 2 + length
        if marker == JPEG_SOS:
            return data[:pos], data[pos : -len(JPEG_EOI)]
    raise MegenError("JPEG file without a start-of-scan segment")


@functools.lru_cache(maxsize=64)
def jpeg_session_header(quality: int, channels: int, height: int, width: int) -> bytes:
    """The JPEG header both ends of a ``jpeg-session`` link derive from the session's settings (bytes).

    Example:
        >>> len(jpeg_session_header(90, 1, 32, 32)) > 300
        True
    """
    return split_jpeg(encode_image(torch.zeros(channels, height, width), "jpeg", quality))[0]


def decode_image(
    data: bytes, channels: int, height: int, width: int, *, codec: str | None = None, quality: int = 75
) -> tuple[torch.Tensor, bool]:
    """Decompress one image; never raises on corrupted data.

    Args:
        data: Compressed bytes (possibly corrupted by the channel).
        channels: Expected ``C`` (1 or 3).
        height: Expected ``H``.
        width: Expected ``W``.
        codec: ``jpeg-session``: ``data`` is the scan data only; the session header (from ``quality``
            and the size) and the end marker are put around it. Other codecs: self-describing files.
        quality: The session's JPEG quality (``jpeg-session`` only).

    Returns:
        ``(image, decoded)``: float32 ``[C, H, W]`` in ``[0, 1]`` and True, or the mid-grey fallback
        and False when the bytes do not decode to an image of the expected size.
    """
    fallback = torch.full((channels, height, width), FALLBACK_PIXEL, dtype=torch.float32)
    if codec == "jpeg-session":
        data = jpeg_session_header(quality, channels, height, width) + data + JPEG_EOI
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as pil:
                if pil.size != (
                    width,
                    height,
                ):  # check before decoding: corrupted headers can claim huge sizes
                    return fallback, False
                pil.load()
                converted = pil.convert("L" if channels == 1 else "RGB")
                array = np.array(converted, dtype=np.uint8)
    except Exception:  # any decoder failure (OSError, SyntaxError, ValueError, ...) is a link outcome
        return fallback, False
    if array.ndim == 2:
        array = array[:, :, None]
    image = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32) / 255.0
    return image.contiguous(), True


def send_image_digital(
    images: torch.Tensor,
    codec: str,
    quality: int,
    mcs: Mcs,
    channel: ChannelConfig,
    generator: torch.Generator,
    *,
    harq: Harq = NO_HARQ,
    device: str | torch.device = "cpu",
) -> ImageLinkResult:
    """Compress each image, send it as one transport block, and decode what arrives.

    Args:
        images: float ``[B, C, H, W]`` in ``[0, 1]``, ``C`` 1 or 3.
        codec: ``jpeg``, ``jpeg-session``, ``webp`` or ``png``.
        quality: Codec quality 1..100 (ignored by PNG).
        mcs: Modulation and coding scheme.
        channel: Channel and receiver settings.
        generator: Source of randomness.
        harq: Retransmission policy of each transport block (default: one transmission).
        device: Where the link chain runs (default the CPU; see :func:`~megen.link.digital.transmit_bits`).

    Returns:
        :class:`ImageLinkResult` (CPU tensors).
    """
    _check_codec(codec, quality)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] < 1:
        raise MegenError("images must be a tensor [B, C, H, W]")
    _, channels, height, width = images.shape
    payloads = [encode_image(img, codec, quality) for img in images]
    items = send_bytes_batch(payloads, mcs, channel, generator, harq=harq, device=device)
    decoded_images = []
    decoded = []
    for item in items:
        image, good = decode_image(item.bytes_received, channels, height, width, codec=codec, quality=quality)
        decoded_images.append(image)
        decoded.append(good)
    return ImageLinkResult(
        images=torch.stack(decoded_images),
        ok=torch.tensor([item.ok for item in items], dtype=torch.bool),
        decoded=torch.tensor(decoded, dtype=torch.bool),
        payload_bytes=tuple(len(p) for p in payloads),
        **_totals(items),
    )


def _totals(items: Sequence[DigitalResult]) -> dict[str, Any]:
    return {
        "channel_uses": sum(item.channel_uses for item in items),
        "info_bits": sum(item.info_bits for item in items),
        "header_bits": sum(item.header_bits for item in items),
        "blocks": sum(item.blocks for item in items),
        "block_errors": sum(item.block_errors for item in items),
        "items": tuple(items),
    }


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise MegenError(f"quantiser bits must be an integer in 1..16 (got {bits!r})")


def _check_codec(codec: str, quality: int) -> None:
    if codec not in IMAGE_CODECS:
        raise MegenError(f"unknown image codec {codec!r}; choose one of {', '.join(IMAGE_CODECS)}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise MegenError(f"image quality must be an integer in 1..100 (got {quality!r})")
