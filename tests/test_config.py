"""The nested run configuration: paths, shorthands, files, round trips and CLI flags."""

from __future__ import annotations

import inspect
import json

import pytest
import typer
from typer.testing import CliRunner

from megen.cli import config as config_cli
from megen.cli import generate as gen_cli
from megen.config import SHORTHANDS, RunConfig, config_paths, load_config, parse_assignments, resolve_path
from megen.errors import MegenError


def test_every_shorthand_names_one_existing_path():
    paths = {p for p, _ in config_paths()} | {
        f"links.{link}.snr_db" for link in ("uplink", "downlink", "backhaul")
    }
    for name, path in SHORTHANDS.items():
        assert path in paths, name
        assert resolve_path(name) == path
    assert len(set(SHORTHANDS.values())) == len(SHORTHANDS)  # one flag per path


@pytest.mark.cli
def test_every_generate_config_flag_maps_to_one_path():
    params = inspect.signature(gen_cli.generate).parameters
    config_flags = [n for n in params if n in SHORTHANDS]
    assert sorted(config_flags) == sorted(SHORTHANDS)
    for name in config_flags:
        decls = params[name].default.param_decls
        assert any(d.split("/")[0] == "--" + name.replace("_", "-") for d in decls), name
        assert SHORTHANDS[name] in params[name].default.help


def test_wildcard_before_specific_and_flat_view():
    a = RunConfig.from_paths({"links.uplink.snr_db": 0, "snr_db": 10})
    b = RunConfig.from_paths({"snr_db": 10, "ul_snr_db": 0})
    assert a == b
    assert (a.links.uplink.snr_db, a.links.downlink.snr_db, a.links.backhaul.snr_db) == (0, 10, 10)
    flat = a.flat()
    assert flat["snr_db"] is None and flat["ul_snr_db"] == 0 and flat["dl_snr_db"] == 10
    same = RunConfig.from_paths({"snr_db": 3}).flat()
    assert same["snr_db"] == 3 and same["ul_snr_db"] is None


def test_toml_round_trip_through_a_run(tmp_path, random_tiny):
    """TOML -> run -> stored JSON -> the same configuration and the same run."""
    from megen.protocols.runner import run_protocol

    f = tmp_path / "run.toml"
    f.write_text(
        '[protocol]\nname = "CIAG"\n[task]\nsteps = 4\nseed = 3\n'
        '[links."*"]\nsnr_db = 8.0\n[links.downlink]\nsnr_db = 2.0\n[links.downlink.channel]\nkind = "rayleigh"\n'
    )
    cfg = load_config(f)
    assert cfg.links.downlink.channel.kind == "rayleigh" and cfg.links.uplink.channel.kind == "awgn"
    assert (cfg.links.uplink.snr_db, cfg.links.downlink.snr_db) == (8.0, 2.0)
    run = run_protocol(cfg, ["a photo of a bag"], model=random_tiny)
    stored = json.dumps(run.summary()["config"])
    again = RunConfig.model_validate_json(stored)
    assert again == cfg
    rerun = run_protocol(again, ["a photo of a bag"], model=random_tiny)
    assert (rerun.images == run.images).all()
    (tmp_path / "stored.json").write_text(stored)
    assert load_config(tmp_path / "stored.json") == cfg


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"guidance": 1e30}, "task.guidance"),
        ({"seed": 2**63}, "task.seed"),
        ({"steps": True}, "valid integer"),
        ({"steps": "7"}, "valid integer"),
        ({"snr_db": float("nan")}, "finite"),
        ({"snr_db": 99}, "less than or equal to 60"),
        ({"links.uplink.channel.kind": "foo"}, "links.uplink.channel.kind"),
        ({"protocol": "UIDG", "num_es": 1}, "at least 2 edge servers"),
        ({"protocol": "CIAG", "steps": 4, "split_step": 9}, "--split-step"),
        ({"no.such.path": 1}, "unknown configuration key"),
        ({"protocol": "nope"}, "unknown protocol"),
    ],
)
def test_bad_values_are_one_line_errors(values, needle):
    with pytest.raises(MegenError, match=needle) as info:
        RunConfig.from_paths(values)
    assert "\n" not in str(info.value)


def test_assignments_parse_by_field_type():
    got = parse_assignments(
        ["links.*.transmission.mcs=auto", "protocol.plan=123", "ul-snr-db=-5"], lists=False
    )
    assert got == {"links.*.transmission.mcs": None, "protocol.plan": "123", "links.uplink.snr_db": -5}
    assert parse_assignments(["image_quality=10,90"], lists=True) == {"links.*.codec.image_quality": [10, 90]}
    with pytest.raises(MegenError, match="key=value"):
        parse_assignments(["steps"], lists=False)


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\n")
    with pytest.raises(MegenError, match="not valid"):
        load_config(bad)
    with pytest.raises(MegenError, match="not found"):
        load_config(tmp_path / "missing.toml")
    extra = tmp_path / "extra.toml"
    extra.write_text("[task]\nsteps = 4\ncolour = 3\n")
    with pytest.raises(MegenError, match="task.colour"):
        load_config(extra)


@pytest.mark.cli
def test_megen_config_command(tmp_path):
    app = typer.Typer()
    config_cli.register(app)
    app.command("x")(lambda: None)
    runner = CliRunner()
    res = runner.invoke(app, ["config", "--set", "links.downlink.snr_db=5", "--set", "steps=7"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["links"]["downlink"]["snr_db"] == 5 and data["task"]["steps"] == 7
    listing = runner.invoke(app, ["config", "--paths"])
    assert "links.*.codec.image_quality = 90    (--image-quality)" in listing.output
    bad = runner.invoke(app, ["config", "--set", "task.steps=0"])
    assert bad.exit_code == 2 and "task.steps" in bad.output


@pytest.mark.cli
def test_generate_set_and_config_file(tmp_path, monkeypatch):
    """--config, flags and --set reach the same configuration (file < flags < --set)."""
    seen = {}

    def fake(cfg, prompt, n, image, out, *, protocol_given, log, **placement):
        seen["cfg"], seen["given"] = cfg, protocol_given
        return {"message": "ok"}

    monkeypatch.setattr("megen.generation.generate_images", fake)
    f = tmp_path / "run.toml"
    f.write_text("[task]\nsteps = 9\n[links.downlink]\nsnr_db = 1.0\n")
    app = typer.Typer()
    gen_cli.register(app)
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--prompt",
            "a bag",
            "--config",
            str(f),
            "--steps",
            "5",
            "--snr-db",
            "3",
            "--set",
            "links.downlink.snr_db=7",
            "--no-snr-aware",
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert cfg.task.steps == 5 and cfg.links.uplink.snr_db == 3 and cfg.links.downlink.snr_db == 7
    assert cfg.protocol.snr_aware is False and seen["given"] is True


def test_sweep_grid_flags_are_configuration_shorthands():
    """``megen sweep --protocols/--channels/--snr-db/--transmission/--steps/...`` are grid axes over paths."""
    from megen.experiments.spec import SWEEP_KEYS, spec_from_flags

    spec = spec_from_flags(
        protocols="central",
        channels="awgn",
        snr_db="0",
        transmissions="analog",
        samples=1,
        seeds="0",
        model="tiny-random",
        extra={"steps": 3, "strength": 0.5, "num_es": 2},
    )
    paths = {resolve_path(k) for k in spec.grids[0] if k not in SWEEP_KEYS}
    assert paths == {
        "protocol.name",
        "links.*.channel.kind",
        "links.*.snr_db",
        "links.*.transmission.seed",
        "task.steps",
        "task.strength",
        "protocol.num_es",
    }


def test_flat_view_tells_apart_configurations_that_differ_on_one_link():
    """Analysis cells are keyed by the flat view: a per-link difference must show in it."""
    paths = ("links.uplink.channel.kind", "links.downlink.codec.image_quality", "links.backhaul.receiver.csi")
    base = RunConfig().flat()
    for path, value in zip(paths, ("rayleigh", 10, "perfect"), strict=True):
        flat = RunConfig.from_paths({path: value}).flat()
        assert flat != base, path
        link, name = path.split(".")[1], {"kind": "channel"}.get(path.split(".")[-1], path.split(".")[-1])
        assert flat[f"{link}.{name}"] == value
