"""``megen config``: show a run configuration, or every configuration path with its default."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from megen.cli.common import handle_errors
from megen.config import SHORTHANDS, RunConfig, config_paths, load_config, parse_assignments


def register(app: typer.Typer) -> None:
    app.command("config")(config)


@handle_errors
def config(
    file: Path | None = typer.Option(None, "--config", help="A run configuration (TOML or JSON) to read."),
    set_: list[str] = typer.Option([], "--set", help="PATH=VALUE applied on top, e.g. task.steps=10."),
    paths: bool = typer.Option(False, "--paths", help="List every path, its shorthand flag and default."),
) -> None:
    """Print the resolved run configuration as JSON (the form stored beside every result)."""
    if paths:
        flags = {p: n for n, p in SHORTHANDS.items()}
        for path, default in config_paths():
            flag = flags.get(path)
            typer.echo(
                f"{path} = {json.dumps(default)}" + (f"    (--{flag.replace('_', '-')})" if flag else "")
            )
        return
    base = load_config(file) if file is not None else None
    cfg = RunConfig.from_paths(parse_assignments(set_, lists=False), base=base)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
