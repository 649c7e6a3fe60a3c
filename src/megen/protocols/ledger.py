"""Clocks and cost records of one plan execution.

The :class:`Ledger` books every stage and transfer the engine executes: measured FLOPs turn into
seconds and joules through the node's device profile, channel uses into seconds and joules through
the link's profile. Timeline rules (end-to-end latency along the plan's critical path):

* a stage starts when its node is free and all its inputs are present on the node;
* a transfer starts when its item is ready at the source and the directed link ``src -> dst`` is
  free (each ES has its own links, so parallel ESs transmit at the same time);
* the end-to-end latency is the time the final ``image`` is ready at the plan's result node;
* a plan's fallback (:attr:`~megen.protocols.plan.Plan.fallback`) starts on the result node no
  earlier than the end of the first failed transfer (when the outage is known);
* the engine books a stage's FLOPs and a transfer's channel uses pro rata for the images the path
  still serves (an image in outage is not generated or sent further; the fallback serves only them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from megen.costs.profiles import Profiles
from megen.protocols.links import Sent
from megen.protocols.plan import ItemRef


@dataclass(frozen=True)
class StageRecord:
    """One executed stage: FLOPs (measured), seconds and joules from the node's profile."""

    name: str
    node: str
    flops: int
    start_s: float
    end_s: float
    energy_j: float


@dataclass(frozen=True)
class TransferRecord:
    """One executed transfer with its link accounting (``item`` in display form, e.g. ``latent@1``)."""

    item: str
    src: str
    dst: str
    link: str
    mode: str
    channel_uses: int
    payload_bits: int
    ok: bool
    failures: int
    effective_snr_db: float | None
    start_s: float
    end_s: float
    energy_j: float
    transmissions: int = 0
    """Digital transmissions of its transport blocks, HARQ retransmissions and control data included."""


@dataclass
class EngineOutput:
    """Result of :meth:`megen.protocols.engine.Engine.run`.

    Attributes:
        image: Final images ``[B, C, H, W]`` at the plan's result node.
        latent: Final latent at the node that decoded it (``None`` for sketch protocols' completion).
        stages, transfers: Per-operation records, in execution order.
        latency_s: End-to-end latency (critical path), seconds.
        energy_j: Total energy (compute + transmit), joules.
        snr_aware_entries: Receiver-side denoising entries: ``(node, planned_step, entry_step)``.
        outage: Per image: a transfer it needed failed after HARQ (control data included) and no
            fallback replaced it; the image shown is then whatever arrived, not a result.
        fallback: Per image: the plan's fallback image is shown (``central-fallback`` on outage).
        delivered_to: The node where the image lands (the plan's result node: ``"UE"``, ``"ES1"`` ...).
        faults: Nodes lost during the run and where their work moved (:mod:`megen.runtime.faults`).
    """

    image: torch.Tensor
    latent: torch.Tensor | None
    stages: list[StageRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)
    latency_s: float = 0.0
    energy_j: float = 0.0
    snr_aware_entries: list[tuple[str, int, int]] = field(default_factory=list)
    outage: list[bool] = field(default_factory=list)
    fallback: list[bool] = field(default_factory=list)
    delivered_to: str = "UE"
    faults: list[dict[str, Any]] = field(default_factory=list)

    def _per_link(self, field_name: str) -> dict[str, int]:
        out = {"uplink": 0, "downlink": 0, "backhaul": 0}
        for t in self.transfers:
            out[t.link] += getattr(t, field_name)
        out["total"] = sum(out.values())
        return out

    def channel_uses(self) -> dict[str, int]:
        """Complex channel uses per link kind and in total."""
        return self._per_link("channel_uses")

    def transmissions(self) -> dict[str, int]:
        """Digital transport-block transmissions (HARQ retransmissions included) per link kind and in total."""
        return self._per_link("transmissions")

    def payload_bits(self) -> dict[str, int]:
        """Digitally sent bits per link kind and in total."""
        return self._per_link("payload_bits")

    def flops(self) -> dict[str, float]:
        """FLOPs per node."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.node] = out.get(s.node, 0.0) + float(s.flops)
        return out

    def flops_by_stage(self) -> dict[str, float]:
        """FLOPs per ``node:stage``."""
        out: dict[str, float] = {}
        for s in self.stages:
            key = f"{s.node}:{s.name}"
            out[key] = out.get(key, 0.0) + float(s.flops)
        return out

    def latency_breakdown(self) -> dict[str, float]:
        """Busy seconds per node and per link kind (not the critical path)."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.node] = out.get(s.node, 0.0) + (s.end_s - s.start_s)
        for t in self.transfers:
            out[t.link] = out.get(t.link, 0.0) + (t.end_s - t.start_s)
        return out

    def energy_breakdown(self) -> dict[str, float]:
        """Joules per node and per link kind."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.node] = out.get(s.node, 0.0) + s.energy_j
        for t in self.transfers:
            out[t.link] = out.get(t.link, 0.0) + t.energy_j
        return out

    def failures(self) -> int:
        return sum(t.failures for t in self.transfers)


class Ledger:
    """Clocks (item ready times, node and directed-link free times) and the cost records of one run.

    Args:
        profiles: Device and link cost profiles.
    """

    def __init__(self, profiles: Profiles) -> None:
        self.profiles = profiles
        self.ready: dict[tuple[str, ItemRef], float] = {}
        self.node_free: dict[str, float] = {}
        self.link_free: dict[tuple[str, str], float] = {}
        self.stages: list[StageRecord] = []
        self.transfers: list[TransferRecord] = []

    def ready_at(self, node: str, item: ItemRef) -> float:
        """When ``item`` is (or was) ready on ``node``, seconds (0 for the run's inputs)."""
        return self.ready.get((node, item), 0.0)

    def mark(self, node: str, items: Iterable[ItemRef], t: float) -> None:
        """``items`` are ready on ``node`` at ``t`` seconds."""
        for item in items:
            self.ready[(node, item)] = t

    def stage(self, name: str, node: str, flops: int, inputs: Iterable[ItemRef]) -> float:
        """Book a stage of ``flops`` FLOPs on ``node`` after its ``inputs``; returns its end (seconds)."""
        t_in = max([self.ready_at(node, i) for i in inputs] + [self.node_free.get(node, 0.0)])
        dev = self.profiles.device(node)
        end = t_in + dev.seconds(flops)
        self.node_free[node] = end
        self.stages.append(StageRecord(name, node, flops, t_in, end, dev.joules(flops)))
        return end

    def transfer(
        self, label: str, src: str, dst: str, link: str, mode: str, sent: Sent, ready_s: float
    ) -> float:
        """Book a transfer on the directed link's clock; returns when it has arrived (seconds)."""
        prof = self.profiles.link(link)
        t0 = max(ready_s, self.link_free.get((src, dst), 0.0))
        end = t0 + prof.seconds(sent.channel_uses)
        self.link_free[(src, dst)] = end
        self.transfers.append(
            TransferRecord(
                label,
                src,
                dst,
                link,
                mode,
                sent.channel_uses,
                sent.payload_bits,
                sent.ok,
                sent.failures,
                sent.effective_snr_db,
                t0,
                end,
                prof.joules(sent.channel_uses),
                sent.transmissions,
            )
        )
        return end

    def output(self, image: torch.Tensor, latent: torch.Tensor | None, latency_s: float) -> EngineOutput:
        """The run's :class:`EngineOutput` with these records and the total energy."""
        energy = sum(s.energy_j for s in self.stages) + sum(t.energy_j for t in self.transfers)
        return EngineOutput(image, latent, self.stages, self.transfers, latency_s, energy)


__all__ = ["EngineOutput", "Ledger", "StageRecord", "TransferRecord"]
