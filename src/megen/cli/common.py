"""Shared CLI helpers: one-line errors with exit code 2, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from megen.errors import MegenError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def fail(message: str) -> None:
    """Print ``Error: message`` on stderr and exit with code 2."""
    from rich.markup import escape

    console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def handle_errors(fn: F) -> F:
    """Turn :class:`MegenError` (and ``ValueError``/``FileNotFoundError``) into a one-line error, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (MegenError, ValueError, FileNotFoundError, KeyError) as exc:
            msg = str(exc).strip("'\"") or exc.__class__.__name__
            fail(msg)

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print one JSON object on one line to stdout."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
