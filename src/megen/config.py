"""The configuration of a run: one nested pydantic model, every field defined once.

:class:`RunConfig` has one section per concern, named like what it builds:

========================  =====================================================================
section                   what it configures
========================  =====================================================================
``model``                 which model (``tiny``, a folder or a Hub id)
``task``                  the generation task: steps, strength, guidance, master seed
``protocol``              the plan: protocol name or plan file, split, edge servers, tiles,
                          receiver-side denoising, the UE's denoiser
``links.<link>``          one section per link (``uplink``, ``downlink``, ``backhaul``): its SNR,
                          ``channel`` (-> :class:`megen.link.channels.ChannelConfig`),
                          ``transmission`` (analog/digital per payload, MCS), ``codec`` and
                          ``receiver`` (equaliser, CSI)
``costs``                 the device/link cost profiles file
``device``                where each node's model parts run (``auto``, ``cpu``, ``cuda[:i]``, ``mps``)
========================  =====================================================================

Every field has a **dotted path** (``links.downlink.snr_db``, ``task.steps``), and ``links.*.X`` sets
field ``X`` of every link. The same paths work everywhere: ``megen generate --set PATH=VALUE``,
``megen sweep --set PATH=V1,V2`` (a grid axis), the keys of a sweep grid, and TOML files
(``megen generate --config run.toml``). Every CLI flag is a shorthand for one path
(:data:`SHORTHANDS`): ``--snr-db`` is ``links.*.snr_db``, ``--ul-snr-db`` is ``links.uplink.snr_db``.
Wildcard paths are applied before specific ones, so ``--snr-db 10 --ul-snr-db 0`` means 0 dB up and
10 dB down and on the backhaul, whatever the order given.

Example:
    >>> cfg = RunConfig.from_paths({"protocol": "CIAG", "snr_db": 5, "links.uplink.snr_db": 0})
    >>> cfg.protocol.name, cfg.links.uplink.snr_db, cfg.links.downlink.snr_db
    ('CIAG', 0.0, 5.0)
    >>> cfg.flat()["ul_snr_db"], cfg.flat()["dl_snr_db"]
    (0.0, 5.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from megen.errors import MegenError
from megen.images import ImageCodec
from megen.link.channels import ChannelConfig, ChannelKind, Csi, Equalizer, NoiseKnowledge

#: SNR bounds of every link (dB). Outside them the link model means nothing useful.
MIN_SNR_DB = -30.0
MAX_SNR_DB = 60.0
#: Largest guidance scale accepted (larger scales overflow to black images).
MAX_GUIDANCE = 100.0
#: Largest master seed (seeds are stored as signed 64-bit integers).
MAX_SEED = 2**63 - 1
LinkKind = Literal["uplink", "downlink", "backhaul"]
"""The links of a plan: UE -> ES uplink, ES -> UE downlink, ES -> ES backhaul."""
LINKS: tuple[str, ...] = get_args(LinkKind)
Mode = Literal["analog", "digital"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSection(_Section):
    """The model.

    Attributes:
        name: ``"tiny"`` (embedded), ``"tiny-random"`` (tests), a model folder or a Hub id in the cache.
    """

    name: str = "tiny"


class TaskSection(_Section):
    """The generation task (the same on every node).

    Attributes:
        steps: ``N``, DDIM steps of the full schedule.
        strength: SDEdit strength in [0, 1] (image-to-image only).
        guidance: Classifier-free guidance scale (<= 1 disables CFG).
        seed: Master seed of every random stream of the run.
    """

    steps: int = Field(25, ge=1, le=1000)
    strength: float = Field(0.6, ge=0.0, le=1.0)
    guidance: float = Field(4.0, ge=0.0, le=MAX_GUIDANCE)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class ProtocolSection(_Section):
    """The plan and the protocol options that shape it.

    Attributes:
        name: A protocol of ``megen protocols`` (case-insensitive), e.g. ``central``, ``CIAG``.
        plan: A user plan file (TOML) run instead of the named protocol's plan (``name`` then only
            labels the run).
        num_es: Edge servers of multi-ES protocols.
        split_step: Denoising step of the hand-over (0..steps); ``None``: the protocol's default.
        sync_every: Parallel protocols: halo exchange every k steps (0 = never).
        halo: Halo width of parallel tiles, in latent pixels.
        snr_aware: Receiver-side denoising of noisy received seeds.
        ue_model: Denoiser the UE runs: ``ue`` (its own) or ``es`` (the ES's, for equivalence tests).
        completion_strength: Strength of the UE's completion of a sketch (stage ``C``).
        ref_as_seed: EIUG/ESUC: the reference goes up as a seed (E Z on the UE) instead of an image.
        noise_at: Where a UE seed made of the reference (``Z`` of ``z_ref``) gets its diffusion noise:
            ``sender`` (the UE noises it and sends the noisy state) or ``receiver`` (the UE sends the
            clean latent and the ES adds the noise from the shared seed; text-to-image: nothing but
            the prompt and its control bits crosses, the ES draws the initial noise).
    """

    name: str = "central"
    plan: str | None = None
    num_es: int = Field(2, ge=1, le=4)
    split_step: int | None = Field(None, ge=0)
    sync_every: int = Field(1, ge=0)
    halo: int = Field(2, ge=0)
    snr_aware: bool = True
    ue_model: Literal["ue", "es"] = "ue"
    completion_strength: float = Field(0.5, gt=0.0, le=1.0)
    ref_as_seed: bool = False
    noise_at: Literal["sender", "receiver"] = "sender"

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from megen.protocols.builders import canonical_name

        return canonical_name(v)


class ChannelSection(_Section):
    """The channel model of one link (SNR aside: it is the link's :attr:`LinkSection.snr_db`).

    Attributes:
        kind: ``none`` (ideal), ``awgn``, ``rayleigh`` or ``rician``.
        coherence_symbols: Fading block length in channel uses (pilots included).
        k_factor_db: Rician K factor in dB.
    """

    kind: ChannelKind = "awgn"
    coherence_symbols: int = Field(100, ge=2)
    k_factor_db: float = Field(3.0, allow_inf_nan=False)


class ReceiverSection(_Section):
    """The receiver front end of one link.

    Attributes:
        equalizer: ``zf`` or ``mmse``.
        csi: ``estimated`` (least squares on counted pilots, fading channels) or ``perfect`` (genie).
        noise: ``estimated`` (the receiver estimates the noise variance from the received signal and
            the known transmit power; MMSE, soft demapping and SNR-aware denoising use the estimate)
            or ``genie`` (it is told the true value).
    """

    equalizer: Equalizer = "mmse"
    csi: Csi = "estimated"
    noise: NoiseKnowledge = "estimated"


class TransmissionSection(_Section):
    """How each kind of payload crosses one link.

    Attributes:
        seed: Seeds (latents): ``analog`` or ``digital`` (quantised, LDPC + QAM).
        image: Images (reference, final image): ``digital`` or ``analog``.
        sketch: Sketches: ``digital`` or ``analog``.
        mcs: A fixed MCS for digital payloads (``16qam-0.5`` or a 38.214 entry ``TABLE:INDEX`` such as
            ``qam64lowse:0``); ``None``: link adaptation.
        harq: Retransmissions of failed transport blocks: ``off``, ``chase`` or ``ir``
            (incremental redundancy, RV 0, 2, 3, 1); see :mod:`megen.link.harq`.
        max_transmissions: Most transmissions per transport block (HARQ), first one included.
    """

    seed: Mode = "analog"
    image: Mode = "digital"
    sketch: Mode = "digital"
    mcs: str | None = None
    harq: Literal["off", "chase", "ir"] = "ir"
    max_transmissions: int = Field(4, ge=1, le=16)

    @field_validator("mcs")
    @classmethod
    def _auto_is_adaptation(cls, v: str | None) -> str | None:
        if v is None or v.strip().lower() in ("auto", "none", ""):
            return None
        if ":" in v:
            from megen.link.mcs_tables import parse_entry  # lazy: it pulls in Sionna (see test_code_health)

            parse_entry(v)  # unknown table or index: one-line MegenError
        return v


class CodecSection(_Section):
    """Source coding of digital payloads on one link.

    Attributes:
        image: Image codec: ``jpeg``, ``webp`` or ``png``.
        image_quality: Codec quality 1..100 (lossy codecs).
        seed_bits: Bits per latent value of digital seeds.
        seed: Seed codec (:mod:`megen.link.seed_codecs`): ``identity`` (the raw latent), ``linear``
            (KLT + MMSE power allocation), ``learned`` (+ learned decoder) or ``digital``.
        seed_uses: Seed budget in channel uses per latent (``None``: the raw latent's uses).
        seed_power: Analog seeds on fading links: ``uniform`` or ``waterfilling`` (transmitter CSI).
    """

    image: ImageCodec = "jpeg"
    image_quality: int = Field(90, ge=1, le=100)
    seed_bits: int = Field(8, ge=1, le=16)
    seed: Literal["identity", "linear", "learned", "digital"] = "identity"
    seed_uses: int | None = Field(None, ge=1)
    seed_power: Literal["uniform", "waterfilling"] = "uniform"


class LinkSection(_Section):
    """One link: SNR, channel, transmission, codec and receiver.

    Attributes:
        snr_db: Average Es/N0 per complex symbol, dB (ignored with channel ``none``).
    """

    snr_db: float = Field(10.0, ge=MIN_SNR_DB, le=MAX_SNR_DB, allow_inf_nan=False)
    channel: ChannelSection = ChannelSection()
    transmission: TransmissionSection = TransmissionSection()
    codec: CodecSection = CodecSection()
    receiver: ReceiverSection = ReceiverSection()

    def channel_config(self) -> ChannelConfig:
        """The link layer's :class:`~megen.link.channels.ChannelConfig` of this link."""
        return ChannelConfig(
            kind=self.channel.kind,
            snr_db=self.snr_db,
            coherence_symbols=self.channel.coherence_symbols,
            k_factor_db=self.channel.k_factor_db,
            equalizer=self.receiver.equalizer,
            csi=self.receiver.csi,
            noise=self.receiver.noise,
        )


class LinksSection(_Section):
    """One :class:`LinkSection` per link."""

    uplink: LinkSection = LinkSection()
    downlink: LinkSection = LinkSection()
    backhaul: LinkSection = LinkSection()

    def of(self, link: str) -> LinkSection:
        """The section of ``link`` (``uplink``, ``downlink`` or ``backhaul``)."""
        if link not in LINKS:
            raise MegenError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
        section: LinkSection = getattr(self, link)
        return section


class CostsSection(_Section):
    """Cost accounting.

    Attributes:
        profiles: Device and link cost profiles (TOML); ``None``: the shipped defaults.
    """

    profiles: str | None = None


class DeviceSection(_Section):
    """Where each node's model parts run. Results do not depend on it (noise is drawn on the CPU).

    Attributes:
        default: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:i`` or ``mps``.
        ue: The UE's device; ``None``: ``default``.
        es: The edge servers' device; ``None``: ``default``.
        dtype: ``float32``; ``float16``/``bfloat16`` for Stable Diffusion on accelerators.
    """

    default: str = "cpu"
    ue: str | None = None
    es: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    def of(self, node: str) -> str:
        """The device spec of ``node`` (``UE`` or ``ES1``..)."""
        chosen = self.ue if node == "UE" else self.es
        return chosen or self.default


class RunConfig(_Section):
    """The whole configuration of one run (see the module docstring for the sections and paths)."""

    model: ModelSection = ModelSection()
    task: TaskSection = TaskSection()
    protocol: ProtocolSection = ProtocolSection()
    links: LinksSection = LinksSection()
    costs: CostsSection = CostsSection()
    device: DeviceSection = DeviceSection()

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        from megen.protocols.builders import MULTI_ES

        p = self.protocol
        if p.name in MULTI_ES and p.num_es < 2:
            raise ValueError(
                f"protocol {p.name} needs at least 2 edge servers; got protocol.num_es={p.num_es}"
            )
        if p.split_step is not None and p.split_step > self.task.steps:
            raise ValueError(
                f"protocol.split_step (--split-step) must be in 0..{self.task.steps} (task.steps), "
                f"got {p.split_step}"
            )
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_paths(cls, values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
        """A configuration from dotted paths or shorthands (applied on top of ``base``).

        Raises:
            MegenError: an unknown path, or a value the field does not accept (one line).
        """
        data = (base or cls()).model_dump()
        for path, value in sorted(_resolve_all(values).items(), key=lambda kv: _specificity(kv[0])):
            _assign(data, path, value)
        return validate_config(data)

    def flat(self) -> dict[str, Any]:
        """One value per shorthand (analysis columns and labels).

        A wildcard shorthand (``snr_db``) holds the value its links share; where they differ it is
        ``None`` and the per-link shorthands (``ul_snr_db`` ...) hold each link's value (``None`` where
        the links agree). A wildcard shorthand without per-link shorthands (``channel``) gets one key per
        link where the links differ (``uplink.channel`` ...), so the flat view loses nothing.

        Example:
            >>> flat = RunConfig.from_paths({"links.downlink.channel.kind": "rayleigh"}).flat()
            >>> flat["channel"], flat["uplink.channel"], flat["downlink.channel"]
            (None, 'awgn', 'rayleigh')
        """
        data = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        refined = set(_PER_LINK_OF.values())
        for name, path in SHORTHANDS.items():
            if "*" not in path:
                out[name] = _lookup(data, path)
                continue
            per_link = {link: _lookup(data, path.replace("*", link)) for link in LINKS}
            shared = set(per_link.values())
            out[name] = shared.pop() if len(shared) == 1 else None
            if len(shared) > 1 and name not in refined:
                out.update({f"{link}.{name}": v for link, v in per_link.items()})
        for name, wildcard in _PER_LINK_OF.items():
            if out[wildcard] is not None:
                out[name] = None
        return out


#: CLI flags (and grid keys) as shorthands for dotted paths; ``*`` = every link.
SHORTHANDS: dict[str, str] = {
    "model": "model.name",
    "steps": "task.steps",
    "strength": "task.strength",
    "guidance": "task.guidance",
    "seed": "task.seed",
    "protocol": "protocol.name",
    "plan": "protocol.plan",
    "num_es": "protocol.num_es",
    "split_step": "protocol.split_step",
    "sync_every": "protocol.sync_every",
    "halo": "protocol.halo",
    "snr_aware": "protocol.snr_aware",
    "ue_model": "protocol.ue_model",
    "completion_strength": "protocol.completion_strength",
    "ref_as_seed": "protocol.ref_as_seed",
    "noise_at": "protocol.noise_at",
    "snr_db": "links.*.snr_db",
    "ul_snr_db": "links.uplink.snr_db",
    "dl_snr_db": "links.downlink.snr_db",
    "bh_snr_db": "links.backhaul.snr_db",
    "channel": "links.*.channel.kind",
    "coherence_symbols": "links.*.channel.coherence_symbols",
    "k_factor_db": "links.*.channel.k_factor_db",
    "transmission": "links.*.transmission.seed",
    "image_transmission": "links.*.transmission.image",
    "sketch_transmission": "links.*.transmission.sketch",
    "mcs": "links.*.transmission.mcs",
    "harq": "links.*.transmission.harq",
    "max_transmissions": "links.*.transmission.max_transmissions",
    "image_codec": "links.*.codec.image",
    "image_quality": "links.*.codec.image_quality",
    "seed_bits": "links.*.codec.seed_bits",
    "seed_codec": "links.*.codec.seed",
    "seed_uses": "links.*.codec.seed_uses",
    "seed_power": "links.*.codec.seed_power",
    "equalizer": "links.*.receiver.equalizer",
    "csi": "links.*.receiver.csi",
    "noise": "links.*.receiver.noise",
    "profiles": "costs.profiles",
    "device": "device.default",
    "ue_device": "device.ue",
    "es_device": "device.es",
    "dtype": "device.dtype",
}
#: Per-link shorthands and the wildcard shorthand they refine.
_PER_LINK_OF = {"ul_snr_db": "snr_db", "dl_snr_db": "snr_db", "bh_snr_db": "snr_db"}


def resolve_path(key: str) -> str:
    """The dotted path of a shorthand or a path (``-`` read as ``_``); unknown keys are an error.

    Example:
        >>> resolve_path("ul-snr-db"), resolve_path("links.*.codec.seed_bits")
        ('links.uplink.snr_db', 'links.*.codec.seed_bits')
    """
    key = key.strip().replace("-", "_")
    path = SHORTHANDS.get(key, key)
    if path not in _ALL_PATHS:
        raise MegenError(
            f"unknown configuration key {key!r}; use a path such as links.downlink.snr_db "
            f"or a shorthand ({', '.join(SHORTHANDS)}); `megen config` lists every path"
        )
    return path


def config_paths() -> list[tuple[str, Any]]:
    """Every leaf path of :class:`RunConfig` (links expanded as ``links.*``) with its default."""
    defaults = RunConfig().model_dump(mode="json")
    return [(p, _lookup(defaults, p.replace("*", "uplink"))) for p in sorted(_ALL_PATHS) if _is_leaf(p)]


def validate_config(data: Mapping[str, Any]) -> RunConfig:
    """Validate nested data into a :class:`RunConfig`; errors become one-line :class:`MegenError`."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise MegenError(format_validation_error(exc)) from None


def load_config(path: Path | str, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a TOML (nested tables or dotted keys) or JSON run configuration, then apply ``overrides``.

    Raises:
        MegenError: a missing or unreadable file, bad syntax, or an invalid configuration.
    """
    from megen.files import read_table

    data = read_table(path, "configuration file")
    base = validate_config(_expand_link_wildcards(data))
    return RunConfig.from_paths(overrides or {}, base=base)


def format_validation_error(exc: ValidationError) -> str:
    """One line from a pydantic ValidationError: the first problem with its dotted path."""
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err.get("loc", ())) or "configuration"
    flag = flag_of(field)
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{field}{f' ({flag})' if flag else ''}: {msg}{shown}"


def flag_of(path: str) -> str | None:
    """The CLI flag that is a shorthand for ``path`` (or for its ``links.*`` form), if any.

    Example:
        >>> flag_of("links.uplink.codec.image_quality"), flag_of("task.steps")
        ('--image-quality', '--steps')
    """
    parts = path.split(".")
    candidates = [path]
    if len(parts) > 2 and parts[0] == "links":
        candidates.append(".".join(["links", "*", *parts[2:]]))
    for name, p in SHORTHANDS.items():
        if p in candidates:
            return "--" + name.replace("_", "-")
    return None


def parse_for(path: str, text: str) -> Any:
    """``text`` read as a value of the field at ``path``: text fields keep their text.

    Example:
        >>> parse_for("task.steps", "5"), parse_for("protocol.plan", "123"), parse_for("links.*.transmission.mcs", "auto")
        (5, '123', None)
    """
    value = parse_value(text)
    if value is not None and not isinstance(value, str) and _TEXT_PATHS.get(path, False):
        return text.strip()
    return value


def parse_value(text: str) -> Any:
    """A command-line value: int, float, true/false, none/null/auto (``None``) or text, in that order.

    Example:
        >>> [parse_value(t) for t in ("3", "0.5", "false", "auto", "16qam-0.5")]
        [3, 0.5, False, None, '16qam-0.5']
    """
    t = text.strip()
    low = t.lower()
    if low in ("none", "auto", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_assignments(items: Iterable[str], *, lists: bool) -> dict[str, Any]:
    """``["links.*.snr_db=5", "image_quality=10,90"]`` -> ``{path: value}`` (``lists``: comma lists).

    Keys are resolved with :func:`resolve_path`. With ``lists=True`` every value is a list (a sweep
    axis); otherwise a comma is part of the value.

    Example:
        >>> parse_assignments(["mcs=auto,16qam-0.5", "sync_every=0"], lists=True)
        {'links.*.transmission.mcs': [None, '16qam-0.5'], 'protocol.sync_every': [0]}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MegenError(f"--set: expected key=value, got {item!r}")
        path = resolve_path(key)
        if lists:
            values = [parse_for(path, v) for v in value.split(",") if v.strip()]
            if not values:
                raise MegenError(f"--set {key.strip()}: empty list of values")
            out[path] = values
        else:
            out[path] = parse_for(path, value)
    return out


# ---------------------------------------------------------------------- paths
def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        path = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if ann is LinkSection and prefix == "links.":
                continue
            out += _leaf_paths(ann, path + ".")
        else:
            out.append(path)
    return out


def _build_paths() -> set[str]:
    paths = set(_leaf_paths(RunConfig))
    per_link = _leaf_paths(LinkSection)
    for link in (*LINKS, "*"):
        paths.update(f"links.{link}.{p}" for p in per_link)
    return paths


_ALL_PATHS = _build_paths()


def _field_of(path: str) -> Any:
    model: Any = RunConfig
    for part in path.split("."):
        if part in (*LINKS, "*") and model is LinksSection:
            model = LinkSection
            continue
        f = model.model_fields[part]
        model = f.annotation
    return model


def _accepts_text(annotation: Any) -> bool:
    import typing

    if annotation is str:
        return True
    return any(_accepts_text(a) for a in typing.get_args(annotation)) or (
        typing.get_origin(annotation) is Literal
        and all(isinstance(a, str) for a in typing.get_args(annotation))
    )


#: Paths of fields that hold text (a command-line value stays text there).
_TEXT_PATHS = {p: _accepts_text(_field_of(p)) for p in _ALL_PATHS}


def _is_leaf(path: str) -> bool:
    return not path.startswith("links.") or path.startswith("links.*.")


def _specificity(path: str) -> int:
    return 0 if "*" in path else 1


def _resolve_all(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = resolve_path(key)
        if path in out:
            raise MegenError(f"configuration key {path} given twice")
        out[path] = value
    return out


def _assign(data: dict[str, Any], path: str, value: Any) -> None:
    if "*" in path:
        for link in LINKS:
            _assign(data, path.replace("*", link), value)
        return
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[leaf] = value


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for p in path.split("."):
        node = node[p]
    return node


def _expand_link_wildcards(data: Mapping[str, Any]) -> dict[str, Any]:
    """A TOML ``[links."*"]`` table (every link) merged under each link's own table."""
    data = dict(data)
    links = data.get("links")
    if isinstance(links, dict) and "*" in links:
        links = dict(links)
        common = links.pop("*")
        for link in LINKS:
            links[link] = _merge(common, links.get(link, {}))
        data["links"] = links
    return data


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


__all__ = [
    "LINKS",
    "MAX_SNR_DB",
    "MIN_SNR_DB",
    "SHORTHANDS",
    "CodecSection",
    "ChannelSection",
    "CostsSection",
    "DeviceSection",
    "LinkSection",
    "LinksSection",
    "ModelSection",
    "ProtocolSection",
    "ReceiverSection",
    "RunConfig",
    "TaskSection",
    "TransmissionSection",
    "config_paths",
    "load_config",
    "parse_assignments",
    "parse_value",
    "resolve_path",
    "validate_config",
]
