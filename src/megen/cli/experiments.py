"""``megen sweep``, ``megen plot``, ``megen export`` and ``megen reproduce``: the case study's experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from megen.cli.common import handle_errors, say
from megen.config import parse_assignments
from megen.errors import MegenError

EXIT_INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}


def register(app: typer.Typer) -> None:
    """Add ``sweep``, ``plot``, ``export`` and ``reproduce`` to the root app."""
    app.command("sweep")(sweep)
    app.command("plot")(plot)
    app.command("export")(export)
    app.command("reproduce")(reproduce)


@handle_errors
def sweep(
    config: Path | None = typer.Option(
        None, "--config", help="TOML experiment file (grids); replaces the grid flags."
    ),
    protocols: str | None = typer.Option(
        None, help="Comma list, e.g. central,local,EIUG,CIAG (default: central)."
    ),
    channels: str | None = typer.Option(
        None, help="Comma list of none | awgn | rayleigh | rician (default: awgn)."
    ),
    snr_db: str | None = typer.Option(
        None, "--snr-db", help="SNRs in dB: start:stop:step (inclusive) or a comma list."
    ),
    transmission: str | None = typer.Option(
        None, help="Seed transmission modes: analog,digital (default: analog)."
    ),
    task: str | None = typer.Option(None, help="i2i (image-to-image, reference images) | t2i | i2i,t2i."),
    samples: int = typer.Option(100, help="Images per configuration and seed."),
    seeds: str = typer.Option("0", help="Comma list of master seeds."),
    steps: int | None = typer.Option(None, help="DDIM steps (default 25)."),
    strength: float | None = typer.Option(None, help="SDEdit strength (default 0.6)."),
    num_es: int | None = typer.Option(
        None, "--num-es", help="Edge servers for multi-ES protocols (default 2)."
    ),
    seed_codec: str | None = typer.Option(None, help="Seed codecs, e.g. identity,linear,learned,digital."),
    seed_uses: str | None = typer.Option(None, help="Seed budgets in channel uses, e.g. 64,128,512."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Any RunConfig field as key=value or key=v1,v2 (a grid axis), e.g. image_quality=10,90.",
    ),
    batch_size: int = typer.Option(
        25, "--batch-size", help="Images per run (part of the results: keep it fixed)."
    ),
    prompt_shift: int = typer.Option(
        0, "--prompt-shift", help="i2i prompt class = reference class + shift (mod 10, or 8 photos)."
    ),
    references: str = typer.Option(
        "auto",
        "--references",
        help="auto | fashion-mnist | photos (scikit-image RGB photos with captions; auto: photos for "
        "Stable Diffusion checkpoints, Fashion-MNIST for tiny models).",
    ),
    model: str = typer.Option(
        "tiny", help="'tiny', a model folder or Hub id; 'tiny-random' = random weights (tests)."
    ),
    db: Path = typer.Option(Path("results.sqlite"), "--db", help="Results database (created, or continued)."),
    workers: int = typer.Option(
        1, "--workers", "-j", help="Processes; each loads the model once, 1 thread each."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar with ETA on stderr."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda[:i] | mps: where the model runs."),
    backend: str = typer.Option("local", "--backend", help="local (processes) | ray (batches as Ray tasks)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster HOST:PORT."),
) -> None:
    """Run a sweep (protocols x channels x SNRs x modes x samples x seeds) into a SQLite database.

    Killed and started again with the same arguments, it continues where it stopped. (Long because
    every grid axis and runtime choice is one option.)
    """
    from megen.experiments.sweep import run_sweep

    grid_flags = {
        "protocols": protocols,
        "channels": channels,
        "snr_db": snr_db,
        "transmission": transmission,
        "task": task,
        "steps": steps,
        "strength": strength,
        "num_es": num_es,
        "set": [*seed_axes(seed_codec=seed_codec, seed_uses=seed_uses), *set_] or None,
    }
    common = {"samples": samples, "seeds": seeds, "batch_size": batch_size, "prompt_shift": prompt_shift}
    spec = _sweep_spec(config, grid_flags, model=model, references=references, common=common)
    where: dict[str, Any] = {"device": device, "backend": backend, "ray_address": ray_address}
    result = run_sweep(spec, db, workers=workers, progress=progress, log=say, **where)
    stored = result.existing_rows + result.written_rows
    if result.interrupted:
        say(
            f"interrupted by {result.signal_name}: {result.written_rows} new rows written, {stored}/{result.expected_rows} "
            "stored; run the same command again to continue"
        )
        raise typer.Exit(EXIT_INTERRUPTED.get(result.signal_name or "", 130))
    say(f"{db}: {stored}/{result.expected_rows} rows ({result.written_rows} new) in {result.seconds:.1f} s")


def seed_axes(**axes: str | None) -> list[str]:
    """``--seed-codec``/``--seed-uses`` as ``--set`` assignments (grid axes over every link)."""
    return [f"{k}={v}" for k, v in axes.items() if v is not None]


def _sweep_spec(
    config: Path | None, flags: dict[str, Any], *, model: str, references: str, common: dict[str, Any]
):
    """The sweep of ``megen sweep``: the TOML file (``--config``, no grid flags) or the grid flags."""
    from megen.experiments.spec import load_spec, make_spec, spec_from_flags

    if config is not None:
        given = [k for k, v in flags.items() if v is not None]
        if given:
            raise MegenError(
                f"--config replaces the grid flags; drop --{', --'.join(g.replace('_', '-') for g in given)}"
            )
        spec = load_spec(config)
        overrides: dict[str, Any] = {"model": model} if model != "tiny" else {}
        if references != "auto":
            overrides["references"] = references
        return make_spec({**spec.model_dump(), **overrides}) if overrides else spec
    extra: dict[str, Any] = {k: flags[k] for k in ("steps", "strength", "num_es") if flags[k] is not None}
    extra.update(parse_assignments(flags["set"] or [], lists=True))
    return spec_from_flags(
        protocols=flags["protocols"] or "central",
        channels=flags["channels"] or "awgn",
        snr_db=flags["snr_db"] if flags["snr_db"] is not None else "0:20:10",
        transmissions=flags["transmission"] or "analog",
        task=flags["task"] or "i2i",
        model=model,
        references=references,
        extra=extra,
        **common,
    )


@handle_errors
def plot(
    db: Path = typer.Argument(..., help="Results database written by `megen sweep`."),
    out: Path = typer.Option(Path("figures"), "--out", help="Folder for the figures (PNG and PDF)."),
    snr_db: float | None = typer.Option(
        None, "--snr-db", help="SNR of the bar charts (default: nearest to 10 dB)."
    ),
) -> None:
    """Draw the case study's figures from a results database."""
    from megen.report.plots import plot_all
    from megen.store import ResultsStore

    with ResultsStore.open(db) as store:
        paths = plot_all(store, out, snr_db=snr_db, log=say)
    if not paths:
        raise MegenError(f"no figure could be drawn from {db}")
    say(f"{len(paths)} files in {out}: " + ", ".join(sorted({p.stem for p in paths})))


@handle_errors
def export(
    db: Path = typer.Argument(..., help="Results database written by `megen sweep`."),
    csv: Path | None = typer.Option(None, "--csv", help="All rows as CSV (images left out)."),
    parquet: Path | None = typer.Option(None, "--parquet", help="All rows as Parquet (images left out)."),
    summary: Path | None = typer.Option(
        None, "--summary", help="Per-configuration means, 95% CIs and FID as CSV."
    ),
    fid: bool = typer.Option(True, "--fid/--no-fid", help="Classifier FID in the summary (>= 100 samples)."),
) -> None:
    """Export a results database to CSV and/or Parquet (and a per-configuration summary)."""
    from megen.analysis import aggregate
    from megen.files import atomic_output
    from megen.store import ResultsStore, check_outputs
    from megen.store import export as export_rows

    if csv is None and parquet is None and summary is None:
        raise MegenError("nothing to export: give --csv FILE, --parquet FILE and/or --summary FILE")
    with ResultsStore.open(db) as store:
        check_outputs(store, [csv, parquet, summary], need_rows=summary is not None)
        if csv is not None or parquet is not None:
            n = export_rows(store, csv=csv, parquet=parquet)
            say(f"{n} rows -> " + ", ".join(str(p) for p in (csv, parquet) if p is not None))
        if summary is not None:
            agg = aggregate(store, fid=fid, log=say)
            with atomic_output(summary) as tmp:
                agg.to_csv(tmp, index=False)
            say(f"{len(agg)} configurations -> {summary}")


@handle_errors
def reproduce(
    out: Path = typer.Option(
        Path("report"), "--out", help="Report folder (report.md, figures, CSV, results.sqlite)."
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="Publication size: 250 samples per point, 1000 at 0 and 10 dB (270 000 images, ~6-11 h on 2 cores; resumable).",
    ),
    preset: str = typer.Option(
        "default",
        help="demo (a few minutes) | default (22 350 images, ~2 h on 2 workers) | full | netsim (system level, ~2 min).",
    ),
    workers: int = typer.Option(2, "--workers", "-j", help="Processes for the sweep."),
    model: str = typer.Option(
        "tiny",
        help="'tiny' (embedded), a Stable Diffusion folder or cached Hub id (photo references; no prompt "
        "accuracy or FID), or 'tiny-random' (plumbing only).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar with ETA on stderr."),
    report_only: bool = typer.Option(
        False,
        "--report-only",
        help="Write the report from the rows already in OUT/results.sqlite (e.g. of a stopped --full run).",
    ),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda[:i] | mps: where the model runs."),
) -> None:
    """Run the whole case study (embedded model by default) and write report/report.md with figures and tables."""
    from megen.experiments.reproduce import reproduce as run_reproduce

    if full:
        if preset not in ("default", "full"):
            raise MegenError(f"--full and --preset {preset} contradict each other")
        preset = "full"
    result = run_reproduce(
        out,
        preset=preset,
        workers=workers,
        model=model,
        progress=progress,
        log=say,
        report_only=report_only,
        device=device,
    )
    if result.interrupted:
        say("interrupted; run the same command again to continue the sweep")
        raise typer.Exit(EXIT_INTERRUPTED.get(result.signal_name or "", 130))
    say(f"report: {result.report}")
