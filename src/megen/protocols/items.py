"""What a node holds: item values with typed metadata (:class:`ItemMeta`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch


@dataclass(frozen=True)
class ItemMeta:
    """Metadata the engine keeps with an item on a node.

    Attributes:
        step: For a latent: the denoising step it enters next (``0..N``); ``None`` when unknown.
        noise_var: Link noise gathered on the way here: variance per batch item ``[B]`` in the item's
            own units (latent units for latents, pixel units in ``[0, 1]`` for images and sketches),
            summed over the analog hops; ``None`` when the item arrived without channel noise.
        unbiased: After an analog link: ``received / gain`` ``[B, ...]``, the unbiased estimate of
            what was sent (receiver-side denoising reads it); ``None`` otherwise.
        core: A tile item that already is its window's core (the halo was cut before sending).
        cols: A tile item's latent columns ``(lo, hi)`` (its seed codec's prior); ``None`` otherwise.
    """

    step: int | None = None
    noise_var: torch.Tensor | None = None
    unbiased: torch.Tensor | None = None
    core: bool = False
    cols: tuple[int, int] | None = None

    def after_link(self, noise_var: torch.Tensor | None, unbiased: torch.Tensor | None) -> ItemMeta:
        """The metadata at the receiver of a link that added ``noise_var`` (``None``: no noise)."""
        if noise_var is None:
            return replace(self, noise_var=None, unbiased=None)
        total = noise_var if self.noise_var is None else self.noise_var + noise_var
        return replace(self, noise_var=total, unbiased=unbiased)


@dataclass(frozen=True)
class Item:
    """A value on a node (a tensor, a :class:`~megen.models.ldm.TextCondition`, prompt list) and its metadata."""

    value: Any
    meta: ItemMeta = ItemMeta()


__all__ = ["Item", "ItemMeta"]
