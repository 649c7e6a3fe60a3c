"""The results database's schema, defined once: the :class:`Row` dataclass is the ``rows`` table.

Schema (``SCHEMA_VERSION`` 2)::

    meta(key TEXT PRIMARY KEY, value TEXT)
        schema = "megen-sweep", schema_version, spec_json (the SweepSpec that created it, canonical JSON),
        spec_digest, points_digest (what the sweep computes: see points_digest), model_fingerprint (the
        generative weights), seed_codec_fingerprint (only where a point uses a seed codec that reads
        the seed-codec weights), megen_version, created_utc
    points(config_hash TEXT PRIMARY KEY, tags TEXT (comma list), task TEXT, protocol TEXT,
           channel TEXT (of the radio links, see point_channel), snr_db REAL (NULL for channel none
           or radio links at different SNRs), transmission TEXT, seed INTEGER,
           samples INTEGER (rows expected), config_json TEXT (the RunConfig))
    rows: one column per field of Row, PRIMARY KEY (config_hash, sample)

The column list, the ``CREATE TABLE`` statement, the insert and the frame read all come from
:class:`Row`: adding a metric or a cost is one field here. A row built from a mapping with a missing or
an unknown key is an error (:class:`RowSchemaError`), never a silent NULL.

* Costs are **per image**: the batch's totals (channel uses, bits, FLOPs, seconds, joules, failed code
  blocks) divided by the batch size. Every cost in this model is linear in the batch size (FLOPs scale
  with the batch, airtime with the channel uses), so this is each image's own share.
* ``image_png`` is the final image as an 8-bit lossless PNG (32x32 grey: ~0.5-1 kB).
* ``outage`` (0/1) is 1 when a transfer the image needed failed after HARQ (control data included)
  and no fallback replaced it; every metric of such a row is NULL (nothing was delivered, so nothing
  is measured; ``image_png`` holds what the destination had). ``fallback`` (0/1) is 1 when the
  plan's fallback image is shown (``central-fallback``: the UE's own image); its metrics are
  measured as usual. ``delivered_to`` is the node where the image lands (``UE``, ``ES1`` ...): a
  comparison matches protocols with the baselines of the same destination.
* A database of an older schema version is refused with a one-line error (re-run the sweep into a
  new file); version 1 had no ``outage``/``fallback``/``delivered_to``.
* ``wall_s`` is the measured compute time per image (varies from run to run; not a result).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from megen.config import LINKS, RunConfig
from megen.experiments.spec import Point

SCHEMA = "megen-sweep"
SCHEMA_VERSION = 2
#: Largest integer SQLite stores (signed 64 bit).
SQLITE_MAX_INT = 2**63 - 1


class RowSchemaError(KeyError):
    """A row whose keys are not exactly the columns of :class:`Row` (a bug in the code building it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "row schema error"


def _col(sql: str, kind: str = "") -> Any:
    """A column: its SQL type (and constraints) and its kind (``metric``, ``cost`` or ``""``)."""
    return dataclasses.field(metadata={"sql": sql, "kind": kind})


def _metric() -> Any:
    return _col("REAL", "metric")


def _cost() -> Any:
    return _col("REAL", "cost")


@dataclass(frozen=True)
class Row:
    """One finished image of one point: the columns of the ``rows`` table, in table order.

    Metrics are NULL (None) where they do not apply (reference metrics for text-to-image). Costs are per
    image; units are in the names (``busy_*_s`` is the time a node or link is busy; the critical path
    ``latency_s`` overlaps parallel work).
    """

    config_hash: str = _col("TEXT NOT NULL REFERENCES points(config_hash)")
    sample: int = _col("INTEGER NOT NULL")
    batch: int = _col("INTEGER NOT NULL")
    run_seed: int = _col("INTEGER NOT NULL")
    ref_index: int | None = _col("INTEGER")
    prompt: str = _col("TEXT NOT NULL")
    prompt_class: int | None = _col("INTEGER")
    psnr_fidelity_db: float | None = _metric()
    ssim_fidelity: float | None = _metric()
    ms_ssim_fidelity: float | None = _metric()
    psnr_reference_db: float | None = _metric()
    ssim_reference: float | None = _metric()
    prompt_match: float | None = _metric()
    uses_uplink: float = _cost()
    uses_downlink: float = _cost()
    uses_backhaul: float = _cost()
    uses_total: float = _cost()
    bits_uplink: float = _cost()
    bits_downlink: float = _cost()
    bits_backhaul: float = _cost()
    bits_total: float = _cost()
    flops_ue: float = _cost()
    flops_es: float = _cost()
    flops_total: float = _cost()
    latency_s: float = _cost()
    energy_j: float = _cost()
    busy_ue_s: float = _cost()
    busy_es_s: float = _cost()
    busy_uplink_s: float = _cost()
    busy_downlink_s: float = _cost()
    busy_backhaul_s: float = _cost()
    energy_ue_j: float = _cost()
    energy_es_j: float = _cost()
    energy_uplink_j: float = _cost()
    energy_downlink_j: float = _cost()
    energy_backhaul_j: float = _cost()
    link_failures: float = _cost()
    outage: int = _col("INTEGER NOT NULL CHECK (outage IN (0, 1))")
    fallback: int = _col("INTEGER NOT NULL CHECK (fallback IN (0, 1))")
    delivered_to: str = _col("TEXT NOT NULL")
    costs_json: str = _col("TEXT NOT NULL")
    wall_s: float | None = _col("REAL")
    image_png: bytes = _col("BLOB NOT NULL")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Row:
        """A row from a mapping with exactly the columns as keys.

        Raises:
            RowSchemaError: a column is missing or a key is not a column (a renamed metric).
        """
        missing = [c for c in ROW_COLUMNS if c not in data]
        unknown = [k for k in data if k not in _COLUMN_SET]
        if missing or unknown:
            raise RowSchemaError(
                f"row does not match the results schema: missing {missing}, unknown {unknown}"
            )
        return cls(**{c: data[c] for c in ROW_COLUMNS})

    def values(self) -> tuple[Any, ...]:
        """The SQL values in column order (NaN -> NULL, numpy scalars -> Python)."""
        return tuple(sql_value(getattr(self, c)) for c in ROW_COLUMNS)


_FIELDS = dataclasses.fields(Row)
ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS)
_COLUMN_SET = frozenset(ROW_COLUMNS)
#: Per-image quality metrics (NULL where they do not apply, e.g. reference metrics for text-to-image).
METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.metadata["kind"] == "metric")
#: Per-image costs (batch totals / batch size).
COST_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.metadata["kind"] == "cost")

POINT_COLUMNS = (
    "config_hash",
    "tags",
    "task",
    "protocol",
    "channel",
    "snr_db",
    "transmission",
    "seed",
    "samples",
    "config_json",
)

DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS points (config_hash TEXT PRIMARY KEY, tags TEXT NOT NULL, task TEXT NOT NULL, "
    "protocol TEXT NOT NULL, channel TEXT NOT NULL, snr_db REAL, transmission TEXT NOT NULL, "
    "seed INTEGER NOT NULL, samples INTEGER NOT NULL, config_json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rows ("
    + ", ".join(f"{f.name} {f.metadata['sql']}" for f in _FIELDS)
    + ", PRIMARY KEY (config_hash, sample))",
)
INSERT_ROW = (
    f"INSERT OR IGNORE INTO rows ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
)
INSERT_POINT = f"INSERT OR IGNORE INTO points ({', '.join(POINT_COLUMNS)}) VALUES ({', '.join('?' * len(POINT_COLUMNS))})"


def sql_value(v: Any) -> Any:
    """A Python value SQLite stores as is: NaN -> NULL, numpy scalars -> Python scalars."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def point_channel(cfg: RunConfig) -> tuple[str, float | None]:
    """The ``channel`` and ``snr_db`` of a point: those of its links, leaving out ideal ones (``none``).

    A wired backhaul (``links.backhaul.channel.kind = "none"``) beside fading radio links at 0 dB is a
    ``rayleigh`` point at 0 dB; radio links with different channels are ``mixed``, with different SNRs
    have no single SNR (``None``); no channel anywhere is ``none``.

    Example:
        >>> from megen.config import RunConfig
        >>> point_channel(RunConfig.from_paths({"channel": "rayleigh", "snr_db": 0,
        ...                                     "links.backhaul.channel.kind": "none"}))
        ('rayleigh', 0.0)
    """
    radio = [section for section in (cfg.links.of(link) for link in LINKS) if section.channel.kind != "none"]
    if not radio:
        return "none", None
    kinds = {section.channel.kind for section in radio}
    snrs = {float(section.snr_db) for section in radio}
    return kinds.pop() if len(kinds) == 1 else "mixed", snrs.pop() if len(snrs) == 1 else None


def point_values(p: Point) -> tuple[Any, ...]:
    """The ``points`` table's values of one point, in :data:`POINT_COLUMNS` order."""
    c = p.config.flat()
    channel, snr_db = point_channel(p.config)
    return (
        p.key,
        ",".join(p.tags),
        p.task,
        c["protocol"],
        channel,
        snr_db,
        c["transmission"],
        c["seed"],
        p.samples,
        p.config.model_dump_json(),
    )


def points_digest(points: Sequence[Point]) -> str:
    """Hash of what a sweep computes: every point's config key, sample count and tags (order-free)."""
    items = sorted(f"{p.key}:{p.samples}:{','.join(sorted(p.tags))}" for p in points)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]
