"""Image files in and out: loading any file into the model's format, saving tensors and grids."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from megen.errors import MegenError

ImageCodec = Literal["jpeg", "jpeg-session", "webp", "png"]
"""Image codecs of digital image transfers (:mod:`megen.link.codecs`); ``jpeg-session`` is JPEG whose
header (quantisation and Huffman tables, frame size) is known at both ends of a session, so only the
scan data crosses the link per image."""

MAX_IMAGE_PIXELS = 64_000_000
"""Largest reference image accepted (width x height); larger files are refused before decoding."""
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
)
"""What PIL raises for a corrupt or truncated file (it has no single exception type for it)."""


def load_image(path: Path | str, *, channels: int, size: int) -> tuple[torch.Tensor, list[str]]:
    """Read an image file as ``[1, channels, size, size]`` float in ``[0, 1]``.

    Any mode and size is accepted and converted (centre crop to square, then resize); the returned
    messages say what was converted.

    Raises:
        MegenError: the path is missing or a folder, the file is not a readable image (corrupt,
            truncated), or it has more than :data:`MAX_IMAGE_PIXELS` pixels (checked from the header,
            before decoding; PIL's own decompression-bomb error is mapped to the same message).
    """
    path = Path(path)
    notes: list[str] = []
    if not path.exists():
        raise MegenError(f"image file not found: {path}")
    if path.is_dir():
        raise MegenError(f"image path is a folder, not a file: {path}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise MegenError(f"image {path} is too large ({im.width}x{im.height} pixels)")
            im.load()
            img = im.copy()
    except MegenError:
        raise
    except Image.DecompressionBombError:
        raise MegenError(f"image {path} is too large: more than {MAX_IMAGE_PIXELS} pixels") from None
    except _DECODE_ERRORS as exc:
        raise MegenError(
            f"cannot read image {path}: not a valid image file ({exc.__class__.__name__})"
        ) from exc
    want_mode = "L" if channels == 1 else "RGB"
    if img.mode != want_mode:
        notes.append(f"converted mode {img.mode} -> {want_mode}")
        img = img.convert(want_mode)
    if img.width != img.height:
        side = min(img.width, img.height)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
        notes.append(f"centre-cropped to {side}x{side}")
    if img.width != size:
        notes.append(f"resized {img.width}x{img.height} -> {size}x{size}")
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy()).unsqueeze(0), notes


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[C, H, W]`` float in ``[0, 1]`` -> PIL image (L or RGB)."""
    arr = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], mode="L")
    return Image.fromarray(arr.transpose(1, 2, 0), mode="RGB")


def make_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile ``[B, C, H, W]`` into one ``[C, H', W']`` image with ``pad`` pixels of white between."""
    b, c, h, w = images.shape
    ncols = ncols or min(b, 8)
    nrows = (b + ncols - 1) // ncols
    grid = torch.ones(c, nrows * (h + pad) + pad, ncols * (w + pad) + pad)
    for i in range(b):
        r, q = divmod(i, ncols)
        grid[
            :, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w
        ] = images[i]
    return grid


def save_image(image: torch.Tensor, path: Path | str, *, upscale: int = 1) -> Path:
    """Save ``[C, H, W]`` or ``[B, C, H, W]`` (as a grid) to ``path`` (format from the suffix)."""
    path = Path(path)
    if image.ndim == 4:
        image = image[0] if image.shape[0] == 1 else make_grid(image)
    pil = to_pil(image)
    if upscale > 1:
        pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.Resampling.NEAREST)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pil.save(path)
    except (OSError, ValueError) as exc:
        raise MegenError(f"cannot write image {path}: {exc}") from exc
    return path


# ---------------------------------------------------------------------------------------------- PNG codec
#: The first 8 bytes of every PNG file.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encode_png(image: torch.Tensor) -> bytes:
    """``[C, H, W]`` float in ``[0, 1]`` -> lossless 8-bit PNG bytes (grey for C = 1, RGB for C = 3)."""
    import io

    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    pil = Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def decode_png(blob: bytes) -> torch.Tensor:
    """PNG bytes -> ``[C, H, W]`` float32 in ``[0, 1]``.

    Raises:
        MegenError: ``blob`` is not a readable PNG image.
    """
    import io

    if not isinstance(blob, bytes | bytearray | memoryview) or bytes(blob[:8]) != PNG_MAGIC:
        raise MegenError("not a PNG image")
    try:
        with Image.open(io.BytesIO(blob)) as im:
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise MegenError(f"unreadable PNG image ({exc})") from exc
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))
