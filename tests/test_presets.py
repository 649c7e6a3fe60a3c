"""The presets of ``megen reproduce`` are TOML data files that expand to exactly the sweeps of before."""

from __future__ import annotations

import pytest

from megen.errors import MegenError
from megen.experiments.presets import PRESETS, preset_data, preset_spec
from megen.experiments.spec import expand
from megen.store import points_digest

#: (spec digest, points digest, points) of each preset when it was Python code (commit 31f127a).
DIGESTS = {
    ("demo", "tiny"): ("42508a2e063ce815", "fa5b38e9742dee55", 32),
    ("demo", "tiny-random"): ("4f84723c60cc6e12", "38b1f75516020510", 32),
    ("default", "tiny"): ("8b6865ec85d1025e", "23e8bf8b5f7396d6", 192),
    ("default", "tiny-random"): ("fc777facb1bd7f8f", "26dfe57eb1fbaabe", 192),
    ("full", "tiny"): ("81df4bc9e0e5b833", "9681ac0428068b5a", 147),
    ("full", "tiny-random"): ("4be9be7a0e3b6c62", "c872ad95d87bbade", 147),
}


@pytest.mark.parametrize(("preset", "model"), list(DIGESTS))
def test_preset_digests_unchanged(preset: str, model: str):
    spec = preset_spec(preset, model)
    points = expand(spec)
    assert (spec.digest(), points_digest(points), len(points)) == DIGESTS[(preset, model)]


def test_presets_are_shipped_data_files():
    from importlib import resources

    for preset in PRESETS:
        text = resources.files("megen.experiments").joinpath("presets", f"{preset}.toml").read_text()
        assert f'name = "megen case study ({preset})"' in text
        assert preset_spec(preset).name == f"megen case study ({preset})"


def test_auto_reads_as_none():
    grids = preset_data("default")["grid"]
    mcs = next(g["mcs"] for g in grids if "mcs" in g)
    assert mcs[0] is None and "auto" not in mcs


def test_unknown_preset():
    with pytest.raises(MegenError, match="unknown preset 'huge'; choose one of demo, default, full"):
        preset_spec("huge")
