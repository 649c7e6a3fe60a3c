"""Model fingerprints: a short hash that changes when a model's weights change (results stores)."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: The random-weight tiny model of the tests (built from seed 0, no files).
RANDOM_MODEL = "tiny-random"


def model_fingerprint(model: str) -> str:
    """A short hash that changes when the model's weights change.

    ``tiny`` and tiny folders: SHA-256 of every weight file's bytes; ``tiny-random``: a constant;
    other checkpoints: names, sizes and modification times of their files (cheap for gigabytes).

    Returns:
        16 hex characters.
    """
    if model == RANDOM_MODEL:
        return "tiny-random:seed0"
    from megen.models.tiny import is_tiny_folder, packaged_weights_dir

    folder = packaged_weights_dir() if model == "tiny" else Path(model).expanduser()
    h = hashlib.sha256()
    if folder.is_dir():
        deep = is_tiny_folder(folder)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = f.relative_to(folder).as_posix()
            if "__pycache__" in rel:
                continue
            st = f.stat()
            h.update(f"{rel}:{st.st_size}".encode())
            if deep:
                h.update(f.read_bytes())
            else:
                h.update(str(st.st_mtime_ns).encode())
    else:
        h.update(f"hub:{model}".encode())
    return h.hexdigest()[:16]
