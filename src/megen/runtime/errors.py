"""Errors of the distributed runtime."""

from __future__ import annotations

from megen.errors import MegenError


class NodeUnavailable(MegenError):
    """A node's executor cannot be reached (server down, actor dead, connection refused or timed out).

    Raised by remote executors; the fault handling of the runtime catches it and moves the node's work
    to a live node, recording the fault. Anything else a remote node reports (a bad request, a failed
    stage) is an ordinary :class:`~megen.errors.MegenError`.

    Attributes:
        node: The node that was lost (``"ES1"`` ...).
    """

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"node {node} unavailable: {reason}")
        self.node = node
        self.reason = reason
