"""``megen train``: rebuild the embedded tiny model's weights from scratch (seeded)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from megen.cli.common import console, handle_errors, print_json, say
from megen.errors import MegenError

if TYPE_CHECKING:
    from megen.training.seed_codec import SeedCodecTrainConfig


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
        "classifier,vae,es,ue",
        help="Comma list of parts to (re)train (classifier, vae, es, ue, seed-codec); others load from OUT.",
    ),
    seed_codec_steps: int = typer.Option(3000, min=1, help="Optimiser steps of the learned seed decoder."),
    seed_codec_latents: int = typer.Option(
        20000, min=16, help="Training latents of the seed codecs (images, or photo crops for SD)."
    ),
    seed_model: str | None = typer.Option(
        None,
        help="seed-codec part: the model whose latents to use (a Stable Diffusion folder: photo crops; "
        "writes seed_codec.safetensors into it). Default: OUT if it holds a VAE, else the packaged tiny.",
    ),
    seed_codec_tile_steps: int = typer.Option(
        2000, min=0, help="Optimiser steps of each latent-tile shape's learned seed codec (0: none)."
    ),
    seed_codec_tile_layouts: str = typer.Option(
        "2:2",
        help="seed-codec part: tile layouts whose tile shapes get a learned codec, as ES:HALO comma list "
        "(edge servers and halo columns of UIDG/DIUG/DSUC, e.g. 2:2,3:1).",
    ),
    seed_codec_tiles_only: bool = typer.Option(
        False,
        help="seed-codec part: train only the tile codecs, keeping every tensor of the existing weights "
        "(OUT's seed_codec.safetensors, else the model's).",
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
    """Train the tiny model (classifier, VAE, ES and UE denoisers) on Fashion-MNIST, and the seed codecs.

    (Long because every part's settings are options.)
    """
    from megen.data import dataset_available
    from megen.models.tiny import packaged_weights_dir
    from megen.training.train import TrainConfig, train_tiny

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    bad = set(chosen) - {"classifier", "vae", "es", "ue", "seed-codec"}
    if bad:
        raise MegenError(f"unknown part(s) {sorted(bad)}; choose from classifier, vae, es, ue, seed-codec")
    if not dataset_available() and (seed_model is None or set(chosen) != {"seed-codec"}):
        raise MegenError("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if "seed-codec" in chosen:
        chosen = tuple(p for p in chosen if p != "seed-codec")
        from megen.training.seed_codec import SeedCodecTrainConfig

        sc_cfg = SeedCodecTrainConfig(
            seed=seed,
            steps=seed_codec_steps,
            max_minutes=max_minutes,
            tile_steps=seed_codec_tile_steps,
            tile_layouts=tile_layouts(seed_codec_tile_layouts),
        )
        _train_seed_codec(out, seed_model, sc_cfg, seed_codec_latents, install, seed_codec_tiles_only)
        if not chosen:
            return
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


def _train_seed_codec(
    out: Path, seed_model: str | None, cfg: SeedCodecTrainConfig, count: int, install: bool, tiles_only: bool
) -> None:
    """The seed-codec part: latents of the model, then :func:`megen.training.seed_codec.train_seed_codec`.

    ``tiles_only``: :func:`megen.training.seed_codec.add_tile_codecs` on the existing weights instead.
    """
    from megen.link.seed_prior import weights_path
    from megen.models.tiny import is_tiny_folder, packaged_weights_dir
    from megen.training.seed_codec import add_tile_codecs, codec_latents, train_seed_codec

    model = seed_model or (str(out) if is_tiny_folder(out) and (out / "vae").exists() else "tiny")
    dest = Path(seed_model) if seed_model is not None else out
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "seed_codec.safetensors"
    source = target if target.exists() else weights_path(model)
    if tiles_only and not source.exists():
        raise MegenError(f"--seed-codec-tiles-only needs existing seed-codec weights ({source} is missing)")
    say(f"seed-codec: encoding {count} training latents of {model}")
    latents, heldout = codec_latents(model, count, cfg.seed)
    if tiles_only:
        report = add_tile_codecs(source, latents, heldout, target, cfg, log=say)
    else:
        report = train_seed_codec(latents, heldout, target, cfg, log=say)
    say(f"trained seed-codec in {report.seconds:.0f} s -> {target}")
    print_json(
        {
            "seed_codec_heldout_mse": report.heldout_mse,
            "learned_encoder_mse": report.jscc_mse,
            "learned_encoder_mse_noisy_seed": report.jscc_mse_noisy,
            "learned_infinite_snr_mse": report.jscc_ideal,
            "learned_encoder_beats_linear_everywhere": report.encoder_beats_linear,
            "learned_tile_mse": report.tile_mse,
        }
    )
    if install and seed_model is None:
        shutil.copy2(dest / "seed_codec.safetensors", packaged_weights_dir() / "seed_codec.safetensors")
        say(f"installed into {packaged_weights_dir()}")


def tile_layouts(text: str) -> tuple[tuple[int, int], ...]:
    """``"2:2,3:1"`` -> ``((2, 2), (3, 1))``: edge servers and halo columns of each tile layout.

    Raises:
        MegenError: an entry that is not ``ES:HALO`` with ES >= 2 and HALO >= 0.
    """
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        es, _, halo = part.partition(":")
        if not (es.strip().isdigit() and halo.strip().isdigit() and int(es) >= 2):
            raise MegenError(f"--seed-codec-tile-layouts: {part!r} is not ES:HALO (ES >= 2, HALO >= 0)")
        out.append((int(es), int(halo)))
    if not out:
        raise MegenError("--seed-codec-tile-layouts: give at least one ES:HALO")
    return tuple(out)
