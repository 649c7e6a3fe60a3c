"""Plans from TOML: round trip of every protocol, typed fields, the operation cap, file errors."""

from __future__ import annotations

import pytest

from megen.config import RunConfig
from megen.errors import MegenError
from megen.protocols.builders import PROTOCOLS, build_plan
from megen.protocols.plan import Stage, Transfer
from megen.protocols.plan_io import MAX_PLAN_OPS, load_plan, plan_from_dict, plan_to_dict

STAGE = {"op": "stage", "kind": "D", "node": "ES1"}


@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.parametrize("image_to_image", [True, False])
def test_every_protocol_round_trips(name: str, image_to_image: bool) -> None:
    plan = build_plan(
        name, RunConfig.from_paths({"steps": 20, "num_es": 2}), 8 if image_to_image else 0, image_to_image
    )
    assert plan_from_dict(plan_to_dict(plan), source=plan.name) == plan


def test_toml_file_is_read(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'result_node = "UE"\n'
        '[[ops]]\nop = "transfer"\nitem = "prompt"\nsrc = "UE"\ndst = "ES1"\nmode = "digital"\n'
        '[[ops]]\nop = "stage"\nkind = "D"\nnode = "ES1"\nstart = 0\nstop = 12\n'
    )
    plan = load_plan(path)
    assert plan.name == "mine"
    assert plan.ops == (
        Transfer(item="prompt", src="UE", dst="ES1", mode="digital"),
        Stage(kind="D", node="ES1", start=0, stop=12),
    )


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({**STAGE, "start": "3"}, "field 'start' must be an integer, got '3'"),
        ({**STAGE, "start": 3.0}, "field 'start' must be an integer, got 3.0"),
        ({**STAGE, "stop": True}, "field 'stop' must be an integer, got True"),  # never silently 1
        ({**STAGE, "tile": [1]}, "field 'tile' must be an integer"),
        ({**STAGE, "node": 1}, "field 'node' must be a string, got 1"),
        ({**STAGE, "kind": "Q"}, "field 'kind' must be one of"),
        ({**STAGE, "denoiser": False}, "field 'denoiser' must be a string"),
        (
            {"op": "transfer", "item": "latent", "src": "ES1", "dst": "UE", "core_only": 1},
            "field 'core_only' must be true or false, got 1",
        ),
        (
            {"op": "tile", "node": "ES1", "item": "latent", "k": 2.5, "halo": 1},
            "field 'k' must be an integer",
        ),
        (
            {"op": "parallel_denoise", "nodes": ["ES1", 2], "denoiser": "es", "sync_every": 1, "halo": 1},
            "field 'nodes' must be a list of str",
        ),
        (
            {"op": "parallel_denoise", "nodes": "ES1", "denoiser": "es", "sync_every": 1, "halo": 1},
            "field 'nodes' must be a list of str",
        ),
        ({**STAGE, "colour": "red"}, "unknown field(s) ['colour']"),
        ({"op": "teleport"}, "unknown op 'teleport'"),
    ],
)
def test_wrong_field_types_name_the_field(op: dict, message: str) -> None:
    with pytest.raises(MegenError) as info:
        plan_from_dict({"ops": [op]}, "p.toml")
    assert str(info.value).startswith("plan p.toml: op 1")
    assert message in str(info.value)


def test_top_level_fields_must_be_strings() -> None:
    with pytest.raises(MegenError, match="result_node must be a string"):
        plan_from_dict({"ops": [STAGE], "result_node": 1})


def test_operation_cap() -> None:
    assert len(plan_from_dict({"ops": [STAGE] * MAX_PLAN_OPS}).ops) == MAX_PLAN_OPS
    with pytest.raises(MegenError, match=f"{MAX_PLAN_OPS + 1} operations; at most {MAX_PLAN_OPS}"):
        plan_from_dict({"ops": [STAGE] * (MAX_PLAN_OPS + 1)})


def test_optional_fields_may_be_left_out() -> None:
    op = {"op": "parallel_denoise", "nodes": ["ES1", "ES2"], "denoiser": "es", "sync_every": 2, "halo": 1}
    (pd,) = plan_from_dict({"ops": [op]}).ops
    assert pd.start is None and pd.stop is None and pd.nodes == ("ES1", "ES2")


def test_file_errors(tmp_path) -> None:
    with pytest.raises(MegenError, match="plan file not found"):
        load_plan(tmp_path / "missing.toml")
    with pytest.raises(MegenError, match="is a folder"):
        load_plan(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[ops]\n")
    with pytest.raises(MegenError, match="not valid TOML"):
        load_plan(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(MegenError, match="not valid TOML"):
        load_plan(bad)
    with pytest.raises(MegenError, match="non-empty list"):
        plan_from_dict({"ops": []})
