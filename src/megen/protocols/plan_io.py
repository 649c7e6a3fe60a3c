"""Plans from and to TOML (or plain dicts), so users can write their own placement in a file.

Layout::

    name = "es-then-ue"
    result_node = "UE"

    [[ops]]
    op = "transfer"
    item = "prompt"
    src = "UE"
    dst = "ES1"
    mode = "digital"

    [[ops]]
    op = "stage"
    kind = "D"
    node = "ES1"
    start = 0        # optional; default = the strength's start step
    stop = 12        # optional; default = N
    denoiser = "es"  # optional; default = the node's own

``op`` is one of ``stage``, ``transfer``, ``tile``, ``stitch``, ``parallel_denoise``; the other keys
are the fields of :class:`~megen.protocols.plan.Stage`, :class:`~megen.protocols.plan.Transfer`,
:class:`~megen.protocols.plan.Tile`, :class:`~megen.protocols.plan.Stitch` and
:class:`~megen.protocols.plan.ParallelDenoise`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from megen.errors import MegenError
from megen.protocols.plan import ItemRef, Op, ParallelDenoise, Plan, Stage, Stitch, Tile, Transfer

OP_TYPES: dict[str, type] = {
    "stage": Stage,
    "transfer": Transfer,
    "tile": Tile,
    "stitch": Stitch,
    "parallel_denoise": ParallelDenoise,
}
_NAMES = {v: k for k, v in OP_TYPES.items()}


def plan_from_dict(data: dict[str, Any], source: str = "<dict>") -> Plan:
    """Build a :class:`Plan` from plain data (see the module docstring for the layout)."""
    if not isinstance(data, dict) or not isinstance(data.get("ops"), list) or not data["ops"]:
        raise MegenError(f"plan {source}: needs a non-empty list of [[ops]]")
    ops: list[Op] = []
    for i, raw in enumerate(data["ops"]):
        if not isinstance(raw, dict):
            raise MegenError(f"plan {source}: op {i + 1} is not a table")
        kind = raw.get("op")
        cls = OP_TYPES.get(str(kind))
        if cls is None:
            raise MegenError(
                f"plan {source}: op {i + 1} has unknown op {kind!r}; use one of {', '.join(OP_TYPES)}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        args = {k: v for k, v in raw.items() if k != "op"}
        unknown = set(args) - fields
        if unknown:
            raise MegenError(f"plan {source}: op {i + 1} ({kind}) has unknown field(s) {sorted(unknown)}")
        if "nodes" in args:
            args["nodes"] = tuple(args["nodes"])
        try:
            ops.append(cls(**args))
        except TypeError as exc:
            raise MegenError(f"plan {source}: op {i + 1} ({kind}): {exc}") from None
    return Plan(
        name=str(data.get("name", Path(source).stem)),
        ops=tuple(ops),
        result_node=str(data.get("result_node", "UE")),
        description=str(data.get("description", "user plan")),
    )


def load_plan(path: Path | str) -> Plan:
    """Read a plan from a TOML file."""
    p = Path(path)
    if not p.is_file():
        raise MegenError(f"plan file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MegenError(f"plan file {p} is not valid TOML: {exc}") from None
    return plan_from_dict(data, str(p))


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """Plain-data form of a plan (``plan_from_dict(plan_to_dict(p)) == p``)."""
    ops = []
    for op in plan.ops:
        d: dict[str, Any] = {"op": _NAMES[type(op)]}
        for f in dataclasses.fields(op):
            v = getattr(op, f.name)
            if v is not None:
                d[f.name] = str(v) if isinstance(v, ItemRef) else v
        if "nodes" in d:
            d["nodes"] = list(d["nodes"])
        ops.append(d)
    return {"name": plan.name, "result_node": plan.result_node, "description": plan.description, "ops": ops}
