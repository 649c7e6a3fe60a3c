"""The presets of ``megen reproduce`` are TOML data files that expand to exactly the sweeps of before."""

from __future__ import annotations

import hashlib
import json

import pytest

from megen.errors import MegenError
from megen.experiments.presets import PRESETS, preset_data, preset_spec
from megen.experiments.spec import expand
from megen.store import points_digest

#: (spec digest, points digest, points) of each preset. The spec digests and point counts are those of
#: commit 31f127a (presets as Python code); the points digests changed once, when the run configuration
#: became nested (point keys hash the nested configuration).
DIGESTS = {
    ("demo", "tiny"): ("42508a2e063ce815", "007333d3ee5d376a", 32),
    ("demo", "tiny-random"): ("4f84723c60cc6e12", "be0a04ee491c2451", 32),
    ("default", "tiny"): ("8b6865ec85d1025e", "ff5709a2702e7f75", 192),
    ("default", "tiny-random"): ("fc777facb1bd7f8f", "63f113dd1d46c4bc", 192),
    ("full", "tiny"): ("81df4bc9e0e5b833", "73ac2759e406c1db", 147),
    ("full", "tiny-random"): ("4be9be7a0e3b6c62", "20d70dbd09a30aab", 147),
}
#: Hash of the points' flat configurations (shorthand -> value, device fields left out), tasks, tags and
#: samples: equal to the hash of the flat RunConfig dumps of commit 31f127a, so the nested configuration
#: expands every preset to the same configurations as before.
FLAT_DIGESTS = {
    ("demo", "tiny"): "6a7ac4daf608997c",
    ("demo", "tiny-random"): "8413749952226756",
    ("default", "tiny"): "1a7e5463edbf7748",
    ("default", "tiny-random"): "e668b9ac323e1871",
    ("full", "tiny"): "4a89631eea7f79b7",
    ("full", "tiny-random"): "42cde75e686bdde3",
}


@pytest.mark.parametrize(("preset", "model"), list(DIGESTS))
def test_preset_digests_unchanged(preset: str, model: str):
    spec = preset_spec(preset, model)
    points = expand(spec)
    assert (spec.digest(), points_digest(points), len(points)) == DIGESTS[(preset, model)]


@pytest.mark.parametrize(("preset", "model"), list(FLAT_DIGESTS))
def test_preset_configurations_equal_the_flat_ones_of_before(preset: str, model: str):
    def flat(cfg) -> dict:
        f = cfg.flat()
        for key in ("device", "ue_device", "es_device", "dtype"):
            f.pop(key)
        return f

    points = expand(preset_spec(preset, model))
    rows = sorted(
        json.dumps([flat(p.config), p.task, list(p.tags), p.samples], sort_keys=True) for p in points
    )
    assert hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16] == FLAT_DIGESTS[(preset, model)]


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
