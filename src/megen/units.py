"""Unit conversions, in one place. Names carry units: ``snr_db``, ``power_w``, ``bandwidth_hz``."""

from __future__ import annotations

import math

import torch


def db_to_linear(value_db: float) -> float:
    """Power ratio from decibels: ``10 ** (value_db / 10)``."""
    return 10.0 ** (value_db / 10.0)


def linear_to_db(value: float) -> float:
    """Decibels from a power ratio: ``10 log10(value)`` (``-inf`` for 0)."""
    return -math.inf if value <= 0 else 10.0 * math.log10(value)


def db_to_linear_t(value_db: torch.Tensor) -> torch.Tensor:
    """Tensor version of :func:`db_to_linear`."""
    return torch.pow(10.0, value_db / 10.0)


def linear_to_db_t(value: torch.Tensor) -> torch.Tensor:
    """Tensor version of :func:`linear_to_db`."""
    return 10.0 * torch.log10(value)
