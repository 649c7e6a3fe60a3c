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

An item is named by an :class:`ItemRef` (``base`` and ``tile``); ``str(ref)`` is the display form
above (``"latent@1"``), which :meth:`ItemRef.parse` reads back (plans written as TOML use it).

Operations:

* :class:`Stage` runs one stage (``T E Z D G K C``) on one node.
* :class:`Transfer` moves an item from one node to another over a link (analog or digital).
* :class:`Tile` cuts an item into ``k`` overlapping windows (halo) on one node; :class:`Stitch`
  assembles the windows' cores; :class:`ParallelDenoise` denoises windows on several nodes at once,
  exchanging halos over the backhaul every ``sync_every`` steps.

Every operation declares what it reads, writes and needs (:meth:`Stage.accesses` and friends, as
:class:`Access` records) and its structural problems (``problem()``), so validation
(:mod:`megen.protocols.validate`) is one generic symbolic walk and the engine reads the same
declarations (e.g. which inputs a stage waits for).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from megen.config import LinkKind
from megen.errors import MegenError

StageKind = Literal["T", "E", "Z", "D", "G", "K", "C"]
Mode = Literal["analog", "digital"]

NODES = ("UE", "ES1", "ES2", "ES3", "ES4")
MAX_PLAN_OPS = 10_000
"""Most operations one plan may hold (the built-in protocols use well under 100)."""

#: Item names (bases); the tileable ones can be cut into tiles ``x@i``.
ITEMS = ("prompt", "reference", "cond", "z_ref", "latent", "image", "sketch")
TILEABLE = ("latent", "z_ref", "image", "sketch")

#: Model parts each stage needs on its node (``D`` and ``C`` also need their denoiser, see
#: :meth:`Stage.parts`).
STAGE_PARTS: dict[str, tuple[str, ...]] = {
    "T": ("text",),
    "E": ("vae",),
    "Z": (),
    "D": (),
    "G": ("vae",),
    "K": ("vae",),
    "C": ("vae", "text"),
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

#: Stages that may work on a tile.
TILE_STAGES = ("D", "G", "K")


def default_denoiser(node: str) -> str:
    """The denoiser a node uses when a stage names none: the UE its own (``ue``), an ES ``es``.

    The one definition of the rule, read by the engine and by validation.
    """
    return "ue" if node == "UE" else "es"


def denoiser_part(denoiser: str) -> str:
    """The model part holding a named denoiser (``"es"`` -> ``"unet_es"``)."""
    return f"unet_{denoiser}"


@dataclass(frozen=True)
class ItemRef:
    """A reference to an item on a node: ``base`` (one of :data:`ITEMS`) and an optional tile index.

    Example:
        >>> ItemRef.parse("latent@1"), str(ItemRef("latent", 1)), str(ItemRef("cond"))
        (ItemRef(base='latent', tile=1), 'latent@1', 'cond')
    """

    base: str
    tile: int | None = None

    def __str__(self) -> str:
        return self.base if self.tile is None else f"{self.base}@{self.tile}"

    @classmethod
    def parse(cls, text: str | ItemRef) -> ItemRef:
        """``"latent"`` or ``"latent@1"`` (or an :class:`ItemRef`, returned as is) -> :class:`ItemRef`."""
        if isinstance(text, ItemRef):
            return text
        if not isinstance(text, str):
            raise MegenError(f"an item must be a name such as 'latent' or 'latent@1', got {text!r}")
        base, sep, tile = text.partition("@")
        if base not in ITEMS:
            raise MegenError(f"unknown item {text!r}; items are {', '.join(ITEMS)} (tiles: 'latent@1')")
        if not sep:
            return cls(base)
        if not tile.isdigit():
            raise MegenError(f"bad tile index in item {text!r}")
        return cls(base, int(tile))

    def at(self, tile: int | None) -> ItemRef:
        """The same base item on tile ``tile`` (or the whole item for ``None``)."""
        return ItemRef(self.base, tile)


@dataclass(frozen=True)
class Access:
    """What one operation does on one node: items read (must be held), written, model parts needed."""

    node: str
    reads: tuple[ItemRef, ...] = ()
    writes: tuple[ItemRef, ...] = ()
    parts: tuple[str, ...] = ()


def link_kind(src: str, dst: str) -> LinkKind:
    """``uplink`` (UE -> ES), ``downlink`` (ES -> UE) or ``backhaul`` (ES -> ES)."""
    if src == dst:
        raise MegenError(f"a transfer needs two different nodes, got {src} -> {dst}")
    if src == "UE":
        return "uplink"
    if dst == "UE":
        return "downlink"
    return "backhaul"


def _item_field(obj: object, value: str | ItemRef) -> None:
    object.__setattr__(obj, "item", ItemRef.parse(value))


@dataclass(frozen=True)
class Stage:
    """One stage on one node.

    Attributes:
        kind: ``T E Z D G K C``.
        node: Where it runs.
        start: First denoising step (``D``); ``None`` = the strength's start step.
        stop: Last denoising step, exclusive (``D``); ``None`` = ``N``.
        denoiser: ``"es"`` or ``"ue"`` (``D`` and ``C``); ``None`` = :func:`default_denoiser`.
        tile: Work on tile ``i`` (items ``latent@i`` ...) instead of the full item.
    """

    kind: StageKind
    node: str
    start: int | None = None
    stop: int | None = None
    denoiser: str | None = None
    tile: int | None = None

    @property
    def denoiser_name(self) -> str:
        """The denoiser this stage uses (its own, or the node's default)."""
        return self.denoiser or default_denoiser(self.node)

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

    def io(self, image_to_image: bool) -> tuple[tuple[ItemRef, ...], ItemRef]:
        """``(reads, write)`` of this stage (tileable items on the stage's tile)."""
        inputs, output = STAGE_IO[self.kind]
        if self.kind == "Z" and image_to_image:
            inputs = ("z_ref",)

        def ref(base: str) -> ItemRef:
            return ItemRef(base, self.tile if base in TILEABLE else None)

        return tuple(ref(b) for b in inputs), ref(output)

    def parts(self) -> tuple[str, ...]:
        """Model parts the stage needs on its node."""
        extra = (denoiser_part(self.denoiser_name),) if self.kind in ("D", "C") else ()
        return STAGE_PARTS[self.kind] + extra

    def accesses(self, image_to_image: bool) -> tuple[Access, ...]:
        reads, write = self.io(image_to_image)
        return (Access(self.node, reads, (write,), self.parts()),)

    def problem(self) -> str | None:
        if self.kind not in STAGE_IO:
            return f"unknown stage {self.kind!r}"
        if self.tile is not None and self.kind not in TILE_STAGES:
            return "only D, G and K can work on a tile"
        return None

    def steps(self) -> tuple[int | None, int | None] | None:
        """The denoising step range ``(start, stop)`` (``D`` only)."""
        return (self.start, self.stop) if self.kind == "D" else None


@dataclass(frozen=True)
class Transfer:
    """Move ``item`` from ``src`` to ``dst`` (``mode``: analog or digital transmission).

    ``item`` may be given as text (``"latent@1"``); it is stored as an :class:`ItemRef`.
    """

    item: ItemRef
    src: str
    dst: str
    mode: Mode = "analog"
    core_only: bool = False  # for tile items: send the tile's core, not its halo

    def __post_init__(self) -> None:
        _item_field(self, self.item)

    @property
    def link(self) -> LinkKind:
        return link_kind(self.src, self.dst)

    def describe(self) -> str:
        return f"{self.src}->{self.dst} {self.item} ({self.mode})"

    def accesses(self, image_to_image: bool) -> tuple[Access, ...]:
        return (Access(self.src, reads=(self.item,)), Access(self.dst, writes=(self.item,)))

    def problem(self) -> str | None:
        if self.src == self.dst:
            return "source and destination are the same node"
        if self.mode not in ("analog", "digital"):
            return f"unknown transmission mode {self.mode!r}"
        if self.item.base == "cond":
            return "send the prompt, not the text embedding"
        return None

    def steps(self) -> None:
        return None


@dataclass(frozen=True)
class Tile:
    """Cut ``item`` on ``node`` into ``k`` width-wise windows with ``halo`` latent columns."""

    node: str
    item: ItemRef
    k: int
    halo: int

    def __post_init__(self) -> None:
        _item_field(self, self.item)

    def describe(self) -> str:
        return f"tile {self.item} x{self.k} on {self.node}"

    def accesses(self, image_to_image: bool) -> tuple[Access, ...]:
        return (Access(self.node, (self.item,), tuple(self.item.at(i) for i in range(self.k))),)

    def problem(self) -> str | None:
        if self.item.base not in TILEABLE or self.item.tile is not None:
            return f"{str(self.item)!r} cannot be tiled"
        if self.k < 2:
            return f"tiling needs k >= 2, got {self.k}"
        return None

    def steps(self) -> None:
        return None


@dataclass(frozen=True)
class Stitch:
    """Assemble items ``item@0..k-1`` (their cores) on ``node`` into ``item``."""

    node: str
    item: ItemRef
    k: int

    def __post_init__(self) -> None:
        _item_field(self, self.item)

    def describe(self) -> str:
        return f"stitch {self.item} x{self.k} on {self.node}"

    def accesses(self, image_to_image: bool) -> tuple[Access, ...]:
        return (Access(self.node, tuple(self.item.at(i) for i in range(self.k)), (self.item,)),)

    def problem(self) -> str | None:
        if self.item.base not in TILEABLE or self.item.tile is not None:
            return f"{str(self.item)!r} cannot be stitched"
        return None

    def steps(self) -> None:
        return None


@dataclass(frozen=True)
class ParallelDenoise:
    """Nodes ``nodes[i]`` denoise ``latent@i`` over steps ``start..stop`` in parallel.

    Every ``sync_every`` steps (0 = never) each node sends its neighbours the halo columns they need,
    over the backhaul (analog). ``halo`` is in latent columns.
    """

    nodes: tuple[str, ...]
    start: int | None = None
    stop: int | None = None
    denoiser: str = "es"
    sync_every: int = 1
    halo: int = 2

    def describe(self) -> str:
        return f"parallel D({self.denoiser}) on {', '.join(self.nodes)}"

    def tile_stage(self, i: int, start: int, stop: int) -> Stage:
        """The stage node ``nodes[i]`` runs for steps ``start..stop`` of its tile."""
        return Stage("D", self.nodes[i], start=start, stop=stop, denoiser=self.denoiser, tile=i)

    def accesses(self, image_to_image: bool) -> tuple[Access, ...]:
        return tuple(
            a for i in range(len(self.nodes)) for a in self.tile_stage(i, 0, 0).accesses(image_to_image)
        )

    def problem(self) -> str | None:
        if self.sync_every < 0:
            return "sync_every must be >= 0"
        return None

    def steps(self) -> tuple[int | None, int | None]:
        return (self.start, self.stop)


Op = Stage | Transfer | Tile | Stitch | ParallelDenoise


@dataclass(frozen=True)
class Plan:
    """A protocol as data: operations in execution order, and where the result lands.

    Attributes:
        name: Protocol name.
        ops: Operations in order.
        result_node: Node holding the final ``image`` (the UE, or an ES for UIEG/UIDG/UIDCG); the
            run's JSON reports it as ``delivered_to``.
        description: One line for ``megen protocols``.
        fallback: Operations the engine runs only when the run is in outage (a transfer failed after
            HARQ), after the outage is known; they must leave an ``image`` on ``result_node``, which
            the images in outage then show (``central-fallback``: the UE generates its own image).
            Empty: an outage image is reported as such (``outage: true``), never replaced.
    """

    name: str
    ops: tuple[Op, ...]
    result_node: str = "UE"
    description: str = ""
    fallback: tuple[Op, ...] = ()

    def nodes(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for op in self.ops + self.fallback:
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
