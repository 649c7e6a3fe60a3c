"""Devices and floating-point precision: one place that turns user text into torch objects.

Rules (used by the model loader, the link and the benchmarks):

* ``resolve_device("auto")`` is CUDA if available, else Apple MPS if available, else the CPU.
  ``"cpu"``, ``"cuda"`` (the current CUDA device), ``"cuda:i"`` and ``"mps"`` name one device; a
  device that this machine does not have is a :class:`~megen.errors.MegenError`, never a silent CPU
  fallback.
* ``float16`` and ``bfloat16`` run only on accelerators: asking for them on the CPU is a
  :class:`~megen.errors.MegenError` (CPU half-precision kernels are slow and not what an experiment
  wants to measure). ``float32`` runs everywhere.
* Randomness never depends on the device: every draw comes from a CPU :class:`torch.Generator` and is
  then moved (:func:`draw_normal`), so a run on a GPU sees exactly the noise of the CPU run.
* What leaves a model (images for metrics, stores and PNG files) is a CPU float32 tensor
  (:func:`to_host`).
"""

from __future__ import annotations

import re

import torch

from megen.errors import MegenError

__all__ = [
    "DEVICE_CHOICES",
    "DTYPES",
    "draw_normal",
    "dtype_name",
    "resolve_device",
    "resolve_dtype",
    "to_host",
]

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_CUDA = re.compile(r"cuda(?::(\d+))?")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The torch device named by ``spec``.

    Args:
        spec: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:i"`` or ``"mps"`` (case and surrounding
            spaces ignored), or a :class:`torch.device` (checked the same way).

    Returns:
        The device. ``"auto"`` gives ``cuda`` if available, else ``mps`` if available, else ``cpu``.

    Raises:
        MegenError: An unknown spec, or a device this machine does not have (one line).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        megen.errors.MegenError: unknown device 'tpu'; choose auto, cpu, cuda, cuda:N or mps
    """
    text = str(spec).strip().lower() if isinstance(spec, str | torch.device) else None
    if text is None:
        raise MegenError(f"device must be text such as 'cuda:0', got {type(spec).__name__}")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text in ("mps", "mps:0"):
        if not _mps_available():
            raise MegenError("device 'mps' is not available on this machine (no Apple MPS backend)")
        return torch.device("mps")
    match = _CUDA.fullmatch(text)
    if match is None:
        raise MegenError(f"unknown device {str(spec)!r}; choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise MegenError(
            f"device {text!r} is not available: this machine has no CUDA GPU (torch {torch.__version__})"
        )
    if match.group(1) is None:
        return torch.device("cuda")
    index = int(match.group(1))
    count = torch.cuda.device_count()
    if index >= count:
        raise MegenError(f"device {text!r} is not available: this machine has {count} CUDA GPU(s)")
    return torch.device("cuda", index)


def resolve_dtype(name: str | torch.dtype = "float32", device: torch.device | str = "cpu") -> torch.dtype:
    """The floating-point dtype named by ``name``, checked against the device it will run on.

    Args:
        name: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (or the torch dtype itself).
        device: The device the weights will live on (a :class:`torch.device` or a spec for
            :func:`resolve_device`).

    Returns:
        The torch dtype.

    Raises:
        MegenError: An unknown name, or half precision on the CPU.

    Example:
        >>> resolve_dtype("float32")
        torch.float32
        >>> resolve_dtype("float16", "cpu")
        Traceback (most recent call last):
        ...
        megen.errors.MegenError: dtype float16 runs only on an accelerator (cuda or mps), not on the cpu; use float32
    """
    if isinstance(name, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if name not in names:
            raise MegenError(f"unsupported dtype {name}; choose {', '.join(DTYPES)}")
        key = names[name]
    else:
        key = str(name).strip().lower()
        if key not in DTYPES:
            raise MegenError(f"unknown dtype {str(name)!r}; choose {', '.join(DTYPES)}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if key != "float32" and dev.type == "cpu":
        raise MegenError(
            f"dtype {key} runs only on an accelerator (cuda or mps), not on the cpu; use float32"
        )
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"``, ``"float16"`` or ``"bfloat16"`` for the dtype (the inverse of :data:`DTYPES`)."""
    for key, value in DTYPES.items():
        if value == dtype:
            return key
    raise MegenError(f"unsupported dtype {dtype}; choose {', '.join(DTYPES)}")


def draw_normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal samples drawn from ``generator`` on its own device, then moved to ``device``.

    With a CPU generator the values are those of ``torch.randn(shape, generator=generator)`` whatever
    ``device`` is, so results do not depend on where the model runs.

    Args:
        shape: Output shape.
        generator: Source of randomness (a CPU generator for device-independent results).
        device: Where the samples go (default: the generator's device).
        dtype: Output dtype; the draw itself is float32 (cast after), as on the CPU.

    Returns:
        float ``shape`` tensor on ``device``.
    """
    z = torch.randn(tuple(shape), generator=generator, device=generator.device)
    return z.to(device=device if device is not None else generator.device, dtype=dtype)


def to_host(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a CPU float32 tensor (what leaves a model: images for metrics, stores, PNGs).

    A CPU float32 tensor is returned without copying its data (detached).
    """
    return x.detach().to(device="cpu", dtype=torch.float32)
