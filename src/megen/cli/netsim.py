"""``megen netsim``: system-level simulation; for now the validated single queue (``megen netsim queue``)."""

from __future__ import annotations

import time
from typing import Any

import typer

from megen.cli.common import echo, handle_errors, print_json

app = typer.Typer(
    name="netsim",
    help="System-level simulation (SimPy). `megen netsim queue` checks the event core against queueing theory.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    """Add the ``netsim`` command group to the root app."""
    root.add_typer(app, name="netsim")


@app.command("queue")
@handle_errors
def queue(
    arrival: str = typer.Option(..., "--arrival", help="poisson:RATE (requests per second)."),
    service: str = typer.Option(
        ...,
        "--service",
        help="Service time in seconds: exponential:MEAN, deterministic:VALUE, uniform:LO,HI or "
        "lognormal:MU,SIGMA (of the underlying normal).",
    ),
    servers: int = typer.Option(1, "--servers", help="Number of servers C (1..1024), one FIFO line."),
    requests: int = typer.Option(100_000, "--requests", help="Arrivals per replication (200..10 000 000)."),
    replications: int = typer.Option(1, "--replications", help="Independent replications (1..1000)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (streams keyed by replication)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Simulate one M/G/C FIFO queue and print Wq, W with 95% CIs, L, Little's law and the closed form."""
    from megen.netsim.distributions import parse_arrival, parse_service
    from megen.netsim.queue import check_queue_inputs, simulate_queue

    check_queue_inputs(servers, requests, replications, seed, 0.1)
    arrival_law, service_law = parse_arrival(arrival), parse_service(service)
    started = time.perf_counter()
    result = simulate_queue(arrival_law, service_law, servers, requests, seed, replications=replications)
    if json_output:
        print_json(result.to_dict())
        return
    for line in describe(result.to_dict(), time.perf_counter() - started):
        echo(line)


def describe(r: dict[str, Any], elapsed_s: float) -> list[str]:
    """Human-readable lines for a :meth:`QueueResult.to_dict` object."""
    inp = r["inputs"]
    head = (
        f"{inp['arrival']} -> {inp['service']} on {inp['servers']} server(s), rho = {r['offered_load']:.4f}; "
        f"{r['requests_simulated']} requests x {inp['replications']} replication(s), seed {inp['seed']}, "
        f"{elapsed_s:.1f} s"
    )
    if not r["stable"]:
        return [
            head,
            f"UNSTABLE (rho >= 1, no steady state): backlog grows by {r['backlog_growth_per_s']:.4g} "
            "requests/s (bounded run, stopped at the last arrival)",
        ]
    theory, err = r["theory"], r["relative_error_vs_theory"]
    lines = [head]
    for name, tkey in (("Wq (mean wait)", "mean_wait"), ("W (in system)", "mean_time_in_system")):
        key = f"{tkey}_s"
        lo, hi = r[f"{tkey}_ci_s"]
        text = f"{name:<15} {r[key]:.5g} s  95% CI [{lo:.5g}, {hi:.5g}]"
        if theory is not None:
            text += f"  theory {theory[key]:.5g} s ({theory['formula']}), error {100 * err[tkey]:.2f}%"
        lines.append(text)
    lines.append(
        f"L {r['L']:.5g} requests, throughput {r['throughput']:.5g}/s, utilisation {r['utilisation']:.4f}, "
        f"Little's law error {100 * r['littles_law_relative_error']:.3f}%"
    )
    return lines
