"""Spatial tiles for the parallel multi-ES protocols (UIDG, DIUG, DSUC).

The latent ``[B, c, h, w]`` is cut along its width into ``k`` strips (cores) of nearly equal width;
each node works on a *window*: its core plus ``halo`` columns on each side (clipped at the border).
Coordinates of images and sketches follow by the pixel-per-latent-column factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from megen.errors import MegenError


@dataclass(frozen=True)
class Window:
    """Tile geometry in latent columns: core ``[core_lo, core_hi)`` inside window ``[win_lo, win_hi)``."""

    core_lo: int
    core_hi: int
    win_lo: int
    win_hi: int

    def scaled(self, factor: float) -> Window:
        f = factor
        return Window(
            int(self.core_lo * f), int(self.core_hi * f), int(self.win_lo * f), int(self.win_hi * f)
        )

    @property
    def core_in_window(self) -> slice:
        return slice(self.core_lo - self.win_lo, self.core_hi - self.win_lo)


def tile_windows(width: int, k: int, halo: int) -> list[Window]:
    """Windows of ``k`` width-wise tiles over ``width`` latent columns with ``halo`` columns of overlap."""
    if k < 1 or k > width:
        raise MegenError(f"cannot cut {width} latent columns into {k} tiles")
    if halo < 0:
        raise MegenError(f"halo must be >= 0, got {halo}")
    edges = [round(i * width / k) for i in range(k + 1)]
    return [
        Window(edges[i], edges[i + 1], max(0, edges[i] - halo), min(width, edges[i + 1] + halo))
        for i in range(k)
    ]


def cut(x: torch.Tensor, win: Window) -> torch.Tensor:
    """The window of ``x`` ``[B, C, H, W]`` (columns ``win_lo:win_hi``)."""
    return x[..., win.win_lo : win.win_hi].clone()


def core(x_window: torch.Tensor, win: Window) -> torch.Tensor:
    """The core columns of a window tensor."""
    return x_window[..., win.core_in_window].clone()


def stitch(cores: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate core tensors along the width."""
    return torch.cat(cores, dim=-1)


def halo_exchange(geometry: list[Window]) -> list[tuple[int, int, slice, slice]]:
    """Which columns each window needs from its neighbours: ``(dst, src, dst_cols, src_cols)``.

    ``dst_cols`` index the destination window, ``src_cols`` the source window; the columns are the
    part of the destination's halo that lies in the source's core.
    """
    out = []
    for d, wd in enumerate(geometry):
        for s, ws in enumerate(geometry):
            if s == d:
                continue
            lo = max(wd.win_lo, ws.core_lo)
            hi = min(wd.win_hi, ws.core_hi)
            # only halo columns of the destination (outside its own core)
            if hi <= lo:
                continue
            if lo >= wd.core_lo and hi <= wd.core_hi:
                continue
            out.append((d, s, slice(lo - wd.win_lo, hi - wd.win_lo), slice(lo - ws.win_lo, hi - ws.win_lo)))
    return out
