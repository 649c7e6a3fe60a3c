"""The cell's TR 38.901 formulas (``megen.netsim.radio``) against Sionna's own implementation.

Sionna 2.x's ``UMiScenario`` / ``UMaScenario`` compute path loss and LOS probability inside a full
topology state; the cell simulator writes the same formulas out in numpy (see ``docs/system.md``
for why). This checks them equal to Sionna's numbers on distances across the breakpoint, for
forced LOS and NLOS outdoor UEs, and the shadow-fading deviations against Sionna's parameter files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from megen.netsim.radio import BS_HEIGHT_M, SHADOW_SIGMA_DB, UE_HEIGHT_M, los_probability, path_loss_db

torch = pytest.importorskip("torch")
tr38901 = pytest.importorskip("sionna.phy.channel.tr38901")

D2D_M = np.array([12.0, 30.0, 80.0, 150.0, 400.0, 900.0, 2000.0])
CARRIER_GHZ = 3.5


def _scenario(name: str, los: bool):  # type: ignore[no-untyped-def]
    cls = {"umi": tr38901.UMiScenario, "uma": tr38901.UMaScenario}[name]
    arr = tr38901.PanelArray(
        num_rows_per_panel=1,
        num_cols_per_panel=1,
        polarization="single",
        polarization_type="V",
        antenna_pattern="omni",
        carrier_frequency=CARRIER_GHZ * 1e9,
    )
    sc = cls(CARRIER_GHZ * 1e9, "low", arr, arr, "downlink", precision="double", device="cpu")
    n = len(D2D_M)
    f64 = torch.float64
    ut = torch.zeros(1, n, 3, dtype=f64)
    ut[0, :, 0] = torch.tensor(D2D_M)
    ut[0, :, 2] = UE_HEIGHT_M
    bs = torch.zeros(1, 1, 3, dtype=f64)
    bs[0, 0, 2] = BS_HEIGHT_M[name]
    zeros = torch.zeros(1, n, 3, dtype=f64)
    sc.set_topology(
        ut, bs, zeros, torch.zeros(1, 1, 3, dtype=f64), zeros, torch.zeros(1, n, dtype=torch.bool), los
    )
    return sc


@pytest.mark.parametrize("name", ["umi", "uma"])
@pytest.mark.parametrize("los", [True, False])
def test_path_loss_equals_sionna(name: str, los: bool) -> None:
    sc = _scenario(name, los)
    theirs = sc.basic_pathloss.numpy().ravel()
    ours = path_loss_db(name, D2D_M, np.full(len(D2D_M), los), CARRIER_GHZ)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["umi", "uma"])
def test_los_probability_equals_sionna(name: str) -> None:
    theirs = _scenario(name, True).los_probability.numpy().ravel()
    np.testing.assert_allclose(los_probability(name, D2D_M), theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["umi", "uma"])
def test_shadow_fading_sigma_equals_sionna_tables(name: str) -> None:
    folder = Path(tr38901.__file__).parent / "models" / "v19_2"
    stem = {"umi": "UMi", "uma": "UMa"}[name]
    sigma = [json.loads((folder / f"{stem}_{k}.json").read_text())["sigmaSF"] for k in ("LoS", "NLoS")]
    assert tuple(sigma) == SHADOW_SIGMA_DB[name]
