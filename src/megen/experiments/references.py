"""Reference images and prompts of a sweep's samples.

Two sets, chosen by :attr:`~megen.experiments.spec.SweepSpec.references`:

* ``fashion-mnist``: the 100 shipped Fashion-MNIST test images of the tiny model (10 per class) with
  the prompts ``"a photo of a <class>"``; the evaluation classifier scores prompt accuracy and FID.
* ``photos``: eight RGB photographs that ship inside the scikit-image wheel (astronaut, coffee, cat,
  rocket, galaxies, stained tissue, retina, colour wheel), centre-cropped to squares, each with a short
  caption as its prompt. For Stable Diffusion checkpoints: nothing is downloaded, and the images are
  natural RGB content at any resolution. There is no classifier for these prompts, so prompt
  accuracy and FID are not computed (fidelity and reference similarity are).

``auto`` (the default) takes ``fashion-mnist`` for the tiny models (``tiny``, a tiny folder,
``tiny-random``) and ``photos`` for every other checkpoint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from megen.errors import MegenError

REFERENCE_SETS = ("auto", "fashion-mnist", "photos")

#: scikit-image sample (function name) and its caption; all ship in the wheel (no download).
PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "a portrait photo of an astronaut"),
    ("coffee", "a cup of coffee on a table"),
    ("chelsea", "a photo of a tabby cat"),
    ("rocket", "a rocket on a launch pad"),
    ("hubble_deep_field", "galaxies in deep space"),
    ("immunohistochemistry", "a microscope image of stained tissue"),
    ("retina", "a photo of a human retina"),
    ("colorwheel", "a colour wheel"),
)


@dataclass(frozen=True)
class ReferenceSet:
    """Reference images with a label each, and the prompt of every label.

    Attributes:
        name: ``fashion-mnist`` or ``photos``.
        images: ``[N, C, H, W]`` in [0, 1].
        labels: ``[N]`` label of each image (an index into ``prompts``).
        prompts: The prompt of each label.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    prompts: tuple[str, ...]


def resolve_references(references: str, model: str) -> str:
    """The reference set that ``auto`` stands for with ``model`` (see the module docstring).

    Example:
        >>> resolve_references("auto", "tiny"), resolve_references("auto", "runwayml/stable-diffusion-v1-5")
        ('fashion-mnist', 'photos')
    """
    if references not in REFERENCE_SETS:
        raise MegenError(f"unknown reference set {references!r}; choose one of {', '.join(REFERENCE_SETS)}")
    if references != "auto":
        return references
    from megen.models.fingerprint import RANDOM_MODEL
    from megen.models.tiny import is_tiny_folder

    if model in ("tiny", RANDOM_MODEL) or is_tiny_folder(Path(model).expanduser()):
        return "fashion-mnist"
    return "photos"


def load_references(name: str) -> ReferenceSet:
    """The reference set ``name`` (``fashion-mnist`` or ``photos``), cached per process."""
    if name == "fashion-mnist":
        return _fashion()
    if name == "photos":
        return _photos()
    raise MegenError(f"unknown reference set {name!r}; choose fashion-mnist or photos")


@functools.lru_cache(maxsize=1)
def _fashion() -> ReferenceSet:
    """The shipped 100 test images; without them (untrained checkout), the same images from the test set."""
    from megen.data import FASHION_CLASSES, dataset_available, load_fashion_mnist, prompt_for
    from megen.models.tiny import load_reference_images

    try:
        images, labels = load_reference_images()
    except MegenError:
        if not dataset_available():
            raise
        test, test_labels = load_fashion_mnist("test")
        idx = torch.cat([torch.nonzero(test_labels == c)[:10, 0] for c in range(10)])
        images, labels = (test[idx] * 255).round().div(255.0), test_labels[idx]
    return ReferenceSet(
        "fashion-mnist", images, labels, tuple(prompt_for(c) for c in range(len(FASHION_CLASSES)))
    )


@functools.lru_cache(maxsize=1)
def _photos() -> ReferenceSet:
    try:
        import skimage.data as data
    except ImportError as exc:  # a dependency of megen; only a broken install lacks it
        raise MegenError("the photo references need scikit-image (pip install scikit-image)") from exc
    pics = []
    for name, _ in PHOTOS:
        try:
            arr = np.asarray(getattr(data, name)())
        except Exception as exc:  # noqa: BLE001 - a missing sample file must not crash a sweep
            raise MegenError(f"scikit-image sample {name!r} is not available offline ({exc})") from exc
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        arr = arr[..., :3]
        h, w = arr.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        sq = torch.from_numpy(np.ascontiguousarray(arr[top : top + s, left : left + s])).permute(2, 0, 1)
        img = sq.float().div(255.0)[None]
        pics.append(torch.nn.functional.interpolate(img, size=(512, 512), mode="area")[0])
    images = (torch.stack(pics) * 255).round().div(255.0)
    return ReferenceSet("photos", images, torch.arange(len(PHOTOS)), tuple(c for _, c in PHOTOS))


def fit_to_model(images: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Resize (area / bilinear) and convert channels (luminance or repetition) to the model's shape."""
    c, h, w = image_shape
    if tuple(images.shape[-2:]) != (h, w):
        mode = "area" if images.shape[-1] > w else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        images = torch.nn.functional.interpolate(images, size=(h, w), mode=mode, **kw)
    if images.shape[1] != c:
        if c == 1:
            weights = torch.tensor([0.299, 0.587, 0.114])[: images.shape[1]]
            images = (images * weights.view(1, -1, 1, 1)).sum(1, keepdim=True) / weights.sum()
        else:
            images = images.mean(1, keepdim=True).repeat(1, c, 1, 1)
    return images.clamp(0, 1).contiguous()


__all__ = [
    "PHOTOS",
    "REFERENCE_SETS",
    "ReferenceSet",
    "fit_to_model",
    "load_references",
    "resolve_references",
]
