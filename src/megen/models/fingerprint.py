"""Model fingerprints: a short hash that changes when a model's weights change (results stores).

A model folder holds the generative model's weights and, optionally, its seed-codec weights
(``seed_codec.safetensors``, :mod:`megen.link.seed_prior`). Only runs with a seed codec that reads them
(``linear``, ``learned``, ``digital``) depend on the latter, so a results store keys its rows by
:func:`model_fingerprint` without them and adds :func:`seed_codec_fingerprint` only when its sweep
uses a seed codec: retraining the seed codec leaves every other stored sweep resumable.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: The random-weight tiny model of the tests (built from seed 0, no files).
RANDOM_MODEL = "tiny-random"
#: The seed-codec weights' file in a model folder (see :mod:`megen.link.seed_prior`).
SEED_CODEC_FILE = "seed_codec.safetensors"
#: The seed codecs that read those weights (:mod:`megen.link.seed_codecs`; ``identity`` does not).
SEED_WEIGHT_CODECS = ("linear", "learned", "digital")


def model_fingerprint(model: str, *, seed_codec: bool = True) -> str:
    """A short hash that changes when the model's weights change.

    ``tiny`` and tiny folders: SHA-256 of every weight file's bytes; ``tiny-random``: a constant;
    other checkpoints: names, sizes and modification times of their files (cheap for gigabytes).

    Args:
        model: ``tiny``, ``tiny-random``, a model folder or a hub name.
        seed_codec: Include the seed-codec weights (what a server runs); ``False``: the generative
            model's weights only (what every run without a seed codec depends on).

    Returns:
        16 hex characters.
    """
    if model == RANDOM_MODEL:
        return "tiny-random:seed0"
    return _digest(model, lambda rel: seed_codec or rel != SEED_CODEC_FILE)


def seed_codec_fingerprint(model: str) -> str:
    """A short hash of the model's seed-codec weights (16 hex characters; constant if it has none)."""
    if model == RANDOM_MODEL:
        return "tiny-random:seed-codec"
    return _digest(model, lambda rel: rel == SEED_CODEC_FILE)


def _digest(model: str, keep) -> str:
    from megen.models.tiny import is_tiny_folder, packaged_weights_dir

    folder = packaged_weights_dir() if model == "tiny" else Path(model).expanduser()
    h = hashlib.sha256()
    if folder.is_dir():
        deep = is_tiny_folder(folder)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = f.relative_to(folder).as_posix()
            if "__pycache__" in rel or not keep(rel):
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
