"""One grammar for number grids (SNR lists and ranges) on the command line and in TOML.

Grammar: a comma-separated list of items; an item is a number (``5``, ``-2.5``, ``1e-1``) or an
inclusive range ``start:stop`` (step 1) or ``start:stop:step``. Values keep the order given,
duplicates are dropped, and the number of points is capped at :data:`MAX_GRID_POINTS` (counted
before anything is materialised, so ``0:1e9:1e-9`` fails fast). TOML gives a number or a list of
numbers and strings instead of a string.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from megen.errors import MegenError

#: The full preset expands 1 066 grid combinations (1 020 distinct points); the cap catches a mistyped
#: range step (e.g. `-15:20:0.001`, 35 001 points) before anything is built.
MAX_GRID_POINTS = 2000
"""Most points one grid may expand to (``megen link`` and sweep axes share it)."""
_DIGITS = 9
"""Range points are rounded to this many decimals so ``0:1:0.1`` gives ``0.3``, not ``0.30000000000000004``."""


def check_grid_points(count: int | float, what: str) -> None:
    """Raise :class:`MegenError` when a grid of ``count`` points exceeds :data:`MAX_GRID_POINTS`."""
    if count > MAX_GRID_POINTS:
        shown = f"{count:.3g}" if isinstance(count, float) else str(count)
        raise MegenError(f"{what}: {shown} points; at most {MAX_GRID_POINTS}")


def parse_grid(text: str | float | int | Sequence[str | float | int], what: str = "--snr-db") -> list[float]:
    """Expand a grid written as text (or TOML data) into its values.

    Args:
        text: ``"-10:20:5"``, ``"0,5,10"``, ``"-5:5"``, ``"0:10:2.5,20"``, a number, or a list of
            numbers and such strings.
        what: The option's or field's name, for error messages.

    Returns:
        The values as floats, in the order given (ranges ascending), duplicates removed.

    Raises:
        MegenError: empty input, a malformed number or range, a step that is not > 0, a stop below its
            start, a non-finite value, or more than :data:`MAX_GRID_POINTS` points.

    Example:
        >>> parse_grid("-5:0:2.5")
        [-5.0, -2.5, 0.0]
        >>> parse_grid("3, 1, 3")
        [3.0, 1.0]
        >>> parse_grid([0, "10:12"])
        [0.0, 10.0, 11.0, 12.0]
    """
    items: list[str | float | int]
    if isinstance(text, str):
        items = [p.strip() for p in text.split(",")]
        if not any(items):
            raise MegenError(f"{what}: empty; give e.g. -10:20:5 or 0,10,20")
    elif isinstance(text, bool):
        raise MegenError(f"{what}: {text!r} is not a number")
    elif isinstance(text, int | float):
        items = [text]
    elif isinstance(text, list | tuple):
        items = list(text)
    else:
        raise MegenError(f"{what}: expected a number, a list or a range, got {type(text).__name__}")
    if not items:
        raise MegenError(f"{what}: empty; give e.g. -10:20:5 or 0,10,20")
    values: list[float] = []
    for item in items:
        if isinstance(item, str) and ":" in item:
            values.extend(_expand_range(item.strip(), what, MAX_GRID_POINTS - len(values)))
        else:
            values.append(_number(item, what))
        check_grid_points(len(values), what)
    return list(dict.fromkeys(values))


def _number(item: object, what: str) -> float:
    if isinstance(item, bool) or not isinstance(item, str | int | float):
        raise MegenError(f"{what}: {item!r} is not a number")
    try:
        value = float(item)
    except ValueError:
        raise MegenError(f"{what}: {item!r} is not a number") from None
    if not math.isfinite(value):
        raise MegenError(f"{what}: every value must be a finite number (got {item!r})")
    return value


def _expand_range(item: str, what: str, room: int) -> list[float]:
    """``start:stop[:step]`` -> its points; refuses more than ``room`` points before building them."""
    parts = item.split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise MegenError(f"{what}: cannot read range {item!r}; use start:stop:step, e.g. -10:20:5")
    start, stop = _number(parts[0].strip(), what), _number(parts[1].strip(), what)
    step = _number(parts[2].strip(), what) if len(parts) == 3 else 1.0
    if step <= 0:
        raise MegenError(f"{what}: the step of range {item!r} must be > 0")
    if stop < start:
        raise MegenError(f"{what}: range {item!r} stops ({stop:g}) below its start ({start:g})")
    count = math.floor((stop - start) / step + 1e-9) + 1 if (stop - start) / step < 1e18 else math.inf
    if count > room:
        check_grid_points(count + MAX_GRID_POINTS - room, what)
    return [round(start + i * step, _DIGITS) for i in range(int(count))]
