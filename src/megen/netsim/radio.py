"""The radio side of a cell: UE drop, 3GPP TR 38.901 path loss and shadowing, SNR, and link rates.

**Geometry.** One cell, the base station (co-located with the edge servers) at the origin; UEs
dropped uniformly over the annulus ``min_distance_m <= d2D <= radius_m`` at height 1.5 m.

**Path loss** (TR 38.901 v17, Table 7.4.1-1, ``fc`` in GHz, distances in m, outdoor UEs):

* UMi street canyon (``hBS = 10 m``): ``PL_LOS = 32.4 + 21 log10(d3D) + 20 log10(fc)`` up to the
  breakpoint ``d'BP = 4 h'BS h'UT fc / c`` (``h' = h - 1 m``), beyond it
  ``32.4 + 40 log10(d3D) + 20 log10(fc) - 9.5 log10(d'BP^2 + (hBS - hUT)^2)``;
  ``PL_NLOS = max(PL_LOS, 35.3 log10(d3D) + 22.4 + 21.3 log10(fc) - 0.3 (hUT - 1.5))``;
  shadow fading sigma 4 dB (LOS), 7.82 dB (NLOS).
* UMa (``hBS = 25 m``): ``PL_LOS = 28.0 + 22 log10(d3D) + 20 log10(fc)`` up to ``d'BP``, beyond it
  ``28.0 + 40 log10(d3D) + 20 log10(fc) - 9 log10(d'BP^2 + (hBS - hUT)^2)``;
  ``PL_NLOS = max(PL_LOS, 13.54 + 39.08 log10(d3D) + 20 log10(fc) - 0.6 (hUT - 1.5))``;
  sigma 4 dB (LOS), 6 dB (NLOS).
* LOS probability (Table 7.4.2-1, ``hUT <= 13 m``): 1 for ``d2D <= 18 m``, else
  ``18 / d2D + exp(-d2D / D) (1 - 18 / d2D)`` with ``D = 36 m`` (UMi) or ``63 m`` (UMa).

Sionna's TR 38.901 scenarios compute the same formulas inside a full topology-and-rays state, and
its PF scheduler works per slot on tensors; the fluid model here needs neither, so the formulas are
written out (vectorised numpy).

**SNR** per complex symbol over the carrier: ``P_tx - PL - (-174 dBm/Hz + 10 log10(B) + NF_rx)``;
the transmitter's power is spread over the whole carrier (the same per-RE SNR whatever share of
resource blocks the scheduler gives; conservative for the uplink).

**Rates.** A carrier of ``B`` Hz holds ``floor(B / (12 * 30 kHz))`` resource blocks (numerology 1,
TS 38.211; guard bands ignored), each ``12 x 14`` resource elements (REs, complex channel uses) per
0.5 ms slot. The goodput of a digital flow is ``SE * (1 - BLER^K) / E[transmissions]`` bits per RE,
``E[transmissions] = sum_{k<K} BLER^k`` (HARQ up to ``K`` transmissions, no combining gain;
residual failures lost), with the MCS and BLER from :func:`megen.link.mcs.select_mcs`:

* ``round_robin``: channel-unaware; the MCS follows the UE's average SNR on the Rayleigh curves;
  ``n`` active flows share the REs equally.
* ``proportional_fair``: channel-aware; the REs are also shared equally in time (PF with i.i.d.
  Rayleigh block fading), but each slot serves the flow with the best fading relative to its mean,
  whose gain is the largest of ``n`` unit exponentials; per slot the MCS follows that instantaneous
  SNR on the AWGN curves. Its goodput per RE is the expectation over that maximum (32-point
  quadrature on its quantiles); it grows with ``n`` (multi-user diversity).

A UE whose average SNR is below the threshold of the most robust MCS on the Rayleigh curves is in
**outage** on that link: its requests that need the link fail.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from megen.errors import MegenError

SCENARIOS = ("umi", "uma")
SCHEDULERS = ("round_robin", "proportional_fair")
BS_HEIGHT_M = {"umi": 10.0, "uma": 25.0}
UE_HEIGHT_M = 1.5
LOS_DECAY_M = {"umi": 36.0, "uma": 63.0}
SHADOW_SIGMA_DB = {"umi": (4.0, 7.82), "uma": (4.0, 6.0)}
"""(LOS, NLOS) shadow-fading standard deviation, dB (TR 38.901 Table 7.4.1-1)."""
SPEED_OF_LIGHT_M_S = 299_792_458.0
THERMAL_NOISE_DBM_HZ = -174.0
SUBCARRIER_SPACING_HZ = 30e3
RE_PER_RB_SLOT = 12 * 14
SLOT_S = 0.5e-3
SNR_GRID_DB = np.arange(-20.0, 50.01, 0.25)
"""SNR grid (dB) on which goodput curves are tabulated (``np.interp`` between points)."""
QUADRATURE_POINTS = 32


def los_probability(scenario: str, d2d_m: np.ndarray) -> np.ndarray:
    """LOS probability (TR 38.901 Table 7.4.2-1) at 2D distances ``d2d_m`` (any shape)."""
    d = np.maximum(d2d_m, 1e-9)
    p = 18.0 / d + np.exp(-d / LOS_DECAY_M[scenario]) * (1.0 - 18.0 / d)
    return np.where(d <= 18.0, 1.0, p)


def path_loss_db(scenario: str, d2d_m: np.ndarray, los: np.ndarray, carrier_ghz: float) -> np.ndarray:
    """Path loss in dB (TR 38.901 Table 7.4.1-1) without shadowing; ``los`` boolean, same shape."""
    h_bs, h_ut = BS_HEIGHT_M[scenario], UE_HEIGHT_M
    d3d = np.sqrt(d2d_m**2 + (h_bs - h_ut) ** 2)
    d_bp = 4 * (h_bs - 1.0) * (h_ut - 1.0) * carrier_ghz * 1e9 / SPEED_OF_LIGHT_M_S
    lf = 20 * math.log10(carrier_ghz)
    if scenario == "umi":
        pl1 = 32.4 + 21 * np.log10(d3d) + lf
        pl2 = 32.4 + 40 * np.log10(d3d) + lf - 9.5 * math.log10(d_bp**2 + (h_bs - h_ut) ** 2)
        nlos = 35.3 * np.log10(d3d) + 22.4 + 21.3 * math.log10(carrier_ghz) - 0.3 * (h_ut - 1.5)
    else:
        pl1 = 28.0 + 22 * np.log10(d3d) + lf
        pl2 = 28.0 + 40 * np.log10(d3d) + lf - 9.0 * math.log10(d_bp**2 + (h_bs - h_ut) ** 2)
        nlos = 13.54 + 39.08 * np.log10(d3d) + lf - 0.6 * (h_ut - 1.5)
    pl_los = np.where(d2d_m <= d_bp, pl1, pl2)
    return np.where(los, pl_los, np.maximum(pl_los, nlos))


@dataclass(frozen=True)
class Drop:
    """UEs of one cell: shapes ``[num_ues]``; SNRs in dB per complex symbol over the carrier."""

    distance_m: np.ndarray
    los: np.ndarray
    path_loss_db: np.ndarray
    uplink_snr_db: np.ndarray
    downlink_snr_db: np.ndarray


def drop_ues(
    rng: np.random.Generator,
    num_ues: int,
    scenario: str,
    radius_m: float,
    min_distance_m: float,
    carrier_ghz: float,
    bandwidth_hz: float,
    ue_tx_power_dbm: float,
    bs_tx_power_dbm: float,
    ue_noise_figure_db: float,
    bs_noise_figure_db: float,
) -> Drop:
    """Drop ``num_ues`` UEs uniformly in the annulus and compute their path loss and SNRs.

    Draws, in order from ``rng``: radii, LOS flags, shadowing (unit normals scaled by sigma).
    """
    if scenario not in SCENARIOS:
        raise MegenError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    r = np.sqrt(rng.uniform(min_distance_m**2, radius_m**2, num_ues))
    los = rng.uniform(size=num_ues) < los_probability(scenario, r)
    sig_los, sig_nlos = SHADOW_SIGMA_DB[scenario]
    shadow = rng.standard_normal(num_ues) * np.where(los, sig_los, sig_nlos)
    pl = path_loss_db(scenario, r, los, carrier_ghz) + shadow
    noise = THERMAL_NOISE_DBM_HZ + 10 * math.log10(bandwidth_hz)
    return Drop(
        distance_m=r,
        los=los,
        path_loss_db=pl,
        uplink_snr_db=ue_tx_power_dbm - pl - (noise + bs_noise_figure_db),
        downlink_snr_db=bs_tx_power_dbm - pl - (noise + ue_noise_figure_db),
    )


def resource_elements_per_s(bandwidth_hz: float) -> float:
    """REs (complex channel uses) per second of a carrier of ``bandwidth_hz``: RBs x 12 x 14 / 0.5 ms."""
    rbs = math.floor(bandwidth_hz / (12 * SUBCARRIER_SPACING_HZ))
    if rbs < 1:
        raise MegenError(f"the bandwidth must hold one resource block (360 kHz), got {bandwidth_hz:g} Hz")
    return rbs * RE_PER_RB_SLOT / SLOT_S


@functools.lru_cache(maxsize=8)
def goodput_curve(channel: str, harq_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Goodput (bits per RE) after HARQ on :data:`SNR_GRID_DB`, and whether the MCS meets the target.

    Returns:
        ``(goodput, meets)``, each shape ``[len(SNR_GRID_DB)]``.
    """
    from megen.link.mcs import select_mcs

    good, meets = [], []
    for snr in SNR_GRID_DB.tolist():
        choice = select_mcs(snr, channel)
        bler = min(max(choice.predicted_bler, 0.0), 1.0)
        tx = sum(bler**k for k in range(harq_max))
        good.append(choice.mcs.spectral_efficiency * (1.0 - bler**harq_max) / tx)
        meets.append(choice.meets_target)
    return np.asarray(good), np.asarray(meets)


def flow_goodput(snr_db: np.ndarray, scheduler: str, max_flows: int, harq_max: int) -> np.ndarray:
    """Bits per RE of each UE's flow when ``n`` flows are active, shape ``[num_ues, max_flows]``.

    Column ``n - 1`` holds the goodput with ``n`` active flows (before the ``1/n`` share).
    """
    if scheduler not in SCHEDULERS:
        raise MegenError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    snr = np.asarray(snr_db, dtype=float)
    if scheduler == "round_robin":
        good, _ = goodput_curve("rayleigh", harq_max)
        return np.repeat(np.interp(snr, SNR_GRID_DB, good)[:, None], max_flows, axis=1)
    good, _ = goodput_curve("awgn", harq_max)
    u = (np.arange(QUADRATURE_POINTS) + 0.5) / QUADRATURE_POINTS
    n = np.arange(1, max_flows + 1)[:, None]
    gain_db = 10 * np.log10(-np.log1p(-(u[None, :] ** (1.0 / n))))  # [max_flows, Q] quantiles
    inst = snr[:, None, None] + gain_db[None, :, :]
    return np.interp(inst, SNR_GRID_DB, good).mean(axis=2)


def in_outage(snr_db: np.ndarray, harq_max: int) -> np.ndarray:
    """True where even the most robust MCS misses the BLER target at the average SNR (Rayleigh)."""
    _, meets = goodput_curve("rayleigh", harq_max)
    threshold = SNR_GRID_DB[np.argmax(meets)] if meets.any() else math.inf
    return np.asarray(snr_db) < threshold


__all__ = [
    "SCENARIOS",
    "SCHEDULERS",
    "Drop",
    "drop_ues",
    "flow_goodput",
    "goodput_curve",
    "in_outage",
    "los_probability",
    "path_loss_db",
    "resource_elements_per_s",
]
