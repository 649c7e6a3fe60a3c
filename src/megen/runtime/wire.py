"""The wire format between a UE client and an edge server: a JSON header plus safetensors bytes.

One message (request or response body, ``application/octet-stream``)::

    b"MEGW" | header length (4 bytes, big-endian) | header (UTF-8 JSON object) | safetensors bytes

The header holds everything but tensors (item names, metadata, the stage, the link, the stream seed);
a tensor in the header is the string ``"$t:<name>"``, and ``<name>`` is a tensor of the safetensors
part. :func:`encode` / :func:`decode` move one message; the ``*_to_wire`` / ``*_from_wire`` helpers
turn the engine's values (:class:`~megen.protocols.items.ItemMeta`, stages, run contexts, link
results) into header data and back.

:func:`decode` validates strictly and raises :class:`WireError` (a :class:`~megen.errors.MegenError`
with an HTTP status) with a one-line message: oversized or truncated messages, bad JSON, unknown
tensor references, tensors of a non-floating dtype, with more than :data:`MAX_DIMS` dimensions or
non-finite values.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from megen.errors import MegenError
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import Outgoing, RunContext
from megen.protocols.items import ItemMeta
from megen.protocols.links import Sent
from megen.protocols.plan import ItemRef, Stage, Stitch, Tile
from megen.protocols.tiles import Window

MAGIC = b"MEGW"
#: The media type of wire messages.
OCTET = "application/octet-stream"
#: Default largest message in bytes (a 64-image batch of 512 x 512 RGB float32 images is ~200 MiB).
MAX_BYTES = 256 * 2**20
MAX_HEADER_BYTES = 1 * 2**20
MAX_DIMS = 5
#: Dtypes a tensor on the wire may have (every value the engine moves is floating point).
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_TENSOR = "$t:"


class WireError(MegenError):
    """A message that cannot be accepted; ``status`` is the HTTP status to answer (400, 413, 422)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def encode(header: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    """One message from a JSON-able ``header`` and named tensors (moved to the CPU, made contiguous)."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    data = {k: v.detach().cpu().contiguous() for k, v in (tensors or {}).items()}
    return MAGIC + struct.pack(">I", len(head)) + head + st_save(data)


def decode(body: bytes, max_bytes: int = MAX_BYTES) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The header and tensors of a message, validated (see the module docstring).

    Raises:
        WireError: oversized (413), malformed or truncated messages, bad tensors (400).
    """
    if len(body) > max_bytes:
        raise WireError(f"message of {len(body)} bytes exceeds the limit of {max_bytes} bytes", 413)
    if len(body) < 8 or body[:4] != MAGIC:
        raise WireError("not a megen wire message (missing MEGW prefix)")
    (n,) = struct.unpack(">I", body[4:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(body):
        raise WireError(f"truncated message: header of {n} bytes, {len(body) - 8} bytes follow")
    try:
        header = json.loads(body[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("header must be a JSON object")
    try:
        tensors = st_load(bytes(body[8 + n :]))
    except Exception as exc:  # safetensors raises its own error type for truncated/corrupt data
        raise WireError(f"bad or truncated safetensors payload: {exc}") from None
    for name, t in tensors.items():
        check_tensor(name, t)
    return header, tensors


def check_tensor(name: str, t: torch.Tensor) -> None:
    """Reject tensors of a non-floating dtype, too many dimensions, or with NaN/inf values."""
    if t.dtype not in DTYPES:
        raise WireError(f"tensor {name!r} has dtype {str(t.dtype).removeprefix('torch.')}; expected a float")
    if t.dim() > MAX_DIMS:
        raise WireError(f"tensor {name!r} has {t.dim()} dimensions; at most {MAX_DIMS}")
    if not bool(torch.isfinite(t).all()):
        raise WireError(f"tensor {name!r} contains NaN or infinite values")


class Packer:
    """Collects the tensors of one message while its header is built (``ref`` returns ``"$t:<n>"``)."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def ref(self, t: torch.Tensor | None) -> str | None:
        if t is None:
            return None
        name = str(len(self.tensors))
        self.tensors[name] = t
        return _TENSOR + name

    def value(self, value: Any) -> Any:
        """A tensor, ``None`` or a list of strings (prompts) as header data."""
        if value is None or isinstance(value, torch.Tensor):
            return {"tensor": self.ref(value)}
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return {"texts": list(value)}
        raise MegenError(f"cannot send a {type(value).__name__} over the wire (tensors and prompts only)")

    def meta(self, meta: ItemMeta) -> dict[str, Any]:
        return {
            "step": meta.step,
            "noise_var": self.ref(meta.noise_var),
            "unbiased": self.ref(meta.unbiased),
            "core": meta.core,
            "cols": None if meta.cols is None else list(meta.cols),
        }

    def message(self, header: dict[str, Any]) -> bytes:
        return encode(header, self.tensors)


class Unpacker:
    """Reads header data written by :class:`Packer` against the decoded tensors (strictly)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def ref(self, ref: Any) -> torch.Tensor | None:
        if ref is None:
            return None
        if not isinstance(ref, str) or not ref.startswith(_TENSOR) or ref[len(_TENSOR) :] not in self.tensors:
            raise WireError(f"unknown tensor reference {ref!r}")
        return self.tensors[ref[len(_TENSOR) :]]

    def value(self, data: Any) -> Any:
        if isinstance(data, dict) and "tensor" in data:
            return self.ref(data["tensor"])
        if isinstance(data, dict) and isinstance(data.get("texts"), list):
            texts = data["texts"]
            if all(isinstance(t, str) for t in texts):
                return list(texts)
        raise WireError("a value must be {'tensor': ref} or {'texts': [...]}")

    def meta(self, data: Any) -> ItemMeta:
        d = _obj(data, "meta")
        step, core = d.get("step"), d.get("core", False)
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
            raise WireError(f"meta.step must be a non-negative integer or null, got {step!r}")
        if not isinstance(core, bool):
            raise WireError(f"meta.core must be a boolean, got {core!r}")
        cols = d.get("cols")
        if cols is not None and not (
            isinstance(cols, list) and len(cols) == 2 and all(type(v) is int and v >= 0 for v in cols)
        ):
            raise WireError(f"meta.cols must be two non-negative integers or null, got {cols!r}")
        return ItemMeta(
            step=step,
            noise_var=self.ref(d.get("noise_var")),
            unbiased=self.ref(d.get("unbiased")),
            core=core,
            cols=None if cols is None else (cols[0], cols[1]),
        )


def _obj(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WireError(f"{what} must be a JSON object")
    return data


def item_from_wire(text: Any) -> ItemRef:
    """An item name (``"latent@1"``) from the header."""
    try:
        return ItemRef.parse(text)
    except MegenError as exc:
        raise WireError(str(exc)) from None


def _build(cls: type, data: Any, what: str, **convert: Any) -> Any:
    d = dict(_obj(data, what))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise WireError(f"{what} has unknown field(s) {sorted(unknown)}")
    for key, fn in convert.items():
        if key in d:
            d[key] = fn(d[key])
    try:
        return cls(**d)
    except (TypeError, ValueError, MegenError) as exc:
        raise WireError(f"bad {what}: {exc}") from None


def op_to_wire(op: Stage | Tile | Stitch) -> dict[str, Any]:
    """A stage, tile or stitch operation as header data."""
    values = {f.name: getattr(op, f.name) for f in dataclasses.fields(op)}
    return {k: str(v) if isinstance(v, ItemRef) else v for k, v in values.items()}


def stage_from_wire(data: Any) -> Stage:
    """A :class:`Stage` from header data (an unknown stage kind is a :class:`WireError`)."""
    kind = _obj(data, "stage").get("kind")
    if kind not in ("T", "E", "Z", "D", "G", "K", "C"):
        raise WireError(f"unknown stage {kind!r}; stages are T E Z D G K C")
    stage: Stage = _build(Stage, data, "stage")
    return stage


def tile_from_wire(data: Any) -> Tile:
    tile: Tile = _build(Tile, data, "tile", item=item_from_wire)
    return tile


def stitch_from_wire(data: Any) -> Stitch:
    stitch: Stitch = _build(Stitch, data, "stitch", item=item_from_wire)
    return stitch


def windows_to_wire(windows: Any) -> list[list[int]]:
    return [[w.core_lo, w.core_hi, w.win_lo, w.win_hi] for w in windows]


def windows_from_wire(data: Any) -> list[Window]:
    if not isinstance(data, list) or not all(
        isinstance(w, list) and len(w) == 4 and all(isinstance(x, int) and x >= 0 for x in w) for w in data
    ):
        raise WireError("windows must be a list of [core_lo, core_hi, win_lo, win_hi] integer lists")
    return [Window(*w) for w in data]


def ctx_to_wire(ctx: RunContext) -> dict[str, Any]:
    """A run context (engine settings, batch size, image-to-image, start step) as header data."""
    cfg = dataclasses.asdict(ctx.cfg)
    cfg["ue_parts"], cfg["es_parts"] = sorted(ctx.cfg.ue_parts), sorted(ctx.cfg.es_parts)
    return {
        "cfg": cfg,
        "batch_size": ctx.batch_size,
        "image_to_image": ctx.image_to_image,
        "start_step": ctx.start_step,
    }


def engine_config_from_wire(data: Any) -> EngineConfig:
    cfg: EngineConfig = _build(EngineConfig, data, "engine config", ue_parts=_parts, es_parts=_parts)
    return cfg


def ctx_from_wire(data: Any) -> RunContext:
    d = _obj(data, "context")
    ctx: RunContext = _build(RunContext, d, "context", cfg=engine_config_from_wire)
    if not isinstance(ctx.batch_size, int) or not 1 <= ctx.batch_size <= 1024:
        raise WireError(f"batch size must be in 1..1024, got {ctx.batch_size!r}")
    return ctx


def _parts(data: Any) -> frozenset[str]:
    if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
        raise WireError("model parts must be a list of names")
    return frozenset(data)


def outgoing_to_wire(out: Outgoing, pack: Packer) -> dict[str, Any]:
    return {"value": pack.value(out.value), "meta": pack.meta(out.meta)}


def outgoing_from_wire(data: Any, unpack: Unpacker) -> Outgoing:
    d = _obj(data, "outgoing")
    return Outgoing(unpack.value(d.get("value")), unpack.meta(d.get("meta", {})))


def sent_to_wire(sent: Sent) -> dict[str, Any]:
    """What a link did, for the client's ledger (the received value stays on the node)."""
    snr = sent.effective_snr_db
    return {
        "channel_uses": int(sent.channel_uses),
        "payload_bits": int(sent.payload_bits),
        "ok": bool(sent.ok),
        "item_ok": [bool(v) for v in sent.item_ok],
        "transmissions": int(sent.transmissions),
        "failures": int(sent.failures),
        "effective_snr_db": None if snr is None else float(snr),
    }


def sent_from_wire(data: Any) -> Sent:
    """A :class:`Sent` without its value (the value stays on the receiving node)."""
    d = _obj(data, "sent")
    try:
        snr = d.get("effective_snr_db")
        return Sent(
            value=None,
            channel_uses=int(d["channel_uses"]),
            payload_bits=int(d["payload_bits"]),
            ok=bool(d["ok"]),
            item_ok=tuple(bool(v) for v in d.get("item_ok", [])),
            transmissions=int(d.get("transmissions", 0)),
            failures=int(d["failures"]),
            effective_snr_db=None if snr is None else float(snr),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad link result: {exc}") from None


__all__ = [
    "MAX_BYTES",
    "Packer",
    "Unpacker",
    "WireError",
    "ctx_from_wire",
    "ctx_to_wire",
    "decode",
    "encode",
    "op_to_wire",
    "outgoing_from_wire",
    "outgoing_to_wire",
    "sent_from_wire",
    "sent_to_wire",
    "stage_from_wire",
]
