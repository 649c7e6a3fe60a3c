"""``megen protocols``: every protocol, what runs on each node and what crosses each link."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from megen.cli.common import handle_errors, print_json


def register(app: typer.Typer) -> None:
    app.command("protocols")(protocols)


def describe_protocols(
    num_es: int = 2, steps: int = 25, strength: float = 0.6, image_to_image: bool = True
) -> list[dict]:
    """Plain-data description of every protocol's plan (stages per node, transfers per link).

    Args:
        num_es: Edge servers for the multi-ES protocols (``protocol.num_es``).
        steps: Denoising steps N (``task.steps``).
        strength: Image-to-image strength (``task.strength``; ignored for text-to-image).
        image_to_image: Describe the plans with a reference image.

    Raises:
        MegenError: a value the run configuration refuses, or ``num_es`` not accepted by a protocol.
    """
    from megen.config import RunConfig
    from megen.models.ldm import start_step_for
    from megen.protocols.builders import PROTOCOLS, build_plan

    values: dict[str, float | int] = {"steps": steps, "num_es": num_es}
    if image_to_image:
        values["strength"] = strength
    cfg = RunConfig.from_paths(values)
    s = start_step_for(cfg.task.steps, cfg.task.strength if image_to_image else None)
    out = []
    for name in PROTOCOLS:
        plan = build_plan(name, cfg, s, image_to_image)
        nodes = {n: plan.stages_on(n) for n in plan.nodes()}
        links: dict[str, list[str]] = {"uplink": [], "downlink": [], "backhaul": []}
        for t in plan.transfers():
            links[t.link].append(t.describe())
        out.append(
            {
                "protocol": name,
                "description": plan.description,
                "result_node": plan.result_node,
                "nodes": {k: v for k, v in nodes.items() if v},
                "links": {k: v for k, v in links.items() if v},
            }
        )
    return out


@handle_errors
def protocols(
    num_es: int = typer.Option(2, help="Edge servers for the multi-ES protocols (2..4)."),
    steps: int = typer.Option(25, help="Denoising steps N."),
    strength: float = typer.Option(0.6, help="Strength (image-to-image) in [0, 1], sets the first step."),
    text_to_image: bool = typer.Option(
        False, "--text-to-image", help="Show the plans without a reference image."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every protocol: what runs on each node and what crosses each link."""
    rows = describe_protocols(num_es, steps, strength, not text_to_image)
    if json_out:
        for r in rows:
            print_json(r)
        return
    table = Table(
        title=f"megen protocols (N={steps}, {'text' if text_to_image else 'image'}-to-image, {num_es} ES)"
    )
    for col in ("protocol", "stages per node", "crosses the links", "result at"):
        table.add_column(col)
    for r in rows:
        nodes = "\n".join(f"{n}: {' '.join(st)}" for n, st in r["nodes"].items())
        links = "\n".join(f"{k}: " + "; ".join(v) for k, v in r["links"].items()) or "(no link)"
        name = Text.assemble((r["protocol"], "bold"), "\n", r["description"])
        table.add_row(name, Text(nodes), Text(links), Text(r["result_node"]))
    Console(width=160).print(table)
