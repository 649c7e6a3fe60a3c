"""The unsplit pipeline, run by the plan engine as a one-node plan (the fidelity target of every run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from megen.models.ldm import StagedLDM
from megen.protocols.builders import build_unsplit_plan
from megen.protocols.engine import Engine, EngineConfig
from megen.protocols.ledger import EngineOutput
from megen.protocols.plan import denoiser_part

if TYPE_CHECKING:
    from megen.session import Session


def run_unsplit(
    model: StagedLDM,
    prompts: Sequence[str],
    reference: torch.Tensor | None = None,
    *,
    num_steps: int,
    strength: float | None,
    guidance: float,
    seed: int,
    denoiser: str = "es",
    session: Session | None = None,
) -> EngineOutput:
    """``T [E] Z D G`` on one node with ``denoiser``, through the engine (same random streams as plans).

    Args:
        model: The staged model.
        prompts: ``B`` prompts.
        reference: Reference images ``[B, C, H, W]`` in ``[0, 1]`` (image-to-image), or ``None``.
        num_steps: ``N``.
        strength: SDEdit strength (ignored without a reference).
        guidance: CFG scale.
        seed: Master seed of the random streams (:mod:`megen.rng`).
        denoiser: The denoiser that runs every step.
        session: Caches (stage memo, FLOP meter, profiles); ``None``: a fresh one.

    Returns:
        The engine output: ``image`` ``[B, C, H, W]``, ``latent`` (the final latent) and the costs.
    """
    from megen.session import Session

    session = session or Session()
    parts = frozenset({"text", "vae", denoiser_part(denoiser)})
    cfg = EngineConfig(
        num_steps=num_steps,
        strength=strength if reference is not None else None,
        guidance=guidance,
        seed=seed,
        ue_parts=parts,
    )
    engine = Engine(model, None, session.profiles(None), session.meter, session.memo(model))
    return engine.run(build_unsplit_plan(reference is not None, denoiser=denoiser), prompts, cfg, reference)


__all__ = ["run_unsplit"]
