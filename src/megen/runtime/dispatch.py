"""Asynchronous dispatch of a parallel step: the stages of independent nodes run at the same time.

The engine walks a plan in order; a :class:`~megen.protocols.plan.ParallelDenoise` step hands it one
stage per edge server (:meth:`~megen.protocols.engine.Engine.run_stages`). In-process executors share
the engine's model and caches, so they run one after another; executors that only *wait* on their node
(a Ray actor, an HTTP server: attribute ``concurrent = True``) are submitted together, one thread each,
and the step ends when all have answered. The results come back in the order of ``ops``, so the
ledger is written exactly as for a sequential run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from megen.protocols.executors import NodeExecutor, RunContext, StageDone
from megen.protocols.plan import Stage


def is_concurrent(executor: NodeExecutor) -> bool:
    """Whether ``executor`` runs its stages elsewhere (so several may run at once)."""
    return bool(getattr(executor, "concurrent", False))


def run_stages_concurrently(
    nodes: Mapping[str, NodeExecutor], ops: Sequence[Stage], ctx: RunContext
) -> list[StageDone]:
    """Run ``ops`` (stages of distinct nodes) on their executors; concurrently where all allow it.

    Args:
        nodes: Executors by node name.
        ops: Stages, at most one per node.
        ctx: The run's context.

    Returns:
        What each stage reported, in the order of ``ops``.

    Raises:
        Whatever a stage raises (the first in ``ops`` order), after every submitted stage finished.
    """
    execs = [nodes[op.node] for op in ops]
    if len(ops) < 2 or not all(is_concurrent(ex) for ex in execs):
        return [ex.run_stage(op, ctx) for ex, op in zip(execs, ops, strict=True)]
    with ThreadPoolExecutor(max_workers=len(ops), thread_name_prefix="megen-stage") as pool:
        futures = [pool.submit(ex.run_stage, op, ctx) for ex, op in zip(execs, ops, strict=True)]
        return [f.result() for f in futures]


__all__ = ["is_concurrent", "run_stages_concurrently"]
