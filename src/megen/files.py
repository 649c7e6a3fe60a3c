"""Writing files safely: output folders, atomic outputs, and refusing to overwrite an input.

Every write site of megen's experiments goes through these helpers, so that a full disk, a read-only
folder or a device such as ``/dev/full`` gives one :class:`~megen.errors.MegenError` naming the path
(the CLI prints it on one line and exits 2) and never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from megen.errors import MegenError


class WriteError(MegenError):
    """Writing a file failed (full disk, read-only folder, device): stops the whole command."""


def folder_of(path: Path) -> Path:
    """The folder a file ``path`` lives in (``.`` for a bare file name)."""
    return path.parent if str(path.parent) else Path(".")


def writable_folder(folder: Path | str) -> Path:
    """Create ``folder`` if needed and check that files can be written into it.

    The check writes and removes a probe file, so it also catches read-only mounts and folders that
    refuse even the superuser (``os.access`` says yes to root everywhere).

    Raises:
        MegenError: it exists as something other than a folder, cannot be created, or is not writable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MegenError(f"output folder {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MegenError(f"cannot create the output folder {folder}: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MegenError(f"output folder {folder} is not writable")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".megen-probe"):
            pass
    except OSError as exc:
        raise MegenError(f"output folder {folder} is not writable: {exc.strerror}") from exc
    return folder


def regular_file_or_new(path: Path, what: str) -> None:
    """Refuse ``path`` unless it is a regular file or does not exist yet (devices, folders, fifos ...).

    Raises:
        MegenError: ``path`` exists and is not a regular file (``/dev/full``, a folder ...).
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # a new file (its folder is checked by writable_folder)
    except OSError as exc:
        raise MegenError(f"cannot use {what} {path}: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise MegenError(f"{what} {path} is a folder; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise MegenError(f"{what} {path} is not a regular file")


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name the same file (real paths, symlinks and ``./`` resolved)."""
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(outputs: Iterable[Path | None], inputs: Iterable[Path]) -> None:
    """Refuse outputs that resolve to an input or to each other, before anything is written.

    Raises:
        MegenError: an output is an input (``megen export DB --csv DB``) or two outputs are one file.
    """
    ins = list(inputs)
    seen: list[Path] = []
    for out in outputs:
        if out is None:
            continue
        for src in ins:
            if same_file(out, src):
                raise MegenError(f"output {out} is the input {src}; refusing to overwrite it")
        for other in seen:
            if same_file(out, other):
                raise MegenError(f"outputs {other} and {out} are the same file; give two names")
        seen.append(out)


@contextlib.contextmanager
def write_errors(path: Path | str, what: str = "") -> Iterator[None]:
    """Turn an ``OSError`` of the block (full disk, read-only folder) into a one-line MegenError."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteError(f"cannot write {what + ' ' if what else ''}{path}: {reason}") from exc


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds.

    Raises:
        MegenError: ``path`` is a folder or not a regular file, the folder does not exist or is not
            writable (checked before anything is written), or writing fails (full disk).
    """
    path = Path(path)
    regular_file_or_new(path, "output")
    writable_folder(folder_of(path))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with write_errors(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def write_json_cache(path: Path | str, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically, creating its folder (a cache entry).

    Raises:
        MegenError: the folder cannot be created or the file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MegenError(f"cannot create the cache folder {path.parent}: {exc.strerror or exc}") from None
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")


def read_table(path: Path | str, what: str) -> dict[str, Any]:
    """The table in a TOML file (or a JSON file, by its ``.json`` suffix), as plain data.

    Args:
        path: The file.
        what: What the file is, for messages (``"plan file"``, ``"experiment file"`` ...).

    Raises:
        MegenError: the file is missing, a folder, unreadable, or not valid TOML/JSON (one line).
    """
    import json
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise MegenError(f"{what} not found: {p}" if not p.exists() else f"{what} {p} is a folder")
    kind = "JSON" if p.suffix == ".json" else "TOML"
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except OSError as exc:
        raise MegenError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MegenError(f"{what} {p} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise MegenError(f"{what} {p} does not hold a table")
    return data
