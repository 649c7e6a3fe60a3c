"""Power allocation for analog seeds: across KLT components, and across fading blocks.

Both allocations minimise the mean squared error of a linear MMSE receiver under a total energy
budget (the average power constraint), which gives the "reverse water-filling" shape
``E_i = max(0, sigma (t sqrt(lam_i) - sigma))`` rather than the capacity water-filling
``p = max(0, mu - 1/g)``:

* :func:`component_energies`: energy per KLT component of variance ``lam_i`` on a channel with noise
  ``sigma^2`` per real dimension. The MSE of component ``i`` is ``lam_i sigma^2 / (sigma^2 + E_i)``.
* :func:`block_powers`: power per fading block of gain-to-noise ratio ``g_j`` for unit-variance
  symbols; the MSE of a symbol in block ``j`` is ``1 / (1 + p_j g_j)``.
* :func:`transmit_waterfilled`: sends unit-power symbols over a block-fading channel whose blocks the
  transmitter knows (fed back by the receiver), with :func:`block_powers`; the channel estimation
  (pilots) and the feedback (:data:`FEEDBACK_BITS_PER_BLOCK` per block at
  :data:`FEEDBACK_BITS_PER_USE`) are counted in channel uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from megen.link.channels import ChannelConfig, complex_normal, draw_fading, pilot_symbols_for

#: Quantised power level fed back per fading block (bits).
FEEDBACK_BITS_PER_BLOCK = 8
#: Feedback is sent robustly: one bit per channel use (QPSK at rate 1/2).
FEEDBACK_BITS_PER_USE = 1
_BISECTION_STEPS = 60


def component_energies(var: torch.Tensor, copies: torch.Tensor, energy: float, noise: float) -> torch.Tensor:
    """MMSE-optimal energy per component (reverse water-filling), ``[B, n]`` float64.

    Args:
        var: Component variances ``[B, n]`` (> 0).
        copies: Real dimensions given to each component ``[n]`` (0 = not sent).
        energy: Total energy of an item (its channel uses, for unit power per complex use).
        noise: Noise variance per real dimension (``N0 / 2``), > 0.

    Returns:
        ``E [B, n]``, ``sum_i E_i = energy`` per item, zero for components without dimensions.
    """
    sigma = math.sqrt(noise)
    root = var.double().sqrt()
    active = (copies > 0).unsqueeze(0).expand_as(root).clone()
    for _ in range(root.shape[1] + 1):
        t = (energy + active.sum(1, keepdim=True) * noise) / (sigma * (root * active).sum(1, keepdim=True))
        keep = active & (t * root > sigma)
        if torch.equal(keep, active):
            break
        active = keep
    out = torch.where(active, sigma * (t * root - sigma), torch.zeros_like(root))
    return out * (energy / out.sum(1, keepdim=True))


def block_powers(gain: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """MSE-optimal power per fading block for unit-variance symbols, ``[B, J]`` float64.

    Minimises ``sum_j n_j / (1 + p_j g_j)`` subject to ``sum_j n_j p_j = sum_j n_j``:
    ``p_j = max(0, t / sqrt(g_j) - 1 / g_j)`` with ``t`` found by bisection.

    Args:
        gain: Gain-to-noise ratios ``|h_j|^2 / N0`` ``[B, J]`` (> 0).
        lengths: Symbols per block ``[J]``.

    Returns:
        Powers ``[B, J]``, exactly meeting the average power constraint per item.
    """
    g = gain.double().clamp_min(1e-12)
    n = lengths.double().unsqueeze(0)
    total = n.sum()
    lo = torch.zeros(g.shape[0], 1, dtype=torch.float64)
    hi = ((total + (n / g).sum(1, keepdim=True)) / (n / g.sqrt()).sum(1, keepdim=True)).clamp_min(1e-12)
    hi = hi * 2.0 + 1.0 / g.min(1, keepdim=True).values.sqrt()
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        used = (n * (mid / g.sqrt() - 1.0 / g).clamp_min(0.0)).sum(1, keepdim=True)
        lo, hi = torch.where(used < total, mid, lo), torch.where(used < total, hi, mid)
    p = (hi / g.sqrt() - 1.0 / g).clamp_min(0.0)
    return p * (total / (n * p).sum(1, keepdim=True))


@dataclass(frozen=True)
class WaterfilledTransmission:
    """Outcome of :func:`transmit_waterfilled`.

    Attributes:
        unbiased: Complex ``[B, K]``: ``x + e`` where the block had power, 0 where it had none.
        noise_var: ``[B, K]`` variance of ``e`` per complex symbol in ``x``'s units (the receiver's
            estimate from its channel estimate; ``inf`` in blocks without power).
        power: ``[B, K]`` power each symbol was sent with (mean 1 per item).
        channel_uses: Data symbols + pilots + feedback uses of the batch.
        pilot_symbols: Pilots of the batch.
        feedback_uses: Uses spent on feeding the block powers back to the transmitter.
    """

    unbiased: torch.Tensor
    noise_var: torch.Tensor
    power: torch.Tensor
    channel_uses: int
    pilot_symbols: int
    feedback_uses: int


def transmit_waterfilled(
    x: torch.Tensor, channel: ChannelConfig, generator: torch.Generator
) -> WaterfilledTransmission:
    """Send unit-power symbols ``[B, K]`` over block fading with transmitter CSI and block powers.

    The receiver estimates each block (pilots if ``channel.csi == "estimated"``), computes the
    powers :func:`block_powers` from its estimates and feeds them back; the transmitter scales each
    block by ``sqrt(p_j)``; the receiver equalises with ``sqrt(p_j) h_hat_j`` (ZF; the seed decoders
    do the MMSE weighting). Conventions as in :mod:`megen.link.channels`.
    """
    batch, k = x.shape
    per_block = channel.data_symbols_per_block
    blocks = -(-k // per_block)
    n0 = channel.noise_variance
    h = draw_fading(channel, batch, blocks, generator).to(torch.complex128)
    est_var = n0 / channel.pilots_per_block if channel.csi == "estimated" else 0.0
    h_est = h + complex_normal((batch, blocks), est_var, generator, torch.complex128) if est_var else h
    lengths = torch.full((blocks,), per_block, dtype=torch.float64)
    lengths[-1] = k - per_block * (blocks - 1)
    power = h_est.abs().square().clamp_min(1e-30)
    p = block_powers(power / (n0 + est_var), lengths)
    expand = _expander(per_block, k)
    amp = p.sqrt()
    y = expand(h * amp) * x.to(torch.complex128) + complex_normal((batch, k), n0, generator, torch.complex128)
    g = expand(h_est * amp)
    sent = expand(p) > 0
    unbiased = torch.where(sent, y / torch.where(sent, g, torch.ones_like(g)), torch.zeros_like(y))
    noise = torch.where(
        sent, (n0 + est_var) / g.abs().square().clamp_min(1e-30), torch.full_like(g.real, math.inf)
    )
    pilots = batch * pilot_symbols_for(k, channel)
    feedback = batch * math.ceil(blocks * FEEDBACK_BITS_PER_BLOCK / FEEDBACK_BITS_PER_USE)
    return WaterfilledTransmission(
        unbiased.to(x.dtype), noise, expand(p), batch * k + pilots + feedback, pilots, feedback
    )


def _expander(per_block: int, k: int):
    def expand(blocks: torch.Tensor) -> torch.Tensor:
        b, j = blocks.shape
        return blocks.unsqueeze(-1).expand(b, j, per_block).reshape(b, -1)[:, :k]

    return expand
