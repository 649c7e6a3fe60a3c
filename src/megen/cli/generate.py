"""``megen generate`` and ``megen demo``: generate images with the staged model."""

from __future__ import annotations

import math
import time
from pathlib import Path

import typer

from megen.cli.common import console, handle_errors, print_json
from megen.errors import MegenError


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("demo")(demo)


def format_validation_error(exc) -> str:
    """One line from a pydantic ValidationError: the first problem, with its field."""
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err.get("loc", ())) or "value"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"--{field.replace('_', '-')}: {msg} (got {err.get('input')!r})"


def validate_common(prompt: str | None, strength: float, steps: int, guidance: float, seed: int) -> None:
    if prompt is not None and not prompt.strip():
        raise MegenError("the prompt is empty; give --prompt 'a photo of a sneaker'")
    if not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise MegenError(f"--strength must be in [0, 1], got {strength}")
    if steps < 1:
        raise MegenError(f"--steps must be >= 1, got {steps}")
    if steps > 1000:
        raise MegenError(f"--steps must be <= 1000 (the training schedule length), got {steps}")
    if not math.isfinite(guidance) or guidance < 0:
        raise MegenError(f"--guidance must be a finite number >= 0, got {guidance}")
    if seed < 0:
        raise MegenError(f"--seed must be >= 0, got {seed}")


@handle_errors
def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="Text prompt, e.g. 'a photo of a sneaker'."),
    image: Path | None = typer.Option(
        None, "--image", help="Reference image (image-to-image); any size/mode."
    ),
    strength: float = typer.Option(0.6, help="SDEdit strength in [0, 1] (used with --image)."),
    steps: int = typer.Option(25, help="Number of DDIM denoising steps N."),
    guidance: float = typer.Option(4.0, help="Classifier-free guidance scale (<= 1 disables CFG)."),
    seed: int = typer.Option(0, help="Random seed."),
    num_images: int = typer.Option(1, "--num-images", "-n", help="Images to generate (1..256)."),
    model: str = typer.Option(
        "tiny", help="'tiny' (embedded), a tiny model folder, or a Stable Diffusion folder/Hub id."
    ),
    out: Path = typer.Option(Path("out/generated.png"), help="Output PNG (a grid when --num-images > 1)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    protocol: str | None = typer.Option(
        None, help="MEG protocol (see `megen protocols`); omitted = the unsplit pipeline on one node."
    ),
    num_es: int = typer.Option(2, "--num-es", help="Edge servers for multi-ES protocols (2..4)."),
    split_step: int | None = typer.Option(
        None, "--split-step", help="Denoising step of the hand-over (0..N)."
    ),
    sync_every: int = typer.Option(
        1, "--sync-every", help="Parallel protocols: halo exchange every k steps (0 = never)."
    ),
    channel: str = typer.Option("awgn", help="none | awgn | rayleigh | rician."),
    snr_db: float = typer.Option(10.0, "--snr-db", help="Es/N0 per complex symbol in dB, all links."),
    ul_snr_db: float | None = typer.Option(None, "--ul-snr-db", help="Uplink SNR (dB), overrides --snr-db."),
    dl_snr_db: float | None = typer.Option(
        None, "--dl-snr-db", help="Downlink SNR (dB), overrides --snr-db."
    ),
    bh_snr_db: float | None = typer.Option(
        None, "--bh-snr-db", help="Backhaul SNR (dB), overrides --snr-db."
    ),
    transmission: str = typer.Option("analog", help="Seeds (latents): analog | digital."),
    image_transmission: str = typer.Option(
        "digital", "--image-transmission", help="Images: digital | analog."
    ),
    sketch_transmission: str = typer.Option(
        "digital", "--sketch-transmission", help="Sketches: digital | analog."
    ),
    image_codec: str = typer.Option("jpeg", "--image-codec", help="jpeg | webp | png (digital images)."),
    image_quality: int = typer.Option(90, "--image-quality", help="Codec quality 1..100."),
    mcs: str | None = typer.Option(None, help="Fixed MCS name for digital links (default: link adaptation)."),
    snr_aware: bool = typer.Option(
        True, "--snr-aware/--no-snr-aware", help="Receiver-side denoising of noisy seeds."
    ),
    ue_model: str = typer.Option(
        "ue", "--ue-model", help="Denoiser the UE runs: ue (its own) | es (the ES's)."
    ),
    profiles: Path | None = typer.Option(None, help="Device/link cost profiles (TOML)."),
    plan: Path | None = typer.Option(
        None, help="A user plan (TOML, see docs/protocols.md) instead of --protocol."
    ),
) -> None:
    """Generate an image: the unsplit pipeline, or a MEG protocol over noisy links (--protocol)."""
    validate_common(prompt, strength, steps, guidance, seed)
    if not 1 <= num_images <= 256:
        raise MegenError(f"--num-images must be in 1..256, got {num_images}")
    from megen.images import load_image, save_image
    from megen.models.registry import load_model

    if image is not None and not image.exists():
        raise MegenError(f"image file not found: {image}")
    ldm = load_model(model)
    ref = None
    if image is not None:
        ref, notes = load_image(image, channels=ldm.image_channels, size=ldm.image_size)
        for note in notes:
            console.print(f"reference image: {note}", highlight=False)
        ref = ref.expand(num_images, -1, -1, -1).contiguous()
    if plan is not None and protocol is None:
        protocol = "central"  # only labels the fidelity reference; the plan file decides placement
    if protocol is not None:
        from pydantic import ValidationError

        from megen.protocols.runner import RunConfig, run_protocol

        try:
            cfg = RunConfig.model_validate(
                dict(
                    protocol=protocol,
                    model=model,
                    steps=steps,
                    strength=strength,
                    guidance=guidance,
                    seed=seed,
                    num_es=num_es,
                    split_step=split_step,
                    sync_every=sync_every,
                    channel=channel,
                    snr_db=snr_db,
                    ul_snr_db=ul_snr_db,
                    dl_snr_db=dl_snr_db,
                    bh_snr_db=bh_snr_db,
                    transmission=transmission,
                    image_transmission=image_transmission,
                    sketch_transmission=sketch_transmission,
                    image_codec=image_codec,
                    image_quality=image_quality,
                    mcs=mcs,
                    snr_aware=snr_aware,
                    ue_model=ue_model,
                    profiles=None if profiles is None else str(profiles),
                    plan=None if plan is None else str(plan),
                )
            )
        except ValidationError as exc:
            raise MegenError(format_validation_error(exc)) from None
        result = run_protocol(cfg, [prompt] * num_images, ref, model=ldm)
        save_image(result.images, out)
        run_summary = result.summary()
        run_summary["out"] = str(out)
        if json_out:
            print_json(run_summary)
        else:
            q = run_summary["quality"]
            console.print(
                f"{cfg.protocol}: wrote {out}; channel uses {run_summary['channel_uses']['total']}, "
                f"latency {run_summary['latency_s'] * 1e3:.2f} ms, energy {run_summary['energy_j'] * 1e3:.3f} mJ, "
                f"PSNR vs error-free {q['psnr_fidelity_db']:.2f} dB",
                highlight=False,
            )
        return
    t0 = time.time()
    _, imgs = ldm.generate(
        [prompt] * num_images,
        images=ref,
        strength=strength if ref is not None else None,
        num_steps=steps,
        guidance=guidance,
        seed=seed,
    )
    seconds = time.time() - t0
    save_image(imgs, out)
    summary: dict = {
        "prompt": prompt,
        "model": ldm.name,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "strength": strength if ref is not None else None,
        "num_images": num_images,
        "out": str(out),
        "seconds": round(seconds, 3),
    }
    if ldm.classifier is not None:
        wanted = ldm.prompt_class(prompt)
        pred = ldm.classify(imgs).tolist()
        summary["prompt_class"] = None if wanted is None else ldm.class_names[wanted]  # type: ignore[index]
        summary["predicted_classes"] = [ldm.class_names[i] for i in pred]  # type: ignore[index]
        if wanted is not None:
            summary["prompt_match"] = sum(p == wanted for p in pred) / len(pred)
    if json_out:
        print_json(summary)
    else:
        console.print(f"wrote {out} ({num_images} image(s), {seconds:.2f} s)")


@handle_errors
def demo(
    out: Path = typer.Option(Path("out"), help="Output folder."),
    seed: int = typer.Option(0, help="Random seed."),
    steps: int = typer.Option(25, help="DDIM steps."),
    guidance: float = typer.Option(4.0, help="CFG scale."),
) -> None:
    """The main job of `make demo` on the embedded model (see README)."""
    from megen.experiments.demo import run_demo

    run_demo(out, seed=seed, steps=steps, guidance=guidance, log=lambda s: console.print(s, highlight=False))
