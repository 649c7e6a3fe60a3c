"""``megen netsim``: the cell simulator (protocols under load), its figures, and the validated single queue."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from megen.cli.common import console, echo, handle_errors, print_json, say

app = typer.Typer(
    name="netsim",
    help="System-level simulation (SimPy): UEs, edge servers and shared OFDMA links under load, per protocol. "
    "`megen netsim queue` checks the event core against queueing theory.",
    invoke_without_command=True,
)
PLAIN_PROGRESS_S = 10.0


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


def _overrides(**flags: Any) -> dict[str, Any]:
    """The flags that were given (not None), as :class:`NetsimConfig` keys."""
    out = {k: v for k, v in flags.items() if v is not None}
    if "protocols" in out:
        out["protocols"] = tuple(p for p in out["protocols"].split(",") if p.strip())
    return out


def _config(config: Path | None, preset: str | None, flags: dict[str, Any]) -> Any:
    from megen.errors import MegenError
    from megen.netsim.config import PRESETS, load_netsim_config

    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise MegenError(f"unknown netsim preset {preset!r}; choose one of {', '.join(PRESETS)}")
        base = dict(PRESETS[preset])
    from megen.files import read_table

    data = read_table(config, "netsim configuration file") if config is not None else {}
    return load_netsim_config(None, {**base, **data, **_overrides(**flags)})


@contextlib.contextmanager
def progress_steps(total: int, enabled: bool) -> Iterator[Any]:
    """A ``step(text)`` callback: a rich bar on a terminal, a plain line every 10 s otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    plain = enabled and not console.is_terminal
    t0, last = time.perf_counter(), [time.perf_counter()]
    bar = Progress(
        TextColumn("netsim {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled or plain,
    )
    with bar:
        job = bar.add_task("", total=total)
        count = [0]

        def step(text: str) -> None:
            count[0] += 1
            bar.update(job, advance=1, description=text)
            now = time.perf_counter()
            if plain and (now - last[0] >= PLAIN_PROGRESS_S or count[0] == total):
                last[0] = now
                say(f"netsim: {count[0]}/{total} done ({text}), elapsed {now - t0:.0f} s")

        yield step


@app.callback()
@handle_errors
def run(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="TOML file of netsim keys (docs/system.md)."),
    preset: str | None = typer.Option(
        None, "--preset", help="Named preset: demo (about a minute once cached)."
    ),
    protocols: str | None = typer.Option(None, "--protocols", help="Comma-separated protocols."),
    scenario: str | None = typer.Option(None, "--scenario", help="TR 38.901 scenario: umi or uma."),
    num_ues: int | None = typer.Option(None, "--ues", help="UEs in the cell."),
    num_es: int | None = typer.Option(None, "--es", help="Edge servers (one FIFO pool)."),
    es_batch: int | None = typer.Option(
        None, "--es-batch", help="Largest ES batch of one stage (1: FIFO; >1 uses the measured batch curve)."
    ),
    batch_device: str | None = typer.Option(
        None, "--batch-device", help="Device the ES batch curve is measured on (cpu, cuda)."
    ),
    bandwidth_mhz: float | None = typer.Option(
        None, "--bandwidth-mhz", help="Uplink and downlink carrier (MHz each)."
    ),
    scheduler: str | None = typer.Option(None, "--scheduler", help="round_robin or proportional_fair."),
    arrival_rate: float | None = typer.Option(
        None, "--rate", help="Offered load, requests per second (cell)."
    ),
    trace: str | None = typer.Option(None, "--trace", help="CSV of arrivals time_s[,ue] instead of Poisson."),
    requests: int | None = typer.Option(None, "--requests", help="Arrivals per simulation."),
    deadline_s: float | None = typer.Option(None, "--deadline", help="Latency deadline in seconds."),
    replications: int | None = typer.Option(None, "--replications", help="Independent replications (CIs)."),
    seed: int | None = typer.Option(None, "--seed", help="Master seed."),
    capacity: bool | None = typer.Option(
        None, "--capacity/--no-capacity", help="Bisect the service capacity."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Folder of cached engine demands."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (a list of protocols)."),
    db: Path | None = typer.Option(
        None, "--db", help="Also store the results (SQLite, table netsim_results)."
    ),
) -> None:
    """Simulate a cell of UEs sharing spectrum and edge servers; per protocol latency, deadline share, capacity."""
    if ctx.invoked_subcommand is not None:
        return
    from megen.netsim.runner import run_netsim

    cfg = _config(
        config,
        preset,
        dict(
            protocols=protocols,
            scenario=scenario,
            num_ues=num_ues,
            num_es=num_es,
            es_batch=es_batch,
            batch_device=batch_device,
            bandwidth_mhz=bandwidth_mhz,
            scheduler=scheduler,
            arrival_rate=arrival_rate,
            trace=trace,
            requests=requests,
            deadline_s=deadline_s,
            replications=replications,
            seed=seed,
            capacity=capacity,
            cache_dir=cache_dir,
        ),
    )
    started = time.perf_counter()
    with progress_steps(len(cfg.protocols) * cfg.replications, progress) as step:
        results = run_netsim(cfg, log=say, step=step)
    objs = [r.to_dict(cfg) for r in results]
    if db is not None:
        store_results(db, cfg, [{**o, "figure": "table", "x": cfg.arrival_rate} for o in objs])
    if json_output:
        print_json({"config": cfg.model_dump(mode="json"), "protocols": objs})
        return
    for line in describe_system(objs, cfg, time.perf_counter() - started):
        echo(line)


def _ms(value: float | None) -> str:
    return "never" if value is None else f"{1e3 * value:.2f}"


def describe_system(objs: list[dict[str, Any]], cfg: Any, elapsed_s: float) -> list[str]:
    """Human-readable table of :meth:`ProtocolResult.to_dict` objects."""
    lines = [
        f"{cfg.scenario} cell, {cfg.num_ues} UEs, {cfg.num_es} ES (batch <= {cfg.es_batch}), {cfg.bandwidth_mhz:g} MHz, {cfg.scheduler}, "
        f"{cfg.arrival_rate:g} requests/s, deadline {1e3 * cfg.deadline_s:g} ms, {cfg.replications} replication(s), "
        f"{elapsed_s:.1f} s",
        f"{'protocol':<9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'in time':>9}{'ES use':>8}{'UL use':>8}{'DL use':>8}"
        f"{'UE mJ':>9}{'PSNR':>7}{'capacity/s':>12}  bottleneck",
    ]
    for o in objs:
        cap = o["service_capacity"]
        lines.append(
            f"{o['protocol']:<9}{_ms(o['latency_p50_s']):>9}{_ms(o['latency_p95_s']):>9}{_ms(o['latency_p99_s']):>9}"
            f"{o['deadline_share']:>9.3f}{o['es_utilisation']:>8.3f}{o['uplink_utilisation']:>8.3f}"
            f"{o['downlink_utilisation']:>8.3f}{1e3 * (o['ue_energy_j'] or 0):>9.3f}{o['quality_psnr_db'] or 0:>7.1f}"
            f"{'-' if cap is None else f'{cap:.0f}':>12}  {o['bottleneck']}"
        )
        if not o["stable"]:
            lines.append(
                f"  {o['protocol']}: UNSTABLE at this load, backlog grows by {o['backlog_growth_per_s']:.4g} "
                f"requests/s (stability bound {o['stability_bound']:.4g}/s)"
            )
    return lines


@app.command("figures")
@handle_errors
def figures(
    out: Path = typer.Option(Path("runs/netsim-figures"), "--out", help="Folder for the PNGs and the JSON."),
    config: Path | None = typer.Option(None, "--config", help="TOML file of netsim keys."),
    preset: str | None = typer.Option(None, "--preset", help="Named preset (demo)."),
    protocols: str | None = typer.Option(None, "--protocols", help="Comma-separated protocols."),
    requests: int | None = typer.Option(None, "--requests", help="Arrivals per simulation."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Folder of cached engine demands."),
    es_batch: int | None = typer.Option(None, "--es-batch", help="Largest ES batch of one stage (1: FIFO)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    db: Path | None = typer.Option(
        None, "--db", help="Store the points (SQLite, table netsim_results) and draw from the stored rows."
    ),
) -> None:
    """Latency vs offered load, capacity vs bandwidth and vs number of ESs, per protocol (PNG + JSON)."""
    from megen.costs.profiles import load_profiles
    from megen.netsim.plots import figure_data, sweep_rows, write_figures
    from megen.netsim.runner import batch_curve, demands

    cfg = _config(
        config, preset, dict(protocols=protocols, requests=requests, cache_dir=cache_dir, es_batch=es_batch)
    )
    ds = demands(cfg, log=say)
    curve = batch_curve(cfg, say)
    with progress_steps(len(ds), progress) as step:
        rows = sweep_rows(cfg, ds, load_profiles(cfg.profiles), step, curve=curve)
    if db is not None:
        rows = store_results(db, cfg, rows).to_dict("records")
    for path in write_figures(figure_data(rows, cfg.deadline_s), out):
        echo(str(path))


def store_results(db: Path, cfg: Any, rows: list[dict[str, Any]]) -> Any:
    """Write ``rows`` of ``cfg``'s run into ``db`` (table ``netsim_results``); returns the run's stored rows."""
    from megen.netsim.reproduce import store_rows
    from megen.store.netsim import read_netsim, run_digest, write_netsim

    n = write_netsim(db, store_rows(cfg, rows))
    say(f"netsim: {n} result rows stored in {db}")
    return read_netsim(db, run=run_digest(cfg.model_dump(mode="json")))
