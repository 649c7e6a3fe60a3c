"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` and the shipped reference images.

Images are returned as float32 tensors ``[N, 1, 32, 32]`` in ``[0, 1]`` (28x28 padded by 2 pixels of
black on each side), labels as int64 ``[N]``.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from megen.errors import MegenError

FASHION_MNIST_DIR = Path(os.environ.get("MEGEN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

#: Class names in label order, as they appear in prompts ("a photo of a sneaker").
FASHION_CLASSES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

#: Prompt templates used in training; the first one is the canonical prompt.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}",
    "a {}",
    "an image of a {}",
    "a picture of a {}",
)


def prompt_for(label: int, template: str = PROMPT_TEMPLATES[0]) -> str:
    """The canonical prompt of a class: ``"a photo of a {class}"``."""
    return template.format(FASHION_CLASSES[label])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            data = fh.read()
    except OSError as exc:
        raise MegenError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 8:
        raise MegenError(f"corrupt IDX file {path}: too short")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise MegenError(f"corrupt IDX file {path}: bad magic")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise MegenError(f"corrupt IDX file {path}: expected {int(np.prod(dims))} values, got {body.size}")
    return body.reshape(dims)


def pad_to_32(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float ``[N, 1, 32, 32]`` in ``[0, 1]``."""
    x = torch.from_numpy(np.array(images_u8, copy=True)).float().div_(255.0)
    return torch.nn.functional.pad(x, (2, 2, 2, 2)).unsqueeze(1)


def load_fashion_mnist(split: str = "train", root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a Fashion-MNIST split (``"train"`` 60k or ``"test"`` 10k) as ``(images, labels)``."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise MegenError(f"unknown split {split!r}; use 'train' or 'test'")
    img_path = root / f"{prefix}-images-idx3-ubyte.gz"
    lab_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.exists():
        raise MegenError(
            f"Fashion-MNIST not found at {root} (install it with: apt-get install dataset-fashion-mnist)"
        )
    images = _read_idx(img_path)
    labels = _read_idx(lab_path)
    if images.shape[0] != labels.shape[0]:
        raise MegenError(
            f"corrupt Fashion-MNIST at {root}: {images.shape[0]} images, {labels.shape[0]} labels"
        )
    return pad_to_32(images), torch.from_numpy(labels.astype(np.int64))


def dataset_available(root: Path | None = None) -> bool:
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    return (root / "t10k-images-idx3-ubyte.gz").exists()
