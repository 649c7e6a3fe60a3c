"""The CLI's one error boundary, and its output helpers.

Rules (every command is wrapped by :func:`handle_errors`, and :func:`megen.cli.main.main` wraps the
whole app with the same :func:`error_boundary`):

* :class:`MegenError` is bad input: one line ``Error: <message>`` on stderr, exit code 2.
* :class:`OSError` that reaches the boundary (a full disk, a read-only folder, a folder where a file
  belongs, a closed or full stdout) is also the user's environment, not a bug: one line
  ``Error: cannot write <file>: <reason>`` (or ``cannot open``), exit 2. Write sites should
  still convert it themselves, naming the file; this is the safety net.
* Any other exception is an internal error: one line ``internal error: <Type>: <message> (run with
  --debug for the traceback)``, exit 1. With ``megen --debug`` (or ``MEGEN_DEBUG=1``) it is re-raised
  so Python prints the traceback.
* typer/click usage errors keep their own handling (exit 2).

All user text goes to the terminal with rich markup off: a prompt or path containing ``[/bold]`` is
printed as written.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from megen.errors import MegenError

console = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
"""Console on stderr for messages; markup and highlighting are off, so user text prints literally."""
F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2
EXIT_INTERNAL = 1
DEBUG_ENV = "MEGEN_DEBUG"
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EPIPE}
# typer >= 0.20 ships its own copy of click (``typer._click``); older ones use click itself.
_CLICK_MODULES = ("typer._click", "click")


def _click_attr(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


_PASS_THROUGH: tuple[type[BaseException], ...] = tuple(
    cls
    for cls in (
        typer.Exit,
        typer.Abort,
        *(
            _click_attr(f"{m}.exceptions", n)
            for m in _CLICK_MODULES
            for n in ("Exit", "Abort", "ClickException")
        ),
    )
    if isinstance(cls, type)
)
"""Exceptions the boundary leaves to typer/click: exits, aborts and usage errors (exit 2)."""


def fail(message: str) -> None:
    """Print ``Error: message`` on stderr (one line, no markup) and exit with code 2."""
    _one_line(Text.assemble(("Error:", "bold red"), " ", _flatten(message)))
    raise typer.Exit(EXIT_USAGE)


def debug_enabled() -> bool:
    """True when ``--debug`` was given to the root command or ``MEGEN_DEBUG`` is set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    for module in _CLICK_MODULES:
        getter = _click_attr(f"{module}.globals", "get_current_context")
        ctx = getter(silent=True) if getter is not None else None
        if ctx is not None:
            return bool(ctx.find_root().params.get("debug"))
    return False


def os_error_message(exc: OSError) -> str:
    """One line for an :class:`OSError`: ``cannot write <file>: <reason>`` or ``cannot open ...``."""
    name = exc.filename
    verb = "write" if exc.errno in _WRITE_ERRNOS else "open"
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    return f"cannot {verb} {name}: {reason}" if name is not None else f"input/output error: {reason}"


@contextlib.contextmanager
def error_boundary(debug: bool | None = None) -> Iterator[None]:
    """Apply the module's error rules to the enclosed code (see the module docstring)."""
    try:
        yield
    except _PASS_THROUGH:
        raise
    except MegenError as exc:
        fail(str(exc) or exc.__class__.__name__)
    except OSError as exc:
        fail(os_error_message(exc))
    except Exception as exc:
        if debug if debug is not None else debug_enabled():
            raise
        detail = _flatten(str(exc))
        _one_line(
            f"internal error: {exc.__class__.__name__}{': ' + detail if detail else ''} "
            "(run with --debug for the traceback)"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def handle_errors(fn: F) -> F:
    """Run a command inside :func:`error_boundary`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with error_boundary():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def say(message: str) -> None:
    """Print a progress or status message on stderr (plain text: user paths and prompts print as given)."""
    console.print(message)


def echo(line: str) -> None:
    """Print one line to stdout (results, not messages); a full stdout is a one-line error, exit 2.

    A closed pipe (``megen mcs | head -3``) ends the command quietly with exit code 1, as click does.

    Raises:
        MegenError: stdout cannot be written (e.g. redirected to a full disk or ``/dev/full``).
    """
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError as exc:
        _detach_stdout()
        if exc.errno == errno.EPIPE:
            raise typer.Exit(EXIT_INTERNAL) from None
        raise MegenError(f"cannot write to standard output: {exc.strerror or exc}") from None


def print_json(obj: Any) -> None:
    """Print one JSON object on one line to stdout (see :func:`echo` for a full stdout)."""
    echo(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _flatten(message: str) -> str:
    """Join a multi-line message into one line."""
    return " ".join(part.strip() for part in str(message).strip().splitlines() if part.strip())


def _one_line(message: str | Text) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _detach_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail a second time."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
