"""Compiled CPU kernel of the layered normalised min-sum LDPC decoder (:mod:`megen.link.ldpc`).

The torch decoder (:meth:`~megen.link.ldpc.QcLdpcCode.decode`, backend ``nms``) runs every layer as a
handful of tensor operations over ``[degree, Z, blocks]``; on the CPU its time goes to the per-call
overhead of those operations (46 layers x up to 20 iterations per decode, whatever the block size), which
dominates the short blocks of control data and side information. This kernel runs the same schedule as
plain loops compiled by numba, one block at a time, and gives the same bits: every value is float32,
computed by the same operations in the same order (``q = app - r_old``; the exclusive minimum of
``|q|``; ``r_new = (min * sign(q)) * (scale * prod sign)``; ``app = q + r_new``), the layers in the same
order (the checks of one layer touch distinct variables, so updating them one after another equals
the torch decoder's gather-then-scatter), and the same per-block early stop on a zero syndrome
after each iteration.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _update_layer(a, msgs, q, columns, d, s, z, scale) -> None:  # pragma: no cover - compiled
    """One layer's ``Z`` checks of block ``a`` (edges ``s .. s + d Z`` of ``columns``), in place."""
    one = np.float32(1.0)
    for c in range(z):
        min1 = np.float32(np.inf)
        min2 = np.float32(np.inf)
        at = -1
        negative = False
        for j in range(d):
            e = s + c * d + j
            v = a[columns[e]] - msgs[e]
            q[j] = v
            m = abs(v)
            if m < min1:
                min2 = min1
                min1 = m
                at = j
            elif m < min2:
                min2 = m
            if np.signbit(v):
                negative = not negative
        factor = scale * (-one if negative else one)
        for j in range(d):
            e = s + c * d + j
            v = q[j]
            m = min2 if j == at else min1
            r = (m * (-one if np.signbit(v) else one)) * factor
            msgs[e] = r
            a[columns[e]] = v + r


@njit(cache=True, nogil=True)
def _syndrome_is_zero(a, columns, degrees, starts, z) -> bool:  # pragma: no cover - compiled
    """Whether the hard decisions ``a < 0`` of one block satisfy every check of every layer."""
    for layer in range(degrees.shape[0]):
        d = degrees[layer]
        s = starts[layer]
        for c in range(z):
            parity = False
            for j in range(d):
                if a[columns[s + c * d + j]] < 0:
                    parity = not parity
            if parity:
                return False
    return True


@njit(cache=True, nogil=True)
def nms_decode(
    app: np.ndarray,
    columns: np.ndarray,
    degrees: np.ndarray,
    starts: np.ndarray,
    z: int,
    k_ldpc: int,
    max_iterations: int,
    scale: np.float32,
    bits: np.ndarray,
    converged: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Decode blocks in place.

    Args:
        app: float32 ``[C, V]`` a-priori LLRs per block (``log P(0)/P(1)``; punctured and unsent bits
            +0.0, fillers known); overwritten with the a-posteriori LLRs.
        columns: int64 ``[E]`` variable node of each edge, the layers' edges one after another, each
            layer check-major (``[Z, degree]``: a check's edges are adjacent).
        degrees: int64 ``[L]`` check degree of each layer.
        starts: int64 ``[L]`` first edge of each layer in ``columns``.
        z: Lifting size (checks per layer).
        k_ldpc: Systematic bits to return per block.
        max_iterations: Most decoder iterations (a block stops at its first zero syndrome).
        scale: Min-sum normalisation, float32.
        bits: uint8 ``[C, k_ldpc]`` output hard decisions.
        converged: bool ``[C]`` output zero-syndrome flags.
    """
    msgs = np.zeros(columns.shape[0], dtype=np.float32)
    q = np.empty(max(degrees.max(), 1), dtype=np.float32)
    for b in range(app.shape[0]):
        a = app[b]
        msgs[:] = np.float32(0.0)
        done = False
        for _ in range(max_iterations):
            for layer in range(degrees.shape[0]):
                _update_layer(a, msgs, q, columns, degrees[layer], starts[layer], z, scale)
            if _syndrome_is_zero(a, columns, degrees, starts, z):
                done = True
                break
        for i in range(k_ldpc):
            bits[b, i] = 1 if a[i] < 0 else 0
        converged[b] = done


__all__ = ["nms_decode"]
