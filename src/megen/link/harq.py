"""Hybrid ARQ: how a transport block that fails its CRC is sent again and combined at the receiver.

Three modes (the ``links.*.transmission.harq`` setting):

* ``off``: one transmission; a failed block stays failed.
* ``chase``: every retransmission repeats redundancy version 0; the receiver adds the LLRs of each
  copy (chase combining: ``R`` copies gain ``10 log10(R)`` dB of SNR).
* ``ir``: incremental redundancy; transmission ``t`` uses redundancy version ``RV_SEQUENCE[t % 4]``
  = 0, 2, 3, 1 (the 38.214 order), whose start ``k0`` in the LDPC circular buffer (38.212
  Table 5.4.2.1-2) brings new parity bits; LLRs are added per circular-buffer position
  (:func:`megen.link.ldpc.combine_llrs`).

A transport block is retransmitted whole while any of its code blocks fails, up to
``max_transmissions``; every transmission costs its channel uses (pilots included). A block that
fails every transmission is an *outage*. The retransmission loop itself lives in
:func:`megen.link.digital.transmit_bits` (one batched round per transmission: only the blocks still
failing are sent again); this module holds the policy.

Example:
    >>> h = Harq("ir", 4)
    >>> [h.redundancy_version(t) for t in range(h.attempts)]
    [0, 2, 3, 1]
    >>> Harq("off", 4).attempts
    1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from megen.errors import MegenError

HarqMode = Literal["off", "chase", "ir"]
HARQ_MODES: tuple[str, ...] = get_args(HarqMode)
RV_SEQUENCE: tuple[int, ...] = (0, 2, 3, 1)
"""Redundancy versions of successive incremental-redundancy transmissions."""
DEFAULT_MAX_TRANSMISSIONS = 4
MAX_TRANSMISSIONS_LIMIT = 16


@dataclass(frozen=True)
class Harq:
    """A HARQ policy.

    Attributes:
        mode: ``off``, ``chase`` or ``ir``.
        max_transmissions: Most transmissions of one transport block (first one included),
            ``1..16``; ignored with ``off``.
    """

    mode: HarqMode = "off"
    max_transmissions: int = DEFAULT_MAX_TRANSMISSIONS

    def __post_init__(self) -> None:
        if self.mode not in HARQ_MODES:
            raise MegenError(f"unknown HARQ mode {self.mode!r}; choose one of {', '.join(HARQ_MODES)}")
        n = self.max_transmissions
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TRANSMISSIONS_LIMIT:
            raise MegenError(
                f"max_transmissions must be an integer in 1..{MAX_TRANSMISSIONS_LIMIT}, got {n!r}"
            )

    @property
    def attempts(self) -> int:
        """Transmissions allowed per transport block (1 with ``off``)."""
        return 1 if self.mode == "off" else self.max_transmissions

    def redundancy_version(self, attempt: int) -> int:
        """Redundancy version of transmission ``attempt`` (0-based): 0 unless ``ir``."""
        if attempt < 0:
            raise MegenError(f"transmission number must be >= 0, got {attempt}")
        return RV_SEQUENCE[attempt % len(RV_SEQUENCE)] if self.mode == "ir" else 0


NO_HARQ = Harq("off", 1)
"""A single transmission per transport block."""
