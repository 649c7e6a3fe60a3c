"""Plans: the model's stages placed on nodes, with a transfer wherever data changes node.

A :class:`Plan` is plain, frozen data: an ordered tuple of operations. The engine
(:mod:`megen.protocols.engine`) executes any plan; the named protocols
(:mod:`megen.protocols.builders`) are just functions that build plans.

Nodes are ``"UE"`` and ``"ES1"`` .. ``"ES4"``. Links follow from the endpoints: UE -> ES is the
uplink, ES -> UE the downlink, ES -> ES the backhaul.

Items (what a node holds, by name):

==============  =======================================================================
``prompt``      the prompt text (starts at the UE)
``reference``   the reference image ``[B, C, H, W]`` (starts at the UE, image-to-image only)
``cond``        text conditioning (output of ``T``)
``z_ref``       scaled latent of the reference (output of ``E``)
``latent``      the diffusion state (output of ``Z`` and ``D``)
``image``       a full-resolution image (output of ``G`` or ``C``)
``sketch``      a coarse image (output of ``K``)
``x@i``         tile ``i`` of item ``x`` (parallel protocols), see :class:`Tile`
==============  =======================================================================

Operations:

* :class:`Stage` runs one stage (``T E Z D G K C``) on one node.
* :class:`Transfer` moves an item from one node to another over a link (analog or digital).
* :class:`Tile` cuts an item into ``k`` overlapping windows (halo) on one node; :class:`Stitch`
  assembles the windows' cores; :class:`ParallelDenoise` denoises windows on several nodes at once,
  exchanging halos over the backhaul every ``sync_every`` steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from megen.errors import MegenError

StageKind = Literal["T", "E", "Z", "D", "G", "K", "C"]
Mode = Literal["analog", "digital"]
LinkKind = Literal["uplink", "downlink", "backhaul"]

NODES = ("UE", "ES1", "ES2", "ES3", "ES4")

#: Model parts each stage needs on its node.
STAGE_PARTS: dict[str, tuple[str, ...]] = {
    "T": ("text",),
    "E": ("vae",),
    "Z": (),
    "D": (),  # plus the denoiser named by the stage
    "G": ("vae",),
    "K": ("vae",),
    "C": ("vae", "text"),  # plus the denoiser
}

#: Items each stage reads and writes (``Z`` reads ``z_ref`` only for image-to-image).
STAGE_IO: dict[str, tuple[tuple[str, ...], str]] = {
    "T": (("prompt",), "cond"),
    "E": (("reference",), "z_ref"),
    "Z": ((), "latent"),
    "D": (("latent", "cond"), "latent"),
    "G": (("latent",), "image"),
    "K": (("latent",), "sketch"),
    "C": (("sketch", "cond"), "image"),
}


def link_kind(src: str, dst: str) -> LinkKind:
    """``uplink`` (UE -> ES), ``downlink`` (ES -> UE) or ``backhaul`` (ES -> ES)."""
    if src == dst:
        raise MegenError(f"a transfer needs two different nodes, got {src} -> {dst}")
    if src == "UE":
        return "uplink"
    if dst == "UE":
        return "downlink"
    return "backhaul"


@dataclass(frozen=True)
class Stage:
    """One stage on one node.

    Attributes:
        kind: ``T E Z D G K C``.
        node: Where it runs.
        start: First denoising step (``D``); ``None`` = the strength's start step.
        stop: Last denoising step, exclusive (``D``); ``None`` = ``N``.
        denoiser: ``"es"`` or ``"ue"`` (``D`` and ``C``).
        tile: Work on tile ``i`` (items ``latent@i`` ...) instead of the full item.
    """

    kind: StageKind
    node: str
    start: int | None = None
    stop: int | None = None
    denoiser: str | None = None
    tile: int | None = None

    def describe(self) -> str:
        s: str = self.kind
        if self.kind == "D":
            a = "s" if self.start is None else str(self.start)
            b = "N" if self.stop is None else str(self.stop)
            s += f"[{a}:{b}]"
        if self.denoiser and self.kind in ("D", "C"):
            s += f"({self.denoiser})"
        if self.tile is not None:
            s += f"@{self.tile}"
        return s


@dataclass(frozen=True)
class Transfer:
    """Move ``item`` from ``src`` to ``dst`` (``mode``: analog or digital transmission)."""

    item: str
    src: str
    dst: str
    mode: Mode = "analog"
    core_only: bool = False  # for tile items: send the tile's core, not its halo

    @property
    def link(self) -> LinkKind:
        return link_kind(self.src, self.dst)

    def describe(self) -> str:
        return f"{self.src}->{self.dst} {self.item} ({self.mode})"


@dataclass(frozen=True)
class Tile:
    """Cut ``item`` on ``node`` into ``k`` width-wise windows with ``halo`` latent columns."""

    node: str
    item: str
    k: int
    halo: int


@dataclass(frozen=True)
class Stitch:
    """Assemble items ``item@0..k-1`` (their cores) on ``node`` into ``item``."""

    node: str
    item: str
    k: int


@dataclass(frozen=True)
class ParallelDenoise:
    """Nodes ``nodes[i]`` denoise ``latent@i`` over steps ``start..stop`` in parallel.

    Every ``sync_every`` steps (0 = never) each node sends its neighbours the halo columns they need,
    over the backhaul (analog). ``halo`` is in latent columns.
    """

    nodes: tuple[str, ...]
    start: int | None
    stop: int | None
    denoiser: str
    sync_every: int
    halo: int


Op = Stage | Transfer | Tile | Stitch | ParallelDenoise


@dataclass(frozen=True)
class Plan:
    """A protocol as data: operations in execution order, and where the result lands.

    Attributes:
        name: Protocol name.
        ops: Operations in order.
        result_node: Node holding the final ``image`` (the UE, or an ES for UIEG/UIDG/UIDCG).
        description: One line for ``megen protocols``.
    """

    name: str
    ops: tuple[Op, ...]
    result_node: str = "UE"
    description: str = ""

    def nodes(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for op in self.ops:
            for n in op_nodes(op):
                seen[n] = None
        return tuple(seen)

    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(op for op in self.ops if isinstance(op, Transfer))

    def stages_on(self, node: str) -> list[str]:
        out: list[str] = []
        for op in self.ops:
            if isinstance(op, Stage) and op.node == node:
                out.append(op.describe())
            elif isinstance(op, ParallelDenoise) and node in op.nodes:
                out.append(f"D[par,{op.denoiser}]@{op.nodes.index(node)}")
        return out


def op_nodes(op: Op) -> Iterable[str]:
    """The nodes an operation involves."""
    if isinstance(op, Stage | Tile | Stitch):
        return (op.node,)
    if isinstance(op, Transfer):
        return (op.src, op.dst)
    return op.nodes
