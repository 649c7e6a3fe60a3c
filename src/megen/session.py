"""A session: the caches of one process's runs, passed explicitly (no module-level singletons).

A :class:`Session` carries what repeated runs share: the stage memo of each model
(:mod:`megen.protocols.memo`), the FLOP meter (FLOPs depend only on shapes), loaded models and
loaded cost profiles. ``run_protocol(..., session=None)`` uses a fresh session; a sweep worker holds
one session for all its batches.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

from megen.costs.flops import FlopMeter
from megen.costs.profiles import Profiles, load_profiles
from megen.models.ldm import StagedLDM
from megen.protocols.memo import StageMemo


class Session:
    """Caches shared by the runs of one process.

    Attributes:
        meter: The FLOP meter.

    Example:
        >>> s = Session()
        >>> s.profiles(None) is s.profiles(None)
        True
    """

    def __init__(self) -> None:
        self.meter = FlopMeter()
        self._memos: weakref.WeakKeyDictionary[StagedLDM, StageMemo] = weakref.WeakKeyDictionary()
        self._models: dict[str, StagedLDM] = {}
        self._profiles: dict[str | None, Profiles] = {}

    def memo(self, model: StagedLDM) -> StageMemo:
        """The stage memo of ``model`` (one per model object in this session)."""
        memo = self._memos.get(model)
        if memo is None:
            memo = self._memos[model] = StageMemo()
        return memo

    def profiles(self, path: str | Path | None) -> Profiles:
        """The cost profiles at ``path`` (``None``: the shipped defaults), loaded once."""
        key = None if path is None else str(path)
        if key not in self._profiles:
            self._profiles[key] = load_profiles(path)
        return self._profiles[key]

    def model(self, name: str, load: Callable[[str], StagedLDM] | None = None) -> StagedLDM:
        """The model ``name``, loaded once with ``load`` (default :func:`megen.models.registry.load_model`)."""
        if name not in self._models:
            if load is None:
                from megen.models.registry import load_model

                load = load_model
            self._models[name] = load(name)
        return self._models[name]


__all__ = ["Session"]
