"""What a sweep runs: the experiment specification and its expansion into points.

A sweep is the union of one or more **grids**. A grid maps configuration keys — dotted paths of
:class:`~megen.config.RunConfig` (``links.downlink.snr_db``, ``links.*.codec.image_quality``) or their
shorthands (``protocol``, ``channel``, ``snr_db``, ``transmission``, ``image_quality``, ``mcs``,
``sync_every``, ``snr_aware`` ...) — to a value or a list of values, plus sweep-only keys: ``task``
(``"i2i"`` image-to-image over the shipped reference images, or ``"t2i"`` text-to-image) and ``tag``
(a label such as ``"main"`` or ``"frontier"`` that plots and reports select on) and ``samples`` (this
grid's images per point, default: the sweep's ``samples``). Every combination of a grid's values is one
**point**; every point runs its ``samples`` images for every seed in ``seeds``.

Points are canonicalised before they are hashed, so that runs that cannot differ are run once:

* ``local`` uses no link: its channels become ``none`` and its seed transmission ``analog``;
* on a link with channel ``none`` the SNR means nothing: it becomes :data:`NO_CHANNEL_SNR_DB`
  (stored as NULL);
* where the protocol's plan sends no seed (``central``, sketch protocols ...), the seed transmission
  mode means nothing: it becomes ``analog``.

A point that two grids both produce is run once and carries both tags.

Example (TOML experiment file, ``megen sweep --config exp.toml``)::

    name = "snr-sweep"
    samples = 100
    seeds = [0]
    batch_size = 25

    [defaults]            # configuration keys for every grid
    steps = 25            # shorthand of task.steps

    [[grid]]
    tag = "main"
    protocol = ["central", "EIUG", "CIAG"]
    channel = ["awgn", "rayleigh"]
    snr_db = "-10:20:5"   # start:stop:step (inclusive), or a list of numbers
    transmission = "analog"
    "links.*.codec.image_quality" = [10, 90]   # a dotted path is a key like any other
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from megen.config import LINKS, LinkSection, RunConfig, format_validation_error, resolve_path
from megen.errors import MegenError
from megen.grid import check_grid_points, parse_grid

#: Keys of a grid that are not configuration keys.
SWEEP_KEYS = ("task", "tag", "samples")
#: Configuration paths (and sections) a grid may not set: the sweep sets them.
RESERVED_PATHS = ("model.name", "task.seed", "device.")
TASKS = ("i2i", "t2i")
#: SNR stored in the configuration of links with channel ``none`` (meaningless there; NULL in rows).
NO_CHANNEL_SNR_DB: float = LinkSection.model_fields["snr_db"].default
#: Version of the rule that maps a sample index to a prompt and reference (part of every point key, so
#: a database written under another rule is never continued).
SAMPLE_RULE = "class-interleaved-v1"


def split_list(text: str | list | tuple, what: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; an empty result is an error."""
    items = [str(x).strip() for x in text] if isinstance(text, list | tuple) else str(text).split(",")
    out = [x.strip() for x in items if x.strip()]
    if not out:
        raise MegenError(f"{what}: empty list")
    return list(dict.fromkeys(out))


class SweepSpec(BaseModel):
    """A whole sweep: grids of run configurations, samples and seeds.

    Attributes:
        name: A label for the sweep (reports).
        model: ``"tiny"``, a model folder or Hub id, or ``"tiny-random"`` (tests).
        samples: Images per point and seed; sample ``i`` is described by :func:`sample_prompt`.
        seeds: Master seeds; each seed is its own set of points.
        batch_size: Images per :func:`~megen.protocols.runner.run_protocol` call. Part of the result
            (the batch's random draws are shared), so it is part of the specification.
        prompt_shift: Image-to-image: the prompt names class ``(label + prompt_shift) % n`` of the
            reference image (0 = the reference's own class; ``n`` = 10 classes or 8 photos).
        references: ``auto`` | ``fashion-mnist`` | ``photos``: the reference images and prompts
            (:mod:`megen.experiments.references`; ``auto``: Fashion-MNIST for tiny models, photos for
            Stable Diffusion). Left out of :meth:`to_json` when ``auto``, so databases written before
            this field existed still match.
        defaults: Configuration keys applied to every grid before the grid's own values.
        grids: The grids (see the module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "sweep"
    model: str = "tiny"
    samples: int = Field(100, ge=1, le=1_000_000)
    seeds: list[int] = Field(default_factory=lambda: [0])
    batch_size: int = Field(25, ge=1, le=256)
    prompt_shift: int = Field(0, ge=0, le=9)
    references: Literal["auto", "fashion-mnist", "photos"] = "auto"
    defaults: dict[str, Any] = Field(default_factory=dict)
    grids: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("empty list of seeds")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return list(dict.fromkeys(v))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what the results database stores and compares."""
        data = self.model_dump(mode="json")
        if data.get("references") == "auto":
            del data["references"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """SHA-256 of :meth:`to_json` (hex, 16 characters)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One configuration of a sweep (all samples of one seed share it).

    Attributes:
        config: The canonical run configuration (``seed`` = the master seed).
        task: ``"i2i"`` or ``"t2i"``.
        tags: Tags of every grid that produced this point, in grid order.
        key: Hash of everything that determines the results (the database's config key).
        samples: Images of this point (the largest of the grids that produced it).
    """

    config: RunConfig
    task: str
    tags: tuple[str, ...]
    key: str
    samples: int


def _grid_values(grid: dict[str, Any], defaults: dict[str, Any]) -> dict[str, list[Any]]:
    """The axes of one grid: ``{path or sweep key: [values]}`` (defaults first, the grid overriding)."""
    merged: dict[str, Any] = {}
    for source in (defaults, grid):
        for k, v in source.items():
            try:
                key = k if k in SWEEP_KEYS else resolve_path(k)
            except MegenError as exc:
                raise MegenError(f"unknown grid key {k!r}: {exc}") from None
            if any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESERVED_PATHS):
                raise MegenError(
                    f"grid key {k!r} is set by the sweep itself (use the sweep's model, seeds or --device)"
                )
            merged[key] = v
    out: dict[str, list[Any]] = {}
    for k, v in merged.items():
        if k.endswith("snr_db"):
            out[k] = [float(x) for x in parse_grid(v, f"snr_db ({k})")]
        elif k == "protocol.name":
            out[k] = split_list(v, "protocol") if isinstance(v, str | list | tuple) else [v]
        elif isinstance(v, list | tuple):
            if not v:
                raise MegenError(f"grid key {k!r}: empty list")
            out[k] = list(v)
        else:
            out[k] = [v]
    out.setdefault("task", ["i2i"])
    out.setdefault("tag", ["main"])
    if "samples" in out and (
        len(out["samples"]) != 1 or not isinstance(out["samples"][0], int) or out["samples"][0] < 1
    ):
        raise MegenError(f"grid key 'samples' must be one integer >= 1, got {grid.get('samples')!r}")
    for t in out["task"]:
        if t not in TASKS:
            raise MegenError(f"unknown task {t!r}; use 'i2i' (image-to-image) or 't2i' (text-to-image)")
    return out


def _transmission_matters(cfg: RunConfig, task: str) -> bool:
    """Whether the seed transmission mode changes this configuration's plan."""
    from megen.models.ldm import start_step_for
    from megen.protocols.builders import build_plan

    if cfg.protocol.plan is not None:
        return True  # a plan file fixes its own modes
    i2i = task == "i2i" and cfg.protocol.name != "local"
    start = start_step_for(cfg.task.steps, cfg.task.strength if i2i else None)
    plans = []
    for mode in ("analog", "digital"):
        variant = RunConfig.from_paths({"links.*.transmission.seed": mode}, base=cfg)
        plans.append(build_plan(cfg.protocol.name, variant, start, i2i))
    return plans[0] != plans[1]


def canonical_config(cfg: RunConfig, task: str) -> RunConfig:
    """Collapse fields that cannot change the results (see the module docstring)."""
    update: dict[str, Any] = {}
    if cfg.protocol.name == "local":
        update.update({"links.*.channel.kind": "none", "links.*.transmission.seed": "analog"})
    cfg = RunConfig.from_paths(update, base=cfg) if update else cfg
    quiet = {
        f"links.{link}.snr_db": NO_CHANNEL_SNR_DB
        for link in LINKS
        if cfg.links.of(link).channel.kind == "none"
    }
    cfg = RunConfig.from_paths(quiet, base=cfg) if quiet else cfg
    seed_modes = {cfg.links.of(link).transmission.seed for link in LINKS}
    if seed_modes != {"analog"} and not _transmission_matters(cfg, task):
        cfg = RunConfig.from_paths({"links.*.transmission.seed": "analog"}, base=cfg)
    return cfg


def point_key(cfg: RunConfig, task: str, spec: SweepSpec) -> str:
    """Hash of everything that determines a point's rows (config, task, batch size, prompt rule)."""
    payload = {
        "sample_rule": SAMPLE_RULE,
        "config": cfg.model_dump(mode="json"),
        "task": task,
        "batch_size": spec.batch_size,
        "prompt_shift": spec.prompt_shift if task == "i2i" else None,
    }
    if spec.references != "auto":
        payload["references"] = spec.references
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def expand(spec: SweepSpec) -> list[Point]:
    """All points of a sweep, in grid order, duplicates merged (their tags joined).

    Raises:
        MegenError: no grid, an unknown key, an empty list, an invalid configuration, or more than
            :data:`~megen.grid.MAX_GRID_POINTS` combinations in all (checked before any is built).
    """
    if not spec.grids:
        raise MegenError("the sweep has no grid (give --protocols ... or a [[grid]] table)")
    grids = [_grid_values(grid, spec.defaults) for grid in spec.grids]
    check_grid_points(
        sum(math.prod(len(v) for v in g.values()) for g in grids) * len(spec.seeds), "sweep grid"
    )
    points: dict[str, Point] = {}
    for values in grids:
        names = list(values)
        for combo in itertools.product(*(values[n] for n in names)):
            fields = dict(zip(names, combo, strict=True))
            task = fields.pop("task")
            tag = str(fields.pop("tag"))
            samples = int(fields.pop("samples", spec.samples))
            for seed in spec.seeds:
                cfg = RunConfig.from_paths({**fields, "model.name": spec.model, "task.seed": seed})
                cfg = canonical_config(cfg, task)
                key = point_key(cfg, task, spec)
                old = points.get(key)
                if old is None:
                    points[key] = Point(cfg, task, (tag,), key, samples)
                else:
                    tags = old.tags if tag in old.tags else (*old.tags, tag)
                    points[key] = Point(cfg, task, tags, key, max(samples, old.samples))
    return list(points.values())


def spec_from_flags(
    *,
    protocols: str,
    channels: str,
    snr_db: str,
    transmissions: str,
    samples: int,
    seeds: str,
    task: str = "i2i",
    model: str = "tiny",
    batch_size: int = 25,
    prompt_shift: int = 0,
    references: str = "auto",
    name: str = "sweep",
    extra: dict[str, Any] | None = None,
) -> SweepSpec:
    """A one-grid sweep from ``megen sweep`` flags (comma lists, SNR ranges).

    Raises:
        MegenError: an empty list, an unknown protocol, channel or mode, or invalid numbers.
    """
    snrs = parse_grid(snr_db, "--snr-db")
    seed_list = [int(s) for s in parse_grid(seeds, "--seeds")]
    if any(s != int(s) for s in parse_grid(seeds, "--seeds")):
        raise MegenError("--seeds: seeds must be integers")
    grid: dict[str, Any] = {
        "tag": "main",
        "task": split_list(task, "--task"),
        "protocol": split_list(protocols, "--protocols"),
        "channel": split_list(channels, "--channels"),
        "snr_db": snrs,
        "transmission": split_list(transmissions, "--transmission"),
        **(extra or {}),
    }
    return make_spec(
        {
            "name": name,
            "model": model,
            "samples": samples,
            "seeds": seed_list,
            "batch_size": batch_size,
            "prompt_shift": prompt_shift,
            "references": references,
            "grids": [grid],
        }
    )


def make_spec(data: dict[str, Any]) -> SweepSpec:
    """Validate a spec from plain data (TOML ``[[grid]]`` tables become ``grids``)."""
    data = dict(data)
    if "grid" in data:
        if "grids" in data:
            raise MegenError("give either [[grid]] tables or a `grids` list, not both")
        data["grids"] = data.pop("grid")
    if isinstance(data.get("grids"), dict):
        data["grids"] = [data["grids"]]
    try:
        spec = SweepSpec(**data)
    except ValidationError as exc:
        raise MegenError(format_validation_error(exc)) from exc
    expand(spec)  # every error now, before anything runs
    return spec


def load_spec(path: Path | str) -> SweepSpec:
    """Read a TOML experiment file (see the module docstring).

    Raises:
        MegenError: a missing or unreadable file, bad TOML, or an invalid specification.
    """
    from megen.files import read_table

    data = read_table(path, "experiment file")
    return make_spec(data)
