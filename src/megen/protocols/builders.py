"""The named protocols as plan builders (DESIGN.md section 2, as this project reads it).

Each builder is a pure function ``(ProtocolOptions, num_steps, start_step, image_to_image) -> Plan``;
:data:`PROTOCOLS` is the plain registry. Reading of the names: the *inference* side runs the stages
before the seed/sketch crosses a link, the *generation* side the stages after it.

Where this project's reading adds to the design table:

* The prompt (a few bytes) crosses the link as control data and every node that denoises encodes it
  itself (stage ``T`` on that node). Sending the text embedding instead would cost
  16 x 384 reals (3072 channel uses) against ~20 bytes.
* Text-to-image has no reference; where a protocol's seed is ``z_ref`` (UIEG, CIAG, UIDG, UIDCG), the
  UE's seed is then the initial noise ``Z`` (drawn from the shared seed).
* The parallel protocols forward the prompt (and reference image) from ES1 to the other ESs over the
  backhaul rather than sending them up the radio link k times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from megen.errors import MegenError
from megen.protocols.plan import ItemRef, Mode, Op, ParallelDenoise, Plan, Stage, Stitch, Tile, Transfer

PROMPT, REFERENCE, LATENT = ItemRef("prompt"), ItemRef("reference"), ItemRef("latent")
IMAGE, SKETCH = ItemRef("image"), ItemRef("sketch")


@dataclass(frozen=True)
class ProtocolOptions:
    """Options shared by the plan builders.

    Attributes:
        num_es: Edge servers for the multi-ES protocols (2..4).
        split_step: Denoising step of the hand-over (``None`` = the protocol's default).
        sync_every: Parallel protocols: halo exchange every this many steps (0 = never).
        halo: Parallel protocols: halo width in latent columns.
        seed_mode: Transmission of seeds (latents): ``analog`` or ``digital``.
        image_mode: Transmission of images (reference, final image): ``digital`` or ``analog``.
        sketch_mode: Transmission of sketches: ``digital`` or ``analog``.
        ref_as_seed: EIUG/ESUC: the UE encodes the reference and sends it up as a seed (``E Z`` on the UE)
            instead of sending the image.
        ue_denoiser: Denoiser the UE uses (``ue`` = its own smaller one, ``es`` = the ES's).
    """

    num_es: int = 2
    split_step: int | None = None
    sync_every: int = 1
    halo: int = 2
    seed_mode: Mode = "analog"
    image_mode: Mode = "digital"
    sketch_mode: Mode = "digital"
    ref_as_seed: bool = False
    ue_denoiser: str = "ue"


Builder = Callable[[ProtocolOptions, int, int, bool], Plan]


def _es(i: int) -> str:
    return f"ES{i + 1}"


def _split(o: ProtocolOptions, n: int, s: int, default: int, name: str) -> int:
    k = default if o.split_step is None else o.split_step
    if not 0 <= k <= n:
        raise MegenError(f"{name}: --split-step must be in 0..{n}, got {k}")
    return max(k, s)


def _no_split(o: ProtocolOptions, name: str) -> None:
    if o.split_step is not None:
        raise MegenError(f"protocol {name} has no split step (its hand-over is a sketch or an image)")


def _uplink_prompt(dst: str = "ES1") -> list[Op]:
    return [Transfer(PROMPT, "UE", dst, "digital")]


def _reference_to_es1(o: ProtocolOptions, i2i: bool) -> list[Op]:
    """The ES1's initial latent: from the reference image sent up, or the UE's seed, or pure noise."""
    if i2i and o.ref_as_seed:
        return [Stage("E", "UE"), Stage("Z", "UE"), Transfer(LATENT, "UE", "ES1", o.seed_mode)]
    if i2i:
        return [Transfer(REFERENCE, "UE", "ES1", o.image_mode), Stage("E", "ES1"), Stage("Z", "ES1")]
    return [Stage("Z", "ES1")]


def central(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    _no_split(o, "central")
    ops: list[Op] = _uplink_prompt()
    if i2i:
        ops += [Transfer(REFERENCE, "UE", "ES1", o.image_mode), Stage("E", "ES1")]
    ops += [Stage("T", "ES1"), Stage("Z", "ES1"), Stage("D", "ES1", denoiser="es"), Stage("G", "ES1")]
    ops += [Transfer(IMAGE, "ES1", "UE", o.image_mode)]
    return Plan(
        "central", tuple(ops), "UE", "generate-and-download: the ES runs everything, the image goes down"
    )


def local(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    _no_split(o, "local")
    ops: list[Op] = [
        Stage("T", "UE"),
        Stage("Z", "UE"),
        Stage("D", "UE", denoiser=o.ue_denoiser),
        Stage("G", "UE"),
    ]
    return Plan(
        "local",
        tuple(ops),
        "UE",
        "the UE alone, prompt only, its own model, no link (a bound, not a protocol)",
    )


def eiug(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _split(o, n, s, n, "EIUG")
    ops: list[Op] = _uplink_prompt()
    ops += _reference_to_es1(o, i2i)
    ops += [Stage("T", "ES1"), Stage("D", "ES1", stop=k, denoiser="es")]
    ops += [Transfer(LATENT, "ES1", "UE", o.seed_mode)]
    if k < n:
        ops += [Stage("T", "UE"), Stage("D", "UE", start=k, denoiser=o.ue_denoiser)]
    ops += [Stage("G", "UE")]
    return Plan(
        "EIUG",
        tuple(ops),
        "UE",
        "ES infers the seed (T E Z D), the UE generates (G); the final latent goes down",
    )


def uieg(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _split(o, n, s, s, "UIEG")
    ops: list[Op] = []
    if i2i:
        ops += [Stage("E", "UE")]
    ops += [Stage("Z", "UE")]
    if k > s:
        ops += [Stage("T", "UE"), Stage("D", "UE", stop=k, denoiser=o.ue_denoiser)]
    ops += [Transfer(LATENT, "UE", "ES1", o.seed_mode)] + _uplink_prompt()
    ops += [Stage("T", "ES1"), Stage("D", "ES1", start=k, denoiser="es"), Stage("G", "ES1")]
    return Plan(
        "UIEG",
        tuple(ops),
        "ES1",
        "UE infers the seed (E Z [+ first steps]), the ES generates; the image lands at the ES",
    )


def ciag(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _split(o, n, s, s + (n - s) // 2, "CIAG")
    ops: list[Op] = []
    if i2i:
        ops += [Stage("E", "UE")]
    ops += [Stage("Z", "UE"), Transfer(LATENT, "UE", "ES1", o.seed_mode), *_uplink_prompt()]
    ops += [Stage("T", "ES1"), Stage("D", "ES1", stop=k, denoiser="es")]
    ops += [Transfer(LATENT, "ES1", "UE", o.seed_mode)]
    ops += [Stage("T", "UE"), Stage("D", "UE", start=k, denoiser=o.ue_denoiser), Stage("G", "UE")]
    return Plan(
        "CIAG", tuple(ops), "UE", "UE seeds, ES runs the first steps, the UE finishes with its own denoiser"
    )


def esuc(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    _no_split(o, "ESUC")
    ops: list[Op] = _uplink_prompt()
    ops += _reference_to_es1(o, i2i)
    ops += [Stage("T", "ES1"), Stage("D", "ES1", denoiser="es"), Stage("K", "ES1")]
    ops += [
        Transfer(SKETCH, "ES1", "UE", o.sketch_mode),
        Stage("T", "UE"),
        Stage("C", "UE", denoiser=o.ue_denoiser),
    ]
    return Plan("ESUC", tuple(ops), "UE", "ES generates and sends a sketch, the UE completes it")


# ---------------------------------------------------------------------------- multi-ES
def _check_k(o: ProtocolOptions, name: str) -> int:
    if not 2 <= o.num_es <= 4:
        raise MegenError(f"protocol {name} needs 2..4 edge servers (--num-es), got {o.num_es}")
    return o.num_es


def _forward_control(k: int, i2i: bool, with_reference: bool, image_mode: Mode) -> list[Op]:
    """Prompt (and reference) up to ES1, then along the backhaul to ES2..ESk."""
    ops: list[Op] = _uplink_prompt()
    if i2i and with_reference:
        ops.append(Transfer(REFERENCE, "UE", "ES1", image_mode))
    for i in range(1, k):
        ops.append(Transfer(PROMPT, "ES1", _es(i), "digital"))
        if i2i and with_reference:
            ops.append(Transfer(REFERENCE, "ES1", _es(i), image_mode))
    return ops


def uidg(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(o, "UIDG")
    _no_split(o, "UIDG")
    ops: list[Op] = []
    if i2i:
        ops += [Stage("E", "UE")]
    ops += [Stage("Z", "UE"), Tile("UE", LATENT, k, o.halo)]
    for i in range(k):
        ops += [
            Transfer(LATENT.at(i), "UE", _es(i), o.seed_mode),
            Transfer(PROMPT, "UE", _es(i), "digital"),
        ]
        ops += [Stage("T", _es(i))]
    ops += [ParallelDenoise(tuple(_es(i) for i in range(k)), None, None, "es", o.sync_every, o.halo)]
    for i in range(k):
        ops += [Stage("G", _es(i), tile=i)]
    for i in range(1, k):
        ops += [Transfer(IMAGE.at(i), _es(i), "ES1", o.image_mode, core_only=True)]
    ops += [Stitch("ES1", IMAGE, k)]
    return Plan(
        "UIDG", tuple(ops), "ES1", "UE seeds tiles, ESs denoise and decode them in parallel, ES1 assembles"
    )


def _parallel_es_side(o: ProtocolOptions, k: int, i2i: bool) -> list[Op]:
    ops = _forward_control(k, i2i, True, o.image_mode)
    for i in range(k):
        node = _es(i)
        ops.append(Stage("T", node))
        if i2i:
            ops.append(Stage("E", node))
        ops += [Stage("Z", node), Tile(node, LATENT, k, o.halo)]
    ops += [ParallelDenoise(tuple(_es(i) for i in range(k)), None, None, "es", o.sync_every, o.halo)]
    return ops


def diug(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(o, "DIUG")
    _no_split(o, "DIUG")
    ops = _parallel_es_side(o, k, i2i)
    for i in range(k):
        ops += [Transfer(LATENT.at(i), _es(i), "UE", o.seed_mode, core_only=True)]
    ops += [Stitch("UE", LATENT, k), Stage("G", "UE")]
    return Plan(
        "DIUG",
        tuple(ops),
        "UE",
        "ESs denoise latent tiles in parallel, tiles go down, the UE stitches and decodes",
    )


def dsuc(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(o, "DSUC")
    _no_split(o, "DSUC")
    ops = _parallel_es_side(o, k, i2i)
    for i in range(k):
        ops += [Stage("K", _es(i), tile=i)]
    for i in range(k):
        ops += [Transfer(SKETCH.at(i), _es(i), "UE", o.sketch_mode, core_only=True)]
    ops += [Stitch("UE", SKETCH, k), Stage("T", "UE"), Stage("C", "UE", denoiser=o.ue_denoiser)]
    return Plan("DSUC", tuple(ops), "UE", "ESs sketch tiles in parallel, the UE stitches and completes")


def _ranges(o: ProtocolOptions, k: int, n: int, s: int, name: str) -> list[tuple[int, int]]:
    if o.split_step is not None:
        first = _split(o, n, s, s, name)
        rest = [first + round(i * (n - first) / (k - 1)) for i in range(k)]
        bounds = [s, *rest]
    else:
        bounds = [s + round(i * (n - s) / k) for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def uidcg(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(o, "UIDCG")
    ranges = _ranges(o, k, n, s, "UIDCG")
    ops: list[Op] = []
    if i2i:
        ops += [Stage("E", "UE")]
    ops += [Stage("Z", "UE"), Transfer(LATENT, "UE", "ES1", o.seed_mode), *_uplink_prompt()]
    for i, (a, b) in enumerate(ranges):
        node = _es(i)
        if i > 0:
            ops += [
                Transfer(PROMPT, _es(i - 1), node, "digital"),
                Transfer(LATENT, _es(i - 1), node, o.seed_mode),
            ]
        ops += [Stage("T", node), Stage("D", node, start=a, stop=b, denoiser="es")]
    ops += [Stage("G", _es(k - 1))]
    return Plan(
        "UIDCG",
        tuple(ops),
        _es(k - 1),
        "UE seeds, ESs run consecutive step ranges over the backhaul, the last decodes",
    )


def dcsuc(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(o, "DCSUC")
    ranges = _ranges(o, k, n, s, "DCSUC")
    ops: list[Op] = _uplink_prompt()
    if i2i:
        ops += [Transfer(REFERENCE, "UE", "ES1", o.image_mode), Stage("E", "ES1")]
    ops += [Stage("Z", "ES1")]
    for i, (a, b) in enumerate(ranges):
        node = _es(i)
        if i > 0:
            ops += [
                Transfer(PROMPT, _es(i - 1), node, "digital"),
                Transfer(LATENT, _es(i - 1), node, o.seed_mode),
            ]
        ops += [Stage("T", node), Stage("D", node, start=a, stop=b, denoiser="es")]
    last = _es(k - 1)
    ops += [Stage("K", last), Transfer(SKETCH, last, "UE", o.sketch_mode)]
    ops += [Stage("T", "UE"), Stage("C", "UE", denoiser=o.ue_denoiser)]
    return Plan(
        "DCSUC", tuple(ops), "UE", "ESs run consecutive step ranges, the last sketches, the UE completes"
    )


def build_unsplit_plan(image_to_image: bool, *, node: str = "UE", denoiser: str = "es") -> Plan:
    """The unsplit pipeline as a one-node plan: ``[E] T Z D G`` on ``node`` with ``denoiser``.

    The inputs (prompt, reference) start at the UE, so ``node`` is the UE (the default): the plan has
    no transfers and its random streams are those of every split plan, so a noiseless split run
    equals it exactly. Run it with an :class:`~megen.protocols.engine.EngineConfig` whose UE holds
    ``unet_<denoiser>`` (see :func:`megen.protocols.unsplit.run_unsplit`).

    Example:
        >>> [op.kind for op in build_unsplit_plan(True).ops]
        ['E', 'T', 'Z', 'D', 'G']
    """
    if node != "UE":
        raise MegenError(f"the unsplit plan runs where the prompt is (the UE), not on {node}")
    ops: list[Op] = [Stage("E", node)] if image_to_image else []
    ops += [Stage("T", node), Stage("Z", node), Stage("D", node, denoiser=denoiser), Stage("G", node)]
    return Plan("unsplit", tuple(ops), node, f"the whole pipeline on one node with the {denoiser} denoiser")


def unsplit(o: ProtocolOptions, n: int, s: int, i2i: bool) -> Plan:
    """The unsplit pipeline on the UE with the ``ue_model`` denoiser (``megen generate`` without a protocol)."""
    _no_split(o, "unsplit")
    return build_unsplit_plan(i2i, denoiser=o.ue_denoiser)


#: The registry: protocol name -> (builder, number of ESs is a parameter, description).
PROTOCOLS: dict[str, Builder] = {
    "central": central,
    "local": local,
    "unsplit": unsplit,
    "EIUG": eiug,
    "UIEG": uieg,
    "CIAG": ciag,
    "ESUC": esuc,
    "UIDG": uidg,
    "DIUG": diug,
    "DSUC": dsuc,
    "UIDCG": uidcg,
    "DCSUC": dcsuc,
}
MULTI_ES = ("UIDG", "DIUG", "DSUC", "UIDCG", "DCSUC")
BASELINES = ("central", "local", "unsplit")


def protocol_names() -> list[str]:
    return list(PROTOCOLS)


def canonical_name(name: str) -> str:
    """Case-insensitive lookup of a protocol name."""
    for key in PROTOCOLS:
        if key.lower() == name.strip().lower():
            return key
    raise MegenError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")


def build_plan(
    name: str, options: ProtocolOptions, num_steps: int, start_step: int, image_to_image: bool
) -> Plan:
    """Build the plan of protocol ``name`` (case-insensitive)."""
    key = canonical_name(name)
    if key in MULTI_ES:
        _check_k(options, key)
    elif options.num_es not in (1, 2) and key not in BASELINES:
        pass  # single-ES protocols ignore --num-es
    return PROTOCOLS[key](options, num_steps, start_step, image_to_image)
