"""``megen generate`` and ``megen demo``: generate images with the staged model.

Every configuration flag of ``megen generate`` is a shorthand for one configuration path
(:data:`megen.config.SHORTHANDS`); ``--config FILE`` and ``--set PATH=VALUE`` reach every path.
Precedence: the file, then the flags, then ``--set``.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any

import typer

from megen.cli.common import handle_errors, print_json, say
from megen.config import SHORTHANDS, RunConfig, load_config, parse_assignments, parse_for, resolve_path
from megen.errors import MegenError

#: Help text of each configuration flag (one per shorthand; the path is appended).
FLAG_HELP: dict[str, str] = {
    "model": "'tiny' (embedded), a tiny model folder, or a Stable Diffusion folder/Hub id.",
    "steps": "Number of DDIM denoising steps N.",
    "strength": "SDEdit strength in [0, 1] (used with --image).",
    "guidance": "Classifier-free guidance scale (<= 1 disables CFG).",
    "seed": "Master random seed.",
    "protocol": "MEG protocol (see `megen protocols`); omitted = the unsplit pipeline on one node.",
    "plan": "A user plan (TOML, see docs/protocols.md) instead of --protocol.",
    "num_es": "Edge servers for multi-ES protocols (2..4).",
    "split_step": "Denoising step of the hand-over (0..N).",
    "sync_every": "Parallel protocols: halo exchange every k steps (0 = never).",
    "halo": "Parallel protocols: halo width in latent pixels.",
    "snr_aware": "Receiver-side denoising of noisy seeds.",
    "ue_model": "Denoiser the UE runs: ue (its own) | es (the ES's).",
    "completion_strength": "Strength of the UE's completion of a sketch.",
    "ref_as_seed": "EIUG/ESUC: send the reference up as a seed instead of an image.",
    "noise_at": "sender | receiver: who adds the seed's diffusion noise (receiver: the clean latent crosses).",
    "snr_db": "Es/N0 per complex symbol in dB, all links.",
    "ul_snr_db": "Uplink SNR (dB), overrides --snr-db.",
    "dl_snr_db": "Downlink SNR (dB), overrides --snr-db.",
    "bh_snr_db": "Backhaul SNR (dB), overrides --snr-db.",
    "channel": "none | awgn | rayleigh | rician (all links).",
    "coherence_symbols": "Fading block length in channel uses.",
    "k_factor_db": "Rician K factor (dB).",
    "transmission": "Seeds (latents): analog | digital.",
    "image_transmission": "Images: digital | analog.",
    "sketch_transmission": "Sketches: digital | analog.",
    "mcs": "Fixed MCS for digital links: 16qam-0.5 or a 38.214 entry such as qam64lowse:0 (default: link adaptation).",
    "harq": "HARQ of digital transport blocks: off | chase | ir (incremental redundancy).",
    "max_transmissions": "Most transmissions per transport block with HARQ (1..16).",
    "image_codec": "jpeg | webp | png (digital images).",
    "image_quality": "Codec quality 1..100.",
    "seed_bits": "Bits per latent value of digital seeds.",
    "seed_codec": "Seed codec: identity | linear | learned | digital (docs/seed_codecs.md).",
    "seed_uses": "Seed budget in channel uses per latent (default: the raw latent's).",
    "seed_power": "Analog seeds on fading links: uniform | waterfilling (transmitter CSI).",
    "equalizer": "zf | mmse.",
    "csi": "estimated (LS on counted pilots, the default) | perfect (genie).",
    "noise": "estimated (from the received signal, the default) | genie: the receiver's noise variance.",
    "profiles": "Device/link cost profiles (TOML).",
    "device": "auto | cpu | cuda[:i] | mps: where the model runs (every node).",
    "ue_device": "The UE's device (default: --device).",
    "es_device": "The edge servers' device (default: --device).",
    "dtype": "float32 | float16 | bfloat16 (accelerators only).",
}


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("demo")(demo)


def run_config(config: Path | None, flags: dict[str, Any], sets: list[str]) -> RunConfig:
    """The run configuration of ``megen generate``: file, then flags, then ``--set``."""
    base = load_config(config) if config is not None else None
    given = {SHORTHANDS[k]: v for k, v in flags.items() if v is not None}
    cfg = RunConfig.from_paths(given, base=base)
    return RunConfig.from_paths(parse_assignments(sets, lists=False), base=cfg)


def _generate(
    prompt: str,
    image: Path | None,
    num_images: int,
    out: Path,
    json_out: bool,
    config: Path | None,
    set_: list[str],
    es: list[str] | None = None,
    token_file: Path | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    **flags: Any,
) -> None:
    """Generate an image: the unsplit pipeline, or a MEG protocol over noisy links (--protocol)."""
    from megen.generation import generate_images

    if not 1 <= num_images <= 256:
        raise MegenError(f"--num-images must be in 1..256, got {num_images}")
    if image is not None and not image.exists():
        raise MegenError(f"image file not found: {image}")
    cfg = run_config(config, flags, set_)
    protocol_given = (
        flags["protocol"] is not None
        or flags["plan"] is not None
        or config is not None
        or any(resolve_path(s.partition("=")[0]).startswith("protocol.") for s in set_)
    )
    if backend not in ("local", "ray"):
        raise MegenError(f"--backend must be local or ray, got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise MegenError("--ray-address needs --backend ray")
    if es and backend == "ray":
        raise MegenError("--es (remote edge servers) and --backend ray are alternatives; choose one")
    placement = None
    if es:
        from megen.runtime.http_executor import RemotePlacement
        from megen.runtime.server import read_token

        token = read_token(None if token_file is None else str(token_file))
        placement = RemotePlacement(es, cfg.links, cfg.model.name, token)
    with contextlib.ExitStack() as stack:
        factory: Any = placement
        if backend == "ray":
            from megen.runtime.ray_executor import ray_backend

            factory = stack.enter_context(ray_backend(ray_address))
        summary = generate_images(
            cfg,
            prompt,
            num_images,
            image,
            out,
            protocol_given=protocol_given,
            log=say,
            engine_factory=factory,
        )
    if placement is not None and placement.engine is not None:
        summary["wall_s"] = placement.engine.wall.summary()
    if json_out:
        print_json(summary)
    else:
        say(summary["message"])


def _flag(name: str) -> inspect.Parameter:
    """The typer option of configuration shorthand ``name`` (text, parsed by the field's type)."""
    flag = "--" + name.replace("_", "-")
    help_text = f"{FLAG_HELP[name]} [{SHORTHANDS[name]}]"
    if name in ("snr_aware", "ref_as_seed"):
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool | None)
    option = typer.Option(None, flag, help=help_text, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=str | None)


@handle_errors
def generate(**kwargs: Any) -> None:
    """Generate an image: the unsplit pipeline, or a MEG protocol over noisy links (--protocol)."""
    flags = {k: kwargs.pop(k) for k in SHORTHANDS}
    parsed: dict[str, Any] = {
        k: v if v is None or isinstance(v, bool) else parse_for(SHORTHANDS[k], v) for k, v in flags.items()
    }
    _generate(**kwargs, **parsed)


def _option(name: str, annotation: Any, *decls: str, default: Any = None, help: str) -> inspect.Parameter:
    option = typer.Option(default, *decls, help=help)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


_FIXED = [
    _option("prompt", str, "--prompt", "-p", default=..., help="Text prompt, e.g. 'a photo of a sneaker'."),
    _option("image", Path | None, "--image", help="Reference image (image-to-image); any size/mode."),
    _option("num_images", int, "--num-images", "-n", default=1, help="Images to generate (1..256)."),
    _option("out", Path, "--out", default=Path("out/generated.png"), help="Output PNG (a grid when -n > 1)."),
    _option("json_out", bool, "--json", default=False, help="Print a JSON summary on stdout."),
    _option("config", Path | None, "--config", help="Run configuration (TOML or JSON; nested sections)."),
    _option(
        "set_",
        list[str],
        "--set",
        default=[],
        help="PATH=VALUE for any configuration path, e.g. task.steps=10.",
    ),
    _option(
        "es", list[str], "--es", default=[], help="URL of a `megen serve` edge server; the i-th serves ES<i>."
    ),
    _option("token_file", Path | None, "--token-file", help="File holding the edge servers' bearer token."),
    _option(
        "backend",
        str,
        "--backend",
        default="local",
        help="local | ray: where edge servers run (ray: one actor each).",
    ),
    _option("ray_address", str | None, "--ray-address", help="Ray cluster HOST:PORT (default: a local Ray)."),
]
generate.__signature__ = inspect.Signature([*_FIXED, *(_flag(n) for n in SHORTHANDS)])  # type: ignore[attr-defined]


@handle_errors
def demo(
    out: Path = typer.Option(Path("out"), help="Output folder."),
    seed: int = typer.Option(0, help="Random seed."),
    steps: int = typer.Option(25, help="DDIM steps."),
    guidance: float = typer.Option(4.0, help="CFG scale."),
) -> None:
    """The main job of `make demo` on the embedded model (see README)."""
    from megen.experiments.demo import run_demo

    run_demo(out, seed=seed, steps=steps, guidance=guidance, log=say)
