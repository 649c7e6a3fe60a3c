"""The named protocols as plan builders (docs/protocols.md: this project's reading of the protocol names).

Each builder is a pure function ``(RunConfig, num_steps, start_step, image_to_image) -> Plan``;
:data:`PROTOCOLS` is the plain registry. Reading of the names: the *inference* side runs the stages
before the seed/sketch crosses a link, the *generation* side the stages after it.

Where this project's reading adds to the design table:

* The prompt (a few bytes) crosses the link as control data and every node that denoises encodes it
  itself (stage ``T`` on that node). Sending the text embedding instead would cost
  16 x 384 reals (3072 channel uses) against ~20 bytes.
* Text-to-image has no reference; where a protocol's seed is ``z_ref`` (UIEG, CIAG, UIDG, UIDCG), the
  UE's seed is then the initial noise ``Z`` (drawn from the shared seed), and ``local-i2i`` /
  ``local-i2i-upload`` are ``local`` / ``local-upload``.
* Baselines are matched to where the image lands (:data:`BASELINES`): ``central``, ``local`` and
  ``local-i2i`` deliver at the UE, ``central-es`` (no download), ``local-upload`` and
  ``local-i2i-upload`` at ES1; ``central-fallback``
  is ``central`` whose plan carries a fallback (the UE's ``local`` image, generated once the outage
  is known, its compute, latency and energy booked like any stage).
* Where a UE seed is ``Z`` of ``z_ref`` (UIEG, CIAG, UIDCG, EIUG/ESUC with ``ref_as_seed``),
  ``protocol.noise_at = "receiver"`` moves ``Z`` to the receiving ES: the clean ``z_ref`` crosses and
  the ES adds the noise from the shared seed (the same stream the UE would draw); text-to-image then
  sends no seed at all (the ES draws the initial noise itself).
* The parallel protocols forward the prompt (and reference image) from ES1 to the other ESs over the
  backhaul rather than sending them up the radio link k times.
"""

from __future__ import annotations

from collections.abc import Callable

from megen.config import RunConfig
from megen.errors import MegenError
from megen.protocols.plan import (
    ItemRef,
    Mode,
    Op,
    ParallelDenoise,
    Plan,
    Stage,
    Stitch,
    Tile,
    Transfer,
    link_kind,
)

PROMPT, REFERENCE, LATENT = ItemRef("prompt"), ItemRef("reference"), ItemRef("latent")
Z_REF = ItemRef("z_ref")
IMAGE, SKETCH = ItemRef("image"), ItemRef("sketch")


Builder = Callable[[RunConfig, int, int, bool], Plan]


def _mode(cfg: RunConfig, payload: str, src: str, dst: str) -> Mode:
    """How ``payload`` (``seed``, ``image`` or ``sketch``) crosses the link from ``src`` to ``dst``."""
    mode: Mode = getattr(cfg.links.of(link_kind(src, dst)).transmission, payload)
    return mode


def _plan(
    name: str, ops: list[Op], description: str, result: str = "UE", fallback: list[Op] | None = None
) -> Plan:
    return Plan(name, tuple(ops), result, description, tuple(fallback or ()))


def _es(i: int) -> str:
    return f"ES{i + 1}"


def _split(cfg: RunConfig, n: int, s: int, default: int, name: str) -> int:
    k = default if cfg.protocol.split_step is None else cfg.protocol.split_step
    if not 0 <= k <= n:
        raise MegenError(f"{name}: --split-step must be in 0..{n}, got {k}")
    return max(k, s)


def _no_split(cfg: RunConfig, name: str) -> None:
    if cfg.protocol.split_step is not None:
        raise MegenError(f"protocol {name} has no split step (its hand-over is a sketch or an image)")


def _uplink_prompt(dst: str = "ES1") -> list[Op]:
    return [Transfer(PROMPT, "UE", dst, "digital")]


def _ue_seed(cfg: RunConfig, i2i: bool, dst: str = "ES1") -> list[Op]:
    """The UE's seed ``[E] Z`` for ``dst``, noised where ``protocol.noise_at`` says.

    ``sender``: ``[E] Z`` on the UE, the noisy latent crosses. ``receiver``: ``E`` on the UE, the clean
    ``z_ref`` crosses and ``Z`` runs on ``dst`` (text-to-image: only ``Z`` on ``dst``, nothing crosses).
    """
    mode = _mode(cfg, "seed", "UE", dst)
    if cfg.protocol.noise_at == "receiver":
        sent: list[Op] = [Stage("E", "UE"), Transfer(Z_REF, "UE", dst, mode)] if i2i else []
        return [*sent, Stage("Z", dst)]
    ops: list[Op] = [Stage("E", "UE")] if i2i else []
    return [*ops, Stage("Z", "UE"), Transfer(LATENT, "UE", dst, mode)]


def _sender_noise_only(cfg: RunConfig, name: str, why: str) -> None:
    if cfg.protocol.noise_at == "receiver":
        raise MegenError(f"{name}: --noise-at receiver is not possible here ({why}); use --noise-at sender")


def _reference_to_es1(cfg: RunConfig, i2i: bool) -> list[Op]:
    """The ES1's initial latent: from the reference image sent up, or the UE's seed, or pure noise."""
    if i2i and cfg.protocol.ref_as_seed:
        return _ue_seed(cfg, i2i)
    if i2i:
        return [
            Transfer(REFERENCE, "UE", "ES1", _mode(cfg, "image", "UE", "ES1")),
            Stage("E", "ES1"),
            Stage("Z", "ES1"),
        ]
    return [Stage("Z", "ES1")]


def central(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "central")
    ops: list[Op] = _uplink_prompt()
    if i2i:
        ops += [Transfer(REFERENCE, "UE", "ES1", _mode(cfg, "image", "UE", "ES1")), Stage("E", "ES1")]
    ops += [Stage("T", "ES1"), Stage("Z", "ES1"), Stage("D", "ES1", denoiser="es"), Stage("G", "ES1")]
    ops += [Transfer(IMAGE, "ES1", "UE", _mode(cfg, "image", "ES1", "UE"))]
    return _plan("central", ops, "generate-and-download: the ES runs everything, the image goes down")


def central_es(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "central-es")
    ops: list[Op] = _uplink_prompt()
    if i2i:
        ops += [Transfer(REFERENCE, "UE", "ES1", _mode(cfg, "image", "UE", "ES1")), Stage("E", "ES1")]
    ops += [Stage("T", "ES1"), Stage("Z", "ES1"), Stage("D", "ES1", denoiser="es"), Stage("G", "ES1")]
    desc = "centralized for images that end at the ES: prompt (and reference) up, the ES generates"
    return _plan("central-es", ops, desc, result="ES1")


def central_fallback(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "central-fallback")
    plan = central(cfg, n, s, i2i)
    fallback = _from_reference(i2i) + _local_ops(cfg)
    desc = "central, and on outage the UE shows its own image (generated once the outage is known)"
    return _plan("central-fallback", list(plan.ops), desc, fallback=fallback)


def _local_ops(cfg: RunConfig) -> list[Op]:
    """``T Z D G`` on the UE with its own denoiser."""
    return [
        Stage("T", "UE"),
        Stage("Z", "UE"),
        Stage("D", "UE", denoiser=cfg.protocol.ue_model),
        Stage("G", "UE"),
    ]


def local(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "local")
    desc = "the UE alone, prompt only, its own model, no link (a bound, not a protocol)"
    return _plan("local", _local_ops(cfg), desc)


def local_i2i(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "local-i2i")
    desc = "the UE alone from its own reference and prompt (image-to-image, its own model, no link)"
    return _plan("local-i2i", _from_reference(i2i) + _local_ops(cfg), desc)


def local_i2i_upload(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "local-i2i-upload")
    ops = _from_reference(i2i) + _local_ops(cfg) + _upload_image(cfg)
    desc = "the UE generates alone from its reference and prompt and uploads its image (image at the ES)"
    return _plan("local-i2i-upload", ops, desc, result="ES1")


def _upload_image(cfg: RunConfig) -> list[Op]:
    """The UE's finished image up to ES1 (the UE-alone baselines whose image lands at the ES)."""
    return [Transfer(IMAGE, "UE", "ES1", _mode(cfg, "image", "UE", "ES1"))]


def _from_reference(i2i: bool) -> list[Op]:
    """``E`` on the UE in image-to-image; text-to-image has no reference (the plan is then ``local``'s)."""
    return [Stage("E", "UE")] if i2i else []


def local_upload(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "local-upload")
    ops = _local_ops(cfg) + _upload_image(cfg)
    desc = "the UE generates alone (prompt only) and uploads its image: the local baseline at the ES"
    return _plan("local-upload", ops, desc, result="ES1")


def eiug(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _split(cfg, n, s, n, "EIUG")
    ops: list[Op] = _uplink_prompt()
    ops += _reference_to_es1(cfg, i2i)
    ops += [Stage("T", "ES1"), Stage("D", "ES1", stop=k, denoiser="es")]
    ops += [Transfer(LATENT, "ES1", "UE", _mode(cfg, "seed", "ES1", "UE"))]
    if k < n:
        ops += [Stage("T", "UE"), Stage("D", "UE", start=k, denoiser=cfg.protocol.ue_model)]
    ops += [Stage("G", "UE")]
    return _plan(
        "EIUG", ops, "ES infers the seed (T E Z D), the UE generates (G); the final latent goes down"
    )


def uieg(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _split(cfg, n, s, s, "UIEG")
    ops: list[Op] = []
    if k > s:
        _sender_noise_only(cfg, "UIEG", "the UE denoises before the hand-over")
        ops += [Stage("E", "UE")] if i2i else []
        ops += [Stage("Z", "UE"), Stage("T", "UE"), Stage("D", "UE", stop=k, denoiser=cfg.protocol.ue_model)]
        ops += [Transfer(LATENT, "UE", "ES1", _mode(cfg, "seed", "UE", "ES1"))]
    else:
        ops += _ue_seed(cfg, i2i)
    ops += _uplink_prompt()
    ops += [Stage("T", "ES1"), Stage("D", "ES1", start=k, denoiser="es"), Stage("G", "ES1")]
    return _plan(
        "UIEG",
        ops,
        "UE infers the seed (E Z [+ first steps]), the ES generates; the image lands at the ES",
        result="ES1",
    )


def _ue_seed_up(cfg: RunConfig, i2i: bool) -> list[Op]:
    """The UE makes the seed (``[E] Z``, :func:`_ue_seed`) and sends it and the prompt up to ES1."""
    return [*_ue_seed(cfg, i2i), *_uplink_prompt()]


def ciag(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _split(cfg, n, s, s + (n - s) // 2, "CIAG")
    ops = _ue_seed_up(cfg, i2i)
    ops += [Stage("T", "ES1"), Stage("D", "ES1", stop=k, denoiser="es")]
    ops += [Transfer(LATENT, "ES1", "UE", _mode(cfg, "seed", "ES1", "UE"))]
    ops += [Stage("T", "UE"), Stage("D", "UE", start=k, denoiser=cfg.protocol.ue_model), Stage("G", "UE")]
    return _plan("CIAG", ops, "UE seeds, ES runs the first steps, the UE finishes with its own denoiser")


def esuc(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    _no_split(cfg, "ESUC")
    ops: list[Op] = _uplink_prompt()
    ops += _reference_to_es1(cfg, i2i)
    ops += [Stage("T", "ES1"), Stage("D", "ES1", denoiser="es"), Stage("K", "ES1")]
    ops += [
        Transfer(SKETCH, "ES1", "UE", _mode(cfg, "sketch", "ES1", "UE")),
        Stage("T", "UE"),
        Stage("C", "UE", denoiser=cfg.protocol.ue_model),
    ]
    return _plan("ESUC", ops, "ES generates and sends a sketch, the UE completes it")


# ---------------------------------------------------------------------------- multi-ES
def _check_k(cfg: RunConfig, name: str) -> int:
    if not 2 <= cfg.protocol.num_es <= 4:
        raise MegenError(f"protocol {name} needs 2..4 edge servers (--num-es), got {cfg.protocol.num_es}")
    return cfg.protocol.num_es


def _forward_control(cfg: RunConfig, k: int, i2i: bool, with_reference: bool) -> list[Op]:
    """Prompt (and reference) up to ES1, then along the backhaul to ES2..ESk."""
    ops: list[Op] = _uplink_prompt()
    if i2i and with_reference:
        ops.append(Transfer(REFERENCE, "UE", "ES1", _mode(cfg, "image", "UE", "ES1")))
    for i in range(1, k):
        ops.append(Transfer(PROMPT, "ES1", _es(i), "digital"))
        if i2i and with_reference:
            ops.append(Transfer(REFERENCE, "ES1", _es(i), _mode(cfg, "image", "ES1", _es(i))))
    return ops


def uidg(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(cfg, "UIDG")
    _no_split(cfg, "UIDG")
    _sender_noise_only(cfg, "UIDG", "each ES would need its tile's window of the shared noise")
    ops: list[Op] = []
    if i2i:
        ops += [Stage("E", "UE")]
    ops += [Stage("Z", "UE"), Tile("UE", LATENT, k, cfg.protocol.halo)]
    for i in range(k):
        ops += [
            Transfer(LATENT.at(i), "UE", _es(i), _mode(cfg, "seed", "UE", _es(i))),
            Transfer(PROMPT, "UE", _es(i), "digital"),
        ]
        ops += [Stage("T", _es(i))]
    ops += [
        ParallelDenoise(
            tuple(_es(i) for i in range(k)), None, None, "es", cfg.protocol.sync_every, cfg.protocol.halo
        )
    ]
    for i in range(k):
        ops += [Stage("G", _es(i), tile=i)]
    for i in range(1, k):
        ops += [Transfer(IMAGE.at(i), _es(i), "ES1", _mode(cfg, "image", _es(i), "ES1"), core_only=True)]
    ops += [Stitch("ES1", IMAGE, k)]
    return _plan(
        "UIDG", ops, "UE seeds tiles, ESs denoise and decode them in parallel, ES1 assembles", result="ES1"
    )


def _parallel_es_side(cfg: RunConfig, k: int, i2i: bool) -> list[Op]:
    ops = _forward_control(cfg, k, i2i, True)
    for i in range(k):
        node = _es(i)
        ops.append(Stage("T", node))
        if i2i:
            ops.append(Stage("E", node))
        ops += [Stage("Z", node), Tile(node, LATENT, k, cfg.protocol.halo)]
    ops += [
        ParallelDenoise(
            tuple(_es(i) for i in range(k)), None, None, "es", cfg.protocol.sync_every, cfg.protocol.halo
        )
    ]
    return ops


def diug(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(cfg, "DIUG")
    _no_split(cfg, "DIUG")
    ops = _parallel_es_side(cfg, k, i2i)
    for i in range(k):
        ops += [Transfer(LATENT.at(i), _es(i), "UE", _mode(cfg, "seed", _es(i), "UE"), core_only=True)]
    ops += [Stitch("UE", LATENT, k), Stage("G", "UE")]
    return _plan(
        "DIUG", ops, "ESs denoise latent tiles in parallel, tiles go down, the UE stitches and decodes"
    )


def dsuc(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(cfg, "DSUC")
    _no_split(cfg, "DSUC")
    ops = _parallel_es_side(cfg, k, i2i)
    for i in range(k):
        ops += [Stage("K", _es(i), tile=i)]
    for i in range(k):
        ops += [Transfer(SKETCH.at(i), _es(i), "UE", _mode(cfg, "sketch", _es(i), "UE"), core_only=True)]
    ops += [Stitch("UE", SKETCH, k), Stage("T", "UE"), Stage("C", "UE", denoiser=cfg.protocol.ue_model)]
    return _plan("DSUC", ops, "ESs sketch tiles in parallel, the UE stitches and completes")


def _ranges(cfg: RunConfig, k: int, n: int, s: int, name: str) -> list[tuple[int, int]]:
    if cfg.protocol.split_step is not None:
        first = _split(cfg, n, s, s, name)
        rest = [first + round(i * (n - first) / (k - 1)) for i in range(k)]
        bounds = [s, *rest]
    else:
        bounds = [s + round(i * (n - s) / k) for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def _cooperative_chain(cfg: RunConfig, ranges: list[tuple[int, int]]) -> list[Op]:
    """ES1, ES2 ... each denoise their step range; prompt and latent go along the backhaul in between."""
    ops: list[Op] = []
    for i, (a, b) in enumerate(ranges):
        node = _es(i)
        if i > 0:
            ops += [
                Transfer(PROMPT, _es(i - 1), node, "digital"),
                Transfer(LATENT, _es(i - 1), node, _mode(cfg, "seed", _es(i - 1), node)),
            ]
        ops += [Stage("T", node), Stage("D", node, start=a, stop=b, denoiser="es")]
    return ops


def uidcg(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(cfg, "UIDCG")
    ranges = _ranges(cfg, k, n, s, "UIDCG")
    ops = _ue_seed_up(cfg, i2i)
    ops += _cooperative_chain(cfg, ranges)
    ops += [Stage("G", _es(k - 1))]
    desc = "UE seeds, ESs run consecutive step ranges over the backhaul, the last decodes"
    return _plan("UIDCG", ops, desc, result=_es(k - 1))


def dcsuc(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    k = _check_k(cfg, "DCSUC")
    ranges = _ranges(cfg, k, n, s, "DCSUC")
    ops: list[Op] = _uplink_prompt()
    if i2i:
        ops += [Transfer(REFERENCE, "UE", "ES1", _mode(cfg, "image", "UE", "ES1")), Stage("E", "ES1")]
    ops += [Stage("Z", "ES1")]
    ops += _cooperative_chain(cfg, ranges)
    last = _es(k - 1)
    ops += [Stage("K", last), Transfer(SKETCH, last, "UE", _mode(cfg, "sketch", last, "UE"))]
    ops += [Stage("T", "UE"), Stage("C", "UE", denoiser=cfg.protocol.ue_model)]
    return _plan("DCSUC", ops, "ESs run consecutive step ranges, the last sketches, the UE completes")


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
    return _plan("unsplit", ops, f"the whole pipeline on one node with the {denoiser} denoiser", result=node)


def unsplit(cfg: RunConfig, n: int, s: int, i2i: bool) -> Plan:
    """The unsplit pipeline on the UE with the ``ue_model`` denoiser (``megen generate`` without a protocol)."""
    _no_split(cfg, "unsplit")
    return build_unsplit_plan(i2i, denoiser=cfg.protocol.ue_model)


#: The registry: protocol name -> (builder, number of ESs is a parameter, description).
PROTOCOLS: dict[str, Builder] = {
    "central": central,
    "central-es": central_es,
    "central-fallback": central_fallback,
    "local": local,
    "local-upload": local_upload,
    "local-i2i": local_i2i,
    "local-i2i-upload": local_i2i_upload,
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
#: Protocols whose UE works from the prompt alone: a run drops the reference image.
PROMPT_ONLY = ("local", "local-upload")
#: Protocols that cross no link: the UE alone, valid beside a protocol at any channel and SNR; each
#: with what the UE makes its image from.
NO_LINK: dict[str, str] = {"local": "prompt only", "local-i2i": "image-to-image from its own reference"}
#: The baselines a protocol is compared with, by where its image lands (``Plan.result_node``): images
#: that end at the UE against ``central`` (up and down), ``central-fallback`` and the UE alone
#: (``local`` from the prompt, ``local-i2i`` from the UE's own reference); images that end at an ES
#: against ``central-es`` (nothing comes down) and the UE's own image uploaded (``local-upload``,
#: ``local-i2i-upload``).
BASELINES: dict[str, tuple[str, ...]] = {
    "UE": ("central", "central-fallback", "local", "local-i2i"),
    "ES": ("central-es", "local-upload", "local-i2i-upload"),
}


def baselines_for(result_node: str) -> tuple[str, ...]:
    """The matched baselines of a plan whose image lands on ``result_node``.

    Example:
        >>> baselines_for("ES1"), baselines_for("UE")[0]
        (('central-es', 'local-upload', 'local-i2i-upload'), 'central')
    """
    return BASELINES["UE" if result_node == "UE" else "ES"]


def protocol_names() -> list[str]:
    return list(PROTOCOLS)


def canonical_name(name: str) -> str:
    """Case-insensitive lookup of a protocol name."""
    for key in PROTOCOLS:
        if key.lower() == name.strip().lower():
            return key
    raise MegenError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")


def build_plan(name: str, cfg: RunConfig, start_step: int, image_to_image: bool) -> Plan:
    """Build the plan of protocol ``name`` (case-insensitive) for ``cfg``.

    The builder reads ``cfg.protocol`` (edge servers, split, tiles, the UE's denoiser),
    ``cfg.task.steps`` and each link's ``transmission`` section (how seeds, images and sketches cross
    that link); single-ES protocols ignore ``protocol.num_es``.

    Example:
        >>> from megen.config import RunConfig
        >>> cfg = RunConfig.from_paths({"links.downlink.transmission.seed": "digital"})
        >>> [t.mode for t in build_plan("CIAG", cfg, 0, False).transfers()]
        ['analog', 'digital', 'digital']
    """
    key = canonical_name(name)
    if key in MULTI_ES:
        _check_k(cfg, key)
    return PROTOCOLS[key](cfg, cfg.task.steps, start_step, image_to_image)
