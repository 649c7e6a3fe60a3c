"""One entry point from a ``--model`` value to a :class:`~megen.models.ldm.StagedLDM`.

``load_model`` understands:

* ``None`` or ``"tiny"``: the embedded default model (weights shipped in the package);
* a folder holding ``megen_tiny.json``: a tiny model written by ``megen train``;
* anything else: a diffusers Stable Diffusion checkpoint folder, or a Hugging Face Hub id already in the
  local cache (never downloaded), through :func:`~megen.models.sd.load_stable_diffusion`.

Loaded models are kept for the life of the process (models are read-only: the stages never change their
weights), so repeated calls with the same name, device and dtype are cheap. Devices and dtypes follow
:mod:`megen.devices` (``"auto"``, ``"cpu"``, ``"cuda[:i]"``, ``"mps"``; float16/bfloat16 only on an
accelerator).
"""

from __future__ import annotations

from pathlib import Path

import torch

from megen.devices import dtype_name, resolve_device, resolve_dtype
from megen.errors import MegenError
from megen.models.ldm import StagedLDM
from megen.models.sd import CheckpointNotFoundError, load_stable_diffusion
from megen.models.tiny import is_tiny_folder, load_tiny

__all__ = ["DEFAULT_MODEL", "load_model", "model_key"]

DEFAULT_MODEL = "tiny"


def model_key(
    name_or_path: str | None,
    *,
    ue_unet_path: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
) -> str:
    """What identifies a loaded model: canonical name or folder, UE UNet folder, device and dtype.

    Two arguments with the same key load the same model (``None`` and ``"tiny"``; a folder given by
    two paths). :class:`megen.session.Session` caches loaded models under it.

    Raises:
        MegenError: a device this machine lacks, or half precision on the CPU.
    """
    dev = resolve_device(device)
    unet = str(Path(ue_unet_path).expanduser().resolve()) if ue_unet_path else None
    return f"{_key(name_or_path)}|{unet}|{dev}|{dtype_name(resolve_dtype(dtype, dev))}"


def _key(name_or_path: str | None) -> str:
    """Cache key: ``"tiny"`` for the default, an absolute path for a folder, the text for a Hub id."""
    if name_or_path is None or name_or_path == DEFAULT_MODEL:
        return DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def load_model(
    name_or_path: str | None = None,
    *,
    ue_unet_path: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
) -> StagedLDM:
    """Load a model by name, folder or Hub id onto a device (a new object each call: a
    :class:`~megen.session.Session` keeps the loaded ones).

    Args:
        name_or_path: ``None`` or ``"tiny"`` (default model), a tiny model folder (with ``megen_tiny.json``),
            a diffusers Stable Diffusion folder, or a Hub id in the local Hugging Face cache.
        ue_unet_path: Stable Diffusion only: a folder with a separate, smaller UE UNet.
        device: ``"cpu"`` (default), ``"auto"``, ``"cuda"``, ``"cuda:i"`` or ``"mps"``.
        dtype: ``"float32"`` (default), or ``"float16"`` / ``"bfloat16"`` on an accelerator (denoisers and
            CLIP text encoder; the VAE stays float32, the evaluation classifier on the CPU).

    Returns:
        The staged model.

    Raises:
        MegenError: An unknown name, a missing path, a checkpoint that does not load, a device this
            machine lacks, or half precision on the CPU (one line).

    Example:
        >>> load_model("no/such-model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        megen.errors.MegenError: unknown model 'no/such-model': ...
    """
    if name_or_path is not None and not str(name_or_path).strip():
        raise MegenError("empty model name; give 'tiny', a model folder or a Hugging Face id")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    key = (_key(name_or_path),)
    if key[0] == DEFAULT_MODEL:
        if ue_unet_path is not None:
            raise MegenError("a separate UE UNet (ue_unet_path) applies to Stable Diffusion checkpoints only")
        model = load_tiny()
    elif is_tiny_folder(Path(key[0])):
        if ue_unet_path is not None:
            raise MegenError("a separate UE UNet (ue_unet_path) applies to Stable Diffusion checkpoints only")
        model = load_tiny(key[0])
    else:
        try:
            model = load_stable_diffusion(str(name_or_path), ue_unet_path=ue_unet_path)
        except CheckpointNotFoundError as exc:
            raise MegenError(
                f"unknown model {name_or_path!r}: not 'tiny', not a model folder (megen_tiny.json or "
                "model_index.json), and not a Hugging Face id in the local cache"
            ) from exc
    return model.to(dev, torch_dtype)
