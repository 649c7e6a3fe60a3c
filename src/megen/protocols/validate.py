"""Plan validation: reject a plan that cannot run, before anything runs, saying why.

The check executes the plan symbolically: which items each node holds after each operation, whether
each stage's node has the model parts it needs, and whether step ranges are inside ``0..N``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from megen.errors import MegenError
from megen.protocols.plan import (
    NODES,
    STAGE_IO,
    STAGE_PARTS,
    ParallelDenoise,
    Plan,
    Stage,
    Stitch,
    Tile,
    Transfer,
    op_nodes,
)

if TYPE_CHECKING:
    from megen.protocols.engine import EngineConfig

TILEABLE = ("latent", "z_ref", "image", "sketch")


def _parts(node: str, cfg: EngineConfig) -> frozenset[str]:
    return cfg.ue_parts if node == "UE" else cfg.es_parts


def _need_denoiser(node: str, den: str | None, cfg: EngineConfig, where: str) -> None:
    den = den or ("ue" if node == "UE" else "es")
    part = f"unet_{den}"
    if part not in _parts(node, cfg):
        hint = " (give the UE the ES denoiser with --ue-model es)" if node == "UE" and den == "es" else ""
        raise MegenError(f"{where}: node {node} has no {den.upper()} denoiser{hint}")


def _check_range(start: int | None, stop: int | None, n: int, s0: int, where: str) -> None:
    a = s0 if start is None else start
    b = n if stop is None else stop
    if not (0 <= a <= n and 0 <= b <= n):
        raise MegenError(f"{where}: denoising steps {a}..{b} are outside 0..{n}")
    if a > b:
        raise MegenError(f"{where}: denoising start {a} is after stop {b}")


def validate_plan(plan: Plan, cfg: EngineConfig, *, image_to_image: bool) -> None:
    """Raise :class:`MegenError` if ``plan`` cannot run under ``cfg``.

    Args:
        plan: The plan.
        cfg: Run settings (steps, strength, node capabilities).
        image_to_image: Whether a reference image is present at the UE.
    """
    n = cfg.num_steps
    s0 = 0
    if image_to_image:
        from megen.models.ldm import start_step_for

        s0 = start_step_for(n, cfg.strength)
    held: dict[str, set[str]] = {node: set() for node in NODES}
    held["UE"].add("prompt")
    if image_to_image:
        held["UE"].add("reference")
    tiles = 0
    if not plan.ops:
        raise MegenError(f"plan {plan.name!r} has no operations")
    for idx, op in enumerate(plan.ops):
        where = f"plan {plan.name!r}, step {idx + 1}"
        for node in op_nodes(op):
            if node not in NODES:
                raise MegenError(f"{where}: unknown node {node!r} (nodes are {', '.join(NODES)})")
        if isinstance(op, Stage):
            if op.kind not in STAGE_IO:
                raise MegenError(f"{where}: unknown stage {op.kind!r}")
            where += f" ({op.describe()} on {op.node})"
            for part in STAGE_PARTS[op.kind]:
                if part not in _parts(op.node, cfg):
                    raise MegenError(f"{where}: node {op.node} has no {part} model part")
            inputs, output = STAGE_IO[op.kind]
            if op.kind == "Z" and image_to_image:
                inputs = ("z_ref",)
            suffix = "" if op.tile is None else f"@{op.tile}"
            if op.tile is not None and op.kind not in ("D", "G", "K"):
                raise MegenError(f"{where}: only D, G and K can work on a tile")
            if op.tile is not None and not 0 <= op.tile < max(tiles, 1):
                raise MegenError(f"{where}: tile {op.tile} does not exist (no Tile op made it)")
            for item in inputs:
                name = item + suffix if item in TILEABLE else item
                if name not in held[op.node]:
                    raise MegenError(
                        f"{where}: needs {name!r} on {op.node}, which does not hold it at this point"
                    )
            if op.kind in ("D", "C"):
                _need_denoiser(op.node, op.denoiser, cfg, where)
            if op.kind == "D":
                _check_range(op.start, op.stop, n, s0, where)
            held[op.node].add(output + suffix if output in TILEABLE else output)
        elif isinstance(op, Transfer):
            where += f" (transfer {op.describe()})"
            if op.src == op.dst:
                raise MegenError(f"{where}: source and destination are the same node")
            if op.mode not in ("analog", "digital"):
                raise MegenError(f"{where}: unknown transmission mode {op.mode!r}")
            if op.item not in held[op.src]:
                raise MegenError(f"{where}: {op.src} does not hold {op.item!r} at this point")
            if op.item == "cond":
                raise MegenError(f"{where}: send the prompt, not the text embedding")
            held[op.dst].add(op.item)
        elif isinstance(op, Tile):
            if op.item not in TILEABLE:
                raise MegenError(f"{where}: {op.item!r} cannot be tiled")
            if op.item not in held[op.node]:
                raise MegenError(f"{where}: {op.node} does not hold {op.item!r} to tile")
            if op.k < 2:
                raise MegenError(f"{where}: tiling needs k >= 2, got {op.k}")
            tiles = op.k
            for i in range(op.k):
                held[op.node].add(f"{op.item}@{i}")
        elif isinstance(op, Stitch):
            for i in range(op.k):
                if f"{op.item}@{i}" not in held[op.node]:
                    raise MegenError(f"{where}: {op.node} lacks tile {op.item}@{i} to stitch")
            held[op.node].add(op.item)
        elif isinstance(op, ParallelDenoise):
            _check_range(op.start, op.stop, n, s0, where)
            if op.sync_every < 0:
                raise MegenError(f"{where}: sync_every must be >= 0")
            for i, node in enumerate(op.nodes):
                for item in (f"latent@{i}", "cond"):
                    if item not in held[node]:
                        raise MegenError(f"{where}: {node} needs {item!r} for parallel denoising")
                _need_denoiser(node, op.denoiser, cfg, where)
        else:
            raise MegenError(f"{where}: unknown operation {op!r}")
    if "image" not in held[plan.result_node]:
        raise MegenError(f"plan {plan.name!r} never delivers an image to {plan.result_node}")
