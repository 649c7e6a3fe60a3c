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

    def model(
        self,
        name: str,
        load: Callable[[str], StagedLDM] | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> StagedLDM:
        """The model ``name`` on ``device`` in ``dtype``, loaded once (default loader:
        :func:`megen.models.registry.load_model`)."""
        from megen.devices import resolve_device, resolve_dtype
        from megen.models.registry import load_model, model_key

        if load is None:
            key = model_key(name, device=device, dtype=dtype)
        else:
            key = f"{name}|{load.__qualname__}|{resolve_device(device)}|{resolve_dtype(dtype, device)}"
        if key not in self._models:
            if load is None:
                self._models[key] = load_model(name, device=device, dtype=dtype)
            else:
                self._models[key] = load(name).to(resolve_device(device), resolve_dtype(dtype, device))
        return self._models[key]

    def placed(self, model: StagedLDM, device: str, dtype: str) -> StagedLDM:
        """``model`` itself when it already sits on ``device`` in ``dtype``, else a copy moved there
        (made once per session)."""
        from megen.devices import resolve_device, resolve_dtype

        dev, dt = resolve_device(device), resolve_dtype(dtype, device)
        if model.device == dev and model.dtype == dt:
            return model
        key = f"{id(model)}|{dev}|{dtype}"
        if key not in self._models:
            import copy

            self._models[key] = copy.deepcopy(model).to(dev, dt)
        return self._models[key]


__all__ = ["Session"]
