"""The "Generate" tab of ``megen app``: form options, plan diagrams and one generation.

Everything here is plain library code (no web framework): :mod:`megen.app.server` only routes HTTP
requests to these functions. A generation runs :func:`megen.generation.generate_images`, the call
``megen generate`` makes, so the numbers on the page are those of ``megen generate --json`` with the
same settings (and the same reference image file).
"""

from __future__ import annotations

import base64
import binascii
import io
import tempfile
import threading
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megen.config import MAX_SNR_DB, MIN_SNR_DB, RunConfig, resolve_path
from megen.errors import MegenError
from megen.session import Session

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
"""Largest uploaded reference file (bytes, after base64 decoding)."""
MAX_UPLOAD_PIXELS = 4096 * 4096
"""Largest uploaded reference image (width x height), checked from the header before decoding."""
MAX_PROMPT_CHARS = 500
"""Longest prompt accepted from the page."""
BASELINE = "central"
"""The protocol drawn next to the chosen one: centralized generation at the same SNR."""

#: Form fields that are configuration choices, and the configuration path each one sets. A field whose
#: path the configuration lacks (``seed_codec`` until ``links.*.codec.seed`` exists) is left out.
CHOICE_PATHS: dict[str, str] = {
    "channel": "links.*.channel.kind",
    "transmission": "links.*.transmission.seed",
    "seed_codec": "links.*.codec.seed",
    "image_codec": "links.*.codec.image",
}


def path_choices(path: str) -> list[str] | None:
    """The values a configuration path accepts when it is a choice (a ``Literal``); ``None`` otherwise.

    Also ``None`` for a path the configuration does not have.

    Example:
        >>> path_choices("links.*.codec.image"), path_choices("task.steps")
        (['jpeg', 'jpeg-session', 'webp', 'png'], None)
    """
    from megen.config import _field_of

    try:
        annotation = _field_of(resolve_path(path))
    except MegenError:
        return None
    if typing.get_origin(annotation) is not typing.Literal:
        return None
    return [str(a) for a in typing.get_args(annotation)]


def form_options(model: str) -> dict[str, Any]:
    """What the page's form offers: protocols, the choice fields with their defaults, the SNR range.

    Args:
        model: The model name (``megen app --model``).
    """
    from megen.experiments.references import load_references, resolve_references
    from megen.protocols.builders import PROTOCOLS

    defaults = RunConfig().model_dump(mode="json")
    choices = {}
    for name, path in CHOICE_PATHS.items():
        values = path_choices(path)
        if values is not None:
            section: Any = defaults
            for part in path.replace("*", "uplink").split("."):
                section = section[part]
            choices[name] = {"path": path, "values": values, "default": section}
    refs = load_references(resolve_references("auto", model))
    firsts: dict[int, int] = {}
    for i, label in enumerate(refs.labels.tolist()):
        firsts.setdefault(int(label), i)
    return {
        "model": model,
        "protocols": [p for p in PROTOCOLS if p != "unsplit"],
        "default_protocol": "CIAG",
        "baseline": BASELINE,
        "choices": choices,
        "snr_db": {"min": MIN_SNR_DB, "max": MAX_SNR_DB, "default": defaults["links"]["uplink"]["snr_db"]},
        "steps": defaults["task"]["steps"],
        "references": [{"index": i, "prompt": refs.prompts[label]} for label, i in sorted(firsts.items())],
        "reference_set": refs.name,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_upload_pixels": MAX_UPLOAD_PIXELS,
        "max_prompt_chars": MAX_PROMPT_CHARS,
    }


def plan_diagram(cfg: RunConfig, image_to_image: bool) -> dict[str, Any]:
    """The plan of ``cfg``'s protocol as plain data for the page's diagram.

    Returns:
        ``{"protocol", "description", "result_node", "nodes": [{"node", "stages": [...]}],
        "transfers": [{"src", "dst", "link", "mode", "item", "text"}]}`` in plan order.
    """
    from megen.models.ldm import start_step_for
    from megen.protocols.builders import build_plan

    start = start_step_for(cfg.task.steps, cfg.task.strength if image_to_image else None)
    plan = build_plan(cfg.protocol.name, cfg, start, image_to_image)
    return {
        "protocol": plan.name,
        "description": plan.description,
        "result_node": plan.result_node,
        "nodes": [{"node": n, "stages": plan.stages_on(n)} for n in plan.nodes()],
        "transfers": [
            {
                "src": t.src,
                "dst": t.dst,
                "link": t.link,
                "mode": t.mode,
                "item": str(t.item),
                "text": t.describe(),
            }
            for t in plan.transfers()
        ],
    }


def decode_upload(data: str) -> bytes:
    """The bytes of an uploaded image (base64, optionally a ``data:`` URL), checked for size and format.

    Raises:
        MegenError: not base64, larger than :data:`MAX_UPLOAD_BYTES`, not a readable image, or more
            than :data:`MAX_UPLOAD_PIXELS` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    text = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(text) > (MAX_UPLOAD_BYTES * 4) // 3 + 4:
        raise MegenError(f"the uploaded file is too large (more than {MAX_UPLOAD_BYTES // 2**20} MiB)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MegenError("the upload is not a file (bad base64 data)") from None
    if not raw:
        raise MegenError("the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise MegenError("cannot read the uploaded file: it is not an image (PNG, JPEG, WebP ...)") from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise MegenError(
            f"the uploaded image is too large ({width}x{height} pixels; at most {MAX_UPLOAD_PIXELS:,} pixels)"
        )
    return raw


@dataclass
class Studio:
    """What the Generate tab keeps between requests: the model name and one :class:`Session`.

    The session holds the loaded model and the stage memo, so the error-free image and the parts the
    baseline shares with the protocol are computed once. Generations run one at a time (``lock``).
    """

    model: str = "tiny"
    session: Session = field(default_factory=Session)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def config(self, form: dict[str, Any]) -> RunConfig:
        """The run configuration of a form (the same paths ``megen generate``'s flags set).

        Raises:
            MegenError: an unknown protocol or choice, or an SNR outside the configuration's range.
        """
        from megen.protocols.builders import canonical_name

        snr = form.get("snr_db")
        if not isinstance(snr, int | float) or not MIN_SNR_DB <= float(snr) <= MAX_SNR_DB:
            raise MegenError(
                f"the SNR must be a number of dB in [{MIN_SNR_DB:g}, {MAX_SNR_DB:g}], got {snr!r}"
            )
        paths: dict[str, Any] = {
            "model.name": self.model,
            "protocol.name": canonical_name(str(form.get("protocol", ""))),
            "links.*.snr_db": float(snr),
        }
        for name, path in CHOICE_PATHS.items():
            value = form.get(name)
            if value is None:
                continue
            allowed = path_choices(path)
            if allowed is None or value not in allowed:
                raise MegenError(f"{name} must be one of {', '.join(allowed or [])}, got {value!r}")
            paths[path] = value
        for name, path in (("steps", "task.steps"), ("seed", "task.seed")):
            if form.get(name) is not None:
                paths[path] = form[name]
        return RunConfig.from_paths(paths)

    def reference_file(self, form: dict[str, Any], folder: Path) -> Path | None:
        """Write the form's reference (an upload, or an image of the reference set) to ``folder``."""
        from megen.experiments.references import load_references, resolve_references
        from megen.images import encode_png

        if form.get("upload"):
            path = folder / "upload.img"
            path.write_bytes(decode_upload(str(form["upload"])))
            return path
        index = form.get("reference")
        if index is None:
            return None
        refs = load_references(resolve_references("auto", self.model))
        if not isinstance(index, int) or not 0 <= index < len(refs.images):
            raise MegenError(f"reference must be an index in 0..{len(refs.images) - 1}, got {index!r}")
        path = folder / f"reference-{index}.png"
        path.write_bytes(encode_png(refs.images[index]))
        return path

    def generate(self, form: dict[str, Any]) -> dict[str, Any]:
        """One interaction: the chosen protocol, the centralized baseline and the error-free image.

        Args:
            form: ``prompt``, ``protocol``, ``snr_db`` (dB), the :data:`CHOICE_PATHS` fields, optional
                ``steps`` and ``seed``, and ``reference`` (an index into the reference set) or
                ``upload`` (a base64 image file).

        Returns:
            ``{"summary": <megen generate --json of the protocol>, "baseline": <the same for
            central>, "plan": plan_diagram(...), "images": {"error_free", "received", "baseline"}
            (PNG data URLs), "seconds": wall-clock seconds}``.

        Raises:
            MegenError: bad form values, an empty prompt, a bad upload.
        """
        import time

        from megen.generation import generate_images

        t0 = time.perf_counter()
        prompt = form.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise MegenError("the prompt is empty; give a prompt such as 'a photo of a sneaker'")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise MegenError(f"the prompt is too long ({len(prompt)} characters; at most {MAX_PROMPT_CHARS})")
        cfg = self.config(form)
        base = RunConfig.from_paths({"protocol.name": BASELINE}, base=cfg)
        with self.lock, tempfile.TemporaryDirectory(prefix="megen-app-") as tmp:
            folder = Path(tmp)
            ref = self.reference_file(form, folder)
            runs = {}
            for key, c in (("summary", cfg), ("baseline", base)):
                out = folder / f"{key}.png"
                runs[key] = generate_images(c, prompt, 1, ref, out, session=self.session)
                runs[key]["png"] = out.read_bytes()
            error_free = self._error_free(cfg, prompt, ref)
        images = {
            "received": runs["summary"].pop("png"),
            "baseline": runs["baseline"].pop("png"),
            "error_free": error_free,
        }
        for run in runs.values():
            run.pop("out", None)
        return {
            **runs,
            "plan": plan_diagram(cfg, ref is not None),
            "images": {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in images.items()},
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def _error_free(self, cfg: RunConfig, prompt: str, ref: Path | None) -> bytes:
        """The error-free image as PNG (from the session's stage memo: computed by the runs above)."""
        from megen.images import encode_png, load_image
        from megen.protocols.runner import error_free_output

        model = self.session.model(cfg.model.name, device=cfg.device.of("ES1"), dtype=cfg.device.dtype)
        reference = None
        if ref is not None:
            reference, _ = load_image(ref, channels=model.image_channels, size=model.image_size)
        return encode_png(error_free_output(model, [prompt], reference, cfg, self.session)[0])
