"""Plan validation: reject a plan that cannot run, before anything runs, saying why.

The check is one generic symbolic walk over the operations' declarations (:mod:`megen.protocols.plan`):
each operation's structural ``problem()``, its step range, and for each of its :class:`Access`
records the model parts the node needs, the items it reads (which the node must hold at that point)
and the items it writes (which the node holds from then on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from megen.errors import MegenError
from megen.protocols.plan import MAX_PLAN_OPS, NODES, Access, ItemRef, Op, Plan, Stage, op_nodes

if TYPE_CHECKING:
    from megen.protocols.engine import EngineConfig


def _part_missing(node: str, part: str) -> str:
    if part.startswith("unet_"):
        den = part.removeprefix("unet_")
        hint = " (give the UE the ES denoiser with --ue-model es)" if node == "UE" and den == "es" else ""
        return f"node {node} has no {den.upper()} denoiser{hint}"
    return f"node {node} has no {part} model part"


def _check_range(steps: tuple[int | None, int | None], n: int, s0: int, where: str) -> None:
    a = s0 if steps[0] is None else steps[0]
    b = n if steps[1] is None else steps[1]
    if not (0 <= a <= n and 0 <= b <= n):
        raise MegenError(f"{where}: denoising steps {a}..{b} are outside 0..{n}")
    if a > b:
        raise MegenError(f"{where}: denoising start {a} is after stop {b}")


def _apply(access: Access, held: dict[str, set[ItemRef]], cfg: EngineConfig, where: str) -> None:
    node = access.node
    for part in access.parts:
        if part not in cfg.parts(node):
            raise MegenError(f"{where}: {_part_missing(node, part)}")
    for item in access.reads:
        if item not in held[node]:
            raise MegenError(f"{where}: needs {str(item)!r} on {node}, which does not hold it at this point")
    held[node].update(access.writes)


def validate_plan(plan: Plan, cfg: EngineConfig, *, image_to_image: bool) -> None:
    """Raise :class:`MegenError` if ``plan`` cannot run under ``cfg``.

    Args:
        plan: The plan.
        cfg: Run settings (steps, strength, node capabilities).
        image_to_image: Whether a reference image is present at the UE.
    """
    from megen.models.ldm import start_step_for

    n = cfg.num_steps
    s0 = start_step_for(n, cfg.strength) if image_to_image else 0
    held: dict[str, set[ItemRef]] = {node: set() for node in NODES}
    held["UE"].add(ItemRef("prompt"))
    if image_to_image:
        held["UE"].add(ItemRef("reference"))
    if not plan.ops:
        raise MegenError(f"plan {plan.name!r} has no operations")
    if len(plan.ops) + len(plan.fallback) > MAX_PLAN_OPS:
        count = len(plan.ops) + len(plan.fallback)
        raise MegenError(f"plan {plan.name!r}: {count} operations; at most {MAX_PLAN_OPS}")
    if plan.result_node not in NODES:
        raise MegenError(f"plan {plan.name!r}: unknown result node {plan.result_node!r}")
    _walk(plan, plan.ops, held, cfg, image_to_image, (n, s0), "step")
    if ItemRef("image") not in held[plan.result_node]:
        raise MegenError(f"plan {plan.name!r} never delivers an image to {plan.result_node}")
    if plan.fallback:
        held[plan.result_node].discard(ItemRef("image"))
        _walk(plan, plan.fallback, held, cfg, image_to_image, (n, s0), "fallback step")
        if ItemRef("image") not in held[plan.result_node]:
            raise MegenError(f"plan {plan.name!r}: its fallback never makes an image on {plan.result_node}")


def _walk(
    plan: Plan,
    ops: tuple[Op, ...],
    held: dict[str, set[ItemRef]],
    cfg: EngineConfig,
    image_to_image: bool,
    steps_of: tuple[int, int],
    label: str,
) -> None:
    """Check ``ops`` in order, updating what each node ``held`` (``steps_of``: ``(N, start step)``)."""
    n, s0 = steps_of
    for idx, op in enumerate(ops):
        where = f"plan {plan.name!r}, {label} {idx + 1}"
        for node in op_nodes(op):
            if node not in NODES:
                raise MegenError(f"{where}: unknown node {node!r} (nodes are {', '.join(NODES)})")
        problem = op.problem()
        if problem is not None:
            raise MegenError(f"{where}: {problem}")
        where += f" ({op.describe()}{f' on {op.node}' if isinstance(op, Stage) else ''})"
        steps = op.steps()
        if steps is not None:
            _check_range(steps, n, s0, where)
        for access in op.accesses(image_to_image):
            _apply(access, held, cfg, where)
