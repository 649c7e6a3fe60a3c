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
:class:`~megen.protocols.plan.ParallelDenoise`. Each value must have its field's type: an integer
field takes a TOML integer (not ``3.0``, ``"3"`` or ``true``), a text field a string, a flag a boolean,
a choice one of its values. A plan holds at most :data:`MAX_PLAN_OPS` operations.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal

from megen.errors import MegenError
from megen.protocols.plan import (
    MAX_PLAN_OPS,
    ItemRef,
    Op,
    ParallelDenoise,
    Plan,
    Stage,
    Stitch,
    Tile,
    Transfer,
)

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
    if len(data["ops"]) > MAX_PLAN_OPS:
        raise MegenError(f"plan {source}: {len(data['ops'])} operations; at most {MAX_PLAN_OPS}")
    for key in ("name", "result_node", "description"):
        if key in data and not isinstance(data[key], str):
            raise MegenError(f"plan {source}: {key} must be a string, got {data[key]!r}")
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
        hints = _field_types(cls)
        for key, value in args.items():
            problem = _type_problem(value, hints.get(key))
            if problem:
                raise MegenError(f"plan {source}: op {i + 1} ({kind}) field {key!r} {problem}, got {value!r}")
        for f in dataclasses.fields(cls):  # an optional field may be left out (TOML has no null)
            if f.name not in args and _optional(hints.get(f.name)):
                args.setdefault(f.name, None)
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
        fallback=plan_from_dict({"ops": data["fallback"]}, source).ops if data.get("fallback") else (),
    )


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Resolved field annotations of an op dataclass (empty if they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _type_problem(value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for a field annotated ``hint`` (``None`` if nothing is).

    Handles ``int``, ``str``, ``bool``, ``Literal[...]``, ``tuple[str, ...]`` and their ``X | None``
    forms; other annotations are left to the op's own checks. ``bool`` is never accepted as ``int``.
    """
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None:
            return None
        return _type_problem(value, options[0]) if len(options) == 1 else None
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if typing.get_origin(hint) is Literal:
        return None if value in args and type(value) is type(args[0]) else f"must be one of {list(args)}"
    if typing.get_origin(hint) is tuple and args[-1:] == (Ellipsis,):
        ok = isinstance(value, list | tuple) and all(_type_problem(v, args[0]) is None for v in value)
        return None if ok else f"must be a list of {getattr(args[0], '__name__', args[0])}"
    return None


def load_plan(path: Path | str) -> Plan:
    """Read a plan from a TOML file.

    Raises:
        MegenError: the file is missing, a folder or unreadable, is not TOML, or is not a valid plan.
    """
    from megen.files import read_table

    data = read_table(path, "plan file")
    return plan_from_dict(data, str(path))


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
    out = {"name": plan.name, "result_node": plan.result_node, "description": plan.description, "ops": ops}
    if plan.fallback:
        out["fallback"] = plan_to_dict(Plan(plan.name, plan.fallback))["ops"]
    return out
