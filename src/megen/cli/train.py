"""``megen train``: rebuild the embedded tiny model's weights from scratch (seeded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from megen.cli.common import console, handle_errors
from megen.errors import MegenError


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@handle_errors
def train(
    out: Path = typer.Option(Path("runs/tiny"), help="Output model folder (load it with --model PATH)."),
    seed: int = typer.Option(0, help="Random seed of every part."),
    classifier_steps: int = typer.Option(3000, min=0, help="Optimiser steps of the evaluation classifier."),
    vae_steps: int = typer.Option(1500, min=0, help="Optimiser steps of the VAE."),
    es_steps: int = typer.Option(1500, min=0, help="Optimiser steps of the ES denoiser."),
    ue_steps: int = typer.Option(1500, min=0, help="Optimiser steps of the UE denoiser."),
    parts: str = typer.Option(
        "classifier,vae,es,ue", help="Comma list of parts to (re)train; others load from OUT."
    ),
    max_minutes: float = typer.Option(60.0, min=0.1, help="Safety cap on the time of each part (minutes)."),
    threads: int = typer.Option(0, min=0, help="torch threads (0 = torch default)."),
    subset: int = typer.Option(
        0, min=0, help="Train on the first N images only (0 = all 60k; for smoke runs)."
    ),
    install: bool = typer.Option(False, help="Copy the result over the weights shipped in the package."),
    evaluate: bool = typer.Option(True, help="Measure the model card numbers afterwards (docs/models.md)."),
    eval_samples: int = typer.Option(
        1000, min=100, help="Generated samples per denoiser for prompt accuracy/FID."
    ),
) -> None:
    """Train the tiny model (classifier, VAE, ES and UE denoisers) on Fashion-MNIST."""
    from megen.data import dataset_available
    from megen.models.tiny import packaged_weights_dir
    from megen.training.train import TrainConfig, train_tiny

    if not dataset_available():
        raise MegenError("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    bad = set(chosen) - {"classifier", "vae", "es", "ue"}
    if bad:
        raise MegenError(f"unknown part(s) {sorted(bad)}; choose from classifier, vae, es, ue")
    cfg = TrainConfig(
        seed=seed,
        classifier_steps=classifier_steps,
        vae_steps=vae_steps,
        es_steps=es_steps,
        ue_steps=ue_steps,
        max_minutes_per_part=max_minutes,
        threads=threads,
        parts=chosen,
        subset=subset,
    )
    report = train_tiny(out, cfg, log=lambda s: console.print(s, highlight=False))
    console.print(f"trained {', '.join(chosen)} in {sum(report.seconds.values()):.0f} s -> {out}")
    if evaluate:
        from megen.training.evaluate import evaluate_tiny

        numbers = evaluate_tiny(out, samples=eval_samples, log=lambda s: console.print(s, highlight=False))
        console.print(numbers, markup=False)
    if install:
        dest = packaged_weights_dir()
        shutil.copytree(out, dest, dirs_exist_ok=True)
        console.print(f"installed into {dest}")
