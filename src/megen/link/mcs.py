"""Link adaptation: a 5G-CQI-like MCS table, measured BLER curves, and an MCS selector.

The BLER curves live in ``bler_tables.json`` next to this module. They are measured with this package's
own link (CRC24A + 5G LDPC + Gray QAM + channel + soft demapping + layered min-sum decoding) on
transport blocks of :data:`REFERENCE_TB_BITS` bits; regenerate them with
``megen mcs --rebuild`` (a few minutes on 2 cores); ``megen mcs`` prints the table.

Selection (:func:`select_mcs`) picks the entry with the highest spectral efficiency whose BLER stays
at or below the target (10%) at the given average SNR and at every higher SNR of its curve. Rician
channels use the Rayleigh curves (conservative); the ideal link gets the highest entry.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from megen.errors import MegenError
from megen.link.channels import CHANNEL_KINDS, ChannelConfig
from megen.link.digital import transmit_bits
from megen.link.modulation import Mcs
from megen.link.theory import shannon_snr_db

MCS_TABLE: tuple[Mcs, ...] = (
    Mcs("qpsk", 205 / 1024),
    Mcs("qpsk", 308 / 1024),
    Mcs("qpsk", 449 / 1024),
    Mcs("qpsk", 602 / 1024),
    Mcs("16qam", 378 / 1024),
    Mcs("16qam", 490 / 1024),
    Mcs("16qam", 616 / 1024),
    Mcs("64qam", 466 / 1024),
    Mcs("64qam", 567 / 1024),
    Mcs("64qam", 666 / 1024),
    Mcs("64qam", 772 / 1024),
    Mcs("64qam", 873 / 1024),
    Mcs("256qam", 711 / 1024),
    Mcs("256qam", 797 / 1024),
    Mcs("256qam", 885 / 1024),
    Mcs("256qam", 948 / 1024),
)
"""Entries in order of spectral efficiency: the rates of 38.214 CQI table 2 (QPSK from rate 0.2)."""

TARGET_BLER = 0.1
REFERENCE_TB_BITS = 2048
"""Transport-block size of the stored measurements (one code block, ~ a 256-byte payload)."""
TABLE_CHANNELS: tuple[str, ...] = ("awgn", "rayleigh")
SNR_GRIDS_DB: dict[str, tuple[float, float, float]] = {
    "awgn": (-8.0, 30.0, 0.5),
    "rayleigh": (-6.0, 46.0, 1.0),
}
"""(start, stop, step) of the measured SNR grid per channel."""
REFERENCE_COHERENCE_SYMBOLS = 100
SKIP_BELOW_SHANNON_DB = 1.0
"""Points more than this below the Shannon limit of an entry are stored as BLER 1 without measuring."""
TABLE_FILE = "bler_tables.json"
MAX_TABLE_SEED = 2**32 - 1
"""Largest seed of :func:`build_bler_table`."""


@dataclass(frozen=True)
class BlerCurve:
    """Block error rate against SNR for one MCS on one channel.

    Attributes:
        snr_db: Grid of average Es/N0 values (dB), ascending.
        bler: Block error rate at each grid point.
        blocks: Blocks simulated at each point; 0 where the value was not measured: BLER 1 far below
            the Shannon limit, and above two consecutive points with BLER <= target / 4 the last
            measured value is repeated (an upper bound for a falling curve).
    """

    snr_db: tuple[float, ...]
    bler: tuple[float, ...]
    blocks: tuple[int, ...]

    def at(self, snr_db: float) -> float:
        """BLER at ``snr_db``, linear interpolation between grid points (clamped at the ends)."""
        grid = self.snr_db
        if snr_db <= grid[0]:
            return self.bler[0]
        if snr_db >= grid[-1]:
            return self.bler[-1]
        j = next(i for i, s in enumerate(grid) if s >= snr_db)
        w = (snr_db - grid[j - 1]) / (grid[j] - grid[j - 1])
        return (1.0 - w) * self.bler[j - 1] + w * self.bler[j]

    def threshold_snr_db(self, target_bler: float = TARGET_BLER) -> float:
        """Lowest SNR from which the BLER stays ``<= target_bler`` (``inf`` if it never does)."""
        j = len(self.bler)
        while j > 0 and self.bler[j - 1] <= target_bler:
            j -= 1
        if j == len(self.bler):
            return math.inf
        if j == 0:
            return self.snr_db[0]
        b0, b1 = self.bler[j - 1], self.bler[j]
        s0, s1 = self.snr_db[j - 1], self.snr_db[j]
        return s0 + (b0 - target_bler) / (b0 - b1) * (s1 - s0)


@dataclass(frozen=True)
class BlerTable:
    """Measured BLER curves: ``curves[channel][i]`` belongs to ``entries[i]``."""

    entries: tuple[Mcs, ...]
    curves: dict[str, tuple[BlerCurve, ...]]
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bler_tables.json``."""
        return {
            "meta": self.meta,
            "entries": [
                {
                    "index": i,
                    "modulation": mcs.modulation,
                    "code_rate": mcs.code_rate,
                    "spectral_efficiency": mcs.spectral_efficiency,
                    "threshold_snr_db": {
                        ch: _json_float(self.curves[ch][i].threshold_snr_db()) for ch in self.curves
                    },
                    "curves": {
                        ch: {
                            "snr_db": list(self.curves[ch][i].snr_db),
                            "bler": list(self.curves[ch][i].bler),
                            "blocks": list(self.curves[ch][i].blocks),
                        }
                        for ch in self.curves
                    },
                }
                for i, mcs in enumerate(self.entries)
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlerTable:
        """Inverse of :meth:`to_dict`."""
        entries = tuple(Mcs(e["modulation"], e["code_rate"]) for e in data["entries"])
        channels = list(data["entries"][0]["curves"])
        curves = {
            ch: tuple(
                BlerCurve(
                    tuple(float(s) for s in e["curves"][ch]["snr_db"]),
                    tuple(float(b) for b in e["curves"][ch]["bler"]),
                    tuple(int(n) for n in e["curves"][ch]["blocks"]),
                )
                for e in data["entries"]
            )
            for ch in channels
        }
        return cls(entries, curves, dict(data.get("meta", {})))


@dataclass(frozen=True)
class McsChoice:
    """Result of :func:`select_mcs`.

    Attributes:
        index: Position in :data:`MCS_TABLE`.
        mcs: The chosen scheme.
        threshold_snr_db: SNR from which its BLER stays at or below the target.
        predicted_bler: Interpolated BLER at the requested SNR.
        meets_target: False when even the most robust entry misses the target (it is returned anyway).
    """

    index: int
    mcs: Mcs
    threshold_snr_db: float
    predicted_bler: float
    meets_target: bool


def default_table_path() -> Path:
    """Path of the packaged ``bler_tables.json``."""
    return Path(str(resources.files("megen.link").joinpath(TABLE_FILE)))


@functools.lru_cache(maxsize=4)
def load_bler_table(path: str | None = None) -> BlerTable:
    """Load (and cache) the BLER table; ``None`` means the packaged one."""
    file = Path(path) if path is not None else default_table_path()
    if not file.is_file():
        raise MegenError(f"BLER table not found: {file} (run `megen mcs --rebuild` to measure it)")
    try:
        return BlerTable.from_dict(json.loads(file.read_text()))
    except OSError as exc:
        raise MegenError(f"cannot read BLER table {file}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MegenError(
            f"BLER table {file} is not a valid table ({exc.__class__.__name__}: {exc})"
        ) from None


def select_mcs(
    snr_db: float,
    channel: str | ChannelConfig = "awgn",
    target_bler: float = TARGET_BLER,
    table: BlerTable | None = None,
) -> McsChoice:
    """Highest-spectral-efficiency MCS whose BLER is ``<= target_bler`` at ``snr_db``.

    Args:
        snr_db: Average Es/N0 per complex symbol, dB (finite).
        channel: Channel kind (``none``, ``awgn``, ``rayleigh``, ``rician``) or a :class:`ChannelConfig`.
        target_bler: Highest acceptable block error rate, in (0, 1).
        table: BLER table; the packaged one by default.

    Returns:
        :class:`McsChoice`; when no entry meets the target, the most robust entry with
        ``meets_target=False``.

    Example:
        >>> select_mcs(30.0, "awgn").mcs.modulation
        '256qam'
    """
    kind = channel.kind if isinstance(channel, ChannelConfig) else channel
    if kind not in CHANNEL_KINDS:
        raise MegenError(f"unknown channel kind {kind!r}; choose one of {', '.join(CHANNEL_KINDS)}")
    snr = float(snr_db)
    if not math.isfinite(snr):
        raise MegenError(f"snr_db must be finite (got {snr_db!r})")
    if not 0.0 < target_bler < 1.0:
        raise MegenError(f"target BLER must be in (0, 1), got {target_bler}")
    table = table if table is not None else load_bler_table()
    if kind == "none":
        top = len(table.entries) - 1
        return McsChoice(top, table.entries[top], -math.inf, 0.0, True)
    curves = table.curves["awgn" if kind == "awgn" else "rayleigh"]
    best = None
    for i, mcs in enumerate(table.entries):
        threshold = curves[i].threshold_snr_db(target_bler)
        if threshold <= snr and (
            best is None or mcs.spectral_efficiency > table.entries[best].spectral_efficiency
        ):
            best = i
    meets = best is not None
    index = (
        best
        if best is not None
        else min(range(len(table.entries)), key=lambda i: table.entries[i].spectral_efficiency)
    )
    curve = curves[index]
    return McsChoice(index, table.entries[index], curve.threshold_snr_db(target_bler), curve.at(snr), meets)


def measure_bler(
    mcs: Mcs, channel: ChannelConfig, num_blocks: int, tb_bits: int, generator: torch.Generator
) -> float:
    """BLER of ``num_blocks`` random transport blocks of ``tb_bits`` bits, sent as one batch."""
    payloads = [
        torch.randint(0, 2, (tb_bits,), generator=generator, dtype=torch.uint8) for _ in range(num_blocks)
    ]
    results = transmit_bits(payloads, mcs, channel, generator)
    return sum(r.block_errors for r in results) / sum(r.num_blocks for r in results)


def build_bler_table(
    num_blocks: int = 100,
    seed: int = 0,
    tb_bits: int = REFERENCE_TB_BITS,
    progress: Callable[[str], None] | None = None,
) -> BlerTable:
    """Measure BLER curves for every :data:`MCS_TABLE` entry on AWGN and block-Rayleigh channels.

    Each point uses its own generator seeded from ``(seed, entry, channel, point)``, so points are
    reproducible on their own.

    Raises:
        MegenError: ``num_blocks`` or ``tb_bits`` below 1, or ``seed`` outside ``0..MAX_TABLE_SEED``
            (the per-point seed mixing must stay within 64 bits).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_TABLE_SEED:
        raise MegenError(f"seed must be an integer in 0..{MAX_TABLE_SEED}, got {seed!r}")
    if num_blocks < 1 or tb_bits < 1:
        raise MegenError(f"num_blocks and tb_bits must be >= 1, got {num_blocks} and {tb_bits}")
    started = time.perf_counter()
    curves: dict[str, tuple[BlerCurve, ...]] = {}
    for c, kind in enumerate(TABLE_CHANNELS):
        start, stop, step = SNR_GRIDS_DB[kind]
        grid = [round(start + i * step, 6) for i in range(int(round((stop - start) / step)) + 1)]
        per_entry = []
        for e, mcs in enumerate(MCS_TABLE):
            limit = shannon_snr_db(mcs.spectral_efficiency) - SKIP_BELOW_SHANNON_DB
            blers: list[float] = []
            blocks: list[int] = []
            settled = 0
            for p, snr in enumerate(grid):
                if snr < limit:
                    blers.append(1.0)
                    blocks.append(0)
                    continue
                if settled >= 2:
                    blers.append(blers[-1])
                    blocks.append(0)
                    continue
                channel = ChannelConfig(
                    kind=kind,  # type: ignore[arg-type]
                    snr_db=snr,
                    coherence_symbols=REFERENCE_COHERENCE_SYMBOLS,
                )
                generator = torch.Generator().manual_seed(((seed * 7 + c) * 101 + e) * 1009 + p)
                bler = measure_bler(mcs, channel, num_blocks, tb_bits, generator)
                blers.append(bler)
                blocks.append(num_blocks)
                settled = settled + 1 if bler <= TARGET_BLER / 4 else 0
            curve = BlerCurve(tuple(grid), tuple(blers), tuple(blocks))
            per_entry.append(curve)
            if progress is not None:
                progress(f"{kind:8s} {mcs.label:14s} threshold {curve.threshold_snr_db():6.2f} dB")
        curves[kind] = tuple(per_entry)
    meta = {
        "description": "BLER vs average Es/N0 per complex symbol, measured by megen.link.mcs",
        "regenerate": "megen mcs --rebuild",
        "tb_bits": tb_bits,
        "blocks_per_point": num_blocks,
        "seed": seed,
        "target_bler": TARGET_BLER,
        "decoder": "layered normalised min-sum, up to 20 iterations, early termination",
        "rayleigh": {"coherence_symbols": REFERENCE_COHERENCE_SYMBOLS, "csi": "perfect", "equalizer": "mmse"},
        "skipped_points": (
            "blocks == 0: not measured; BLER 1 below the Shannon limit - 1 dB, and the last measured value "
            "repeated after two consecutive points with BLER <= target/4"
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return BlerTable(MCS_TABLE, curves, meta)


def check_table_target(path: Path | None = None) -> Path:
    """Where :func:`write_bler_table` would write; raises :class:`MegenError` if it cannot.

    Call it before :func:`build_bler_table` so a bad ``--out`` fails in a second, not after minutes.
    """
    target = Path(path) if path is not None else default_table_path()
    if target.is_dir():
        raise MegenError(f"BLER table output {target} is a folder; give a file name such as table.json")
    folder = next((p for p in (target.parent, *target.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise MegenError(f"cannot write BLER table {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise MegenError(f"cannot write BLER table {target}: permission denied")
    return target


def write_bler_table(table: BlerTable, path: Path | None = None) -> Path:
    """Write the table as JSON (the packaged file by default) and clear the load cache.

    The file is written to a temporary sibling and renamed over the target, so a full disk leaves the
    previous table intact.
    """
    target = check_table_target(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(table.to_dict(), indent=1) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MegenError(f"cannot write BLER table {target}: {exc.strerror or exc}") from None
    finally:
        load_bler_table.cache_clear()
    return target


def table_rows(table: BlerTable | None = None, target_bler: float = TARGET_BLER) -> list[dict[str, Any]]:
    """One plain-data row per MCS entry: scheme, spectral efficiency and SNR thresholds.

    Args:
        table: BLER table; the packaged one by default.
        target_bler: BLER that defines the thresholds.

    Returns:
        Rows with ``index``, ``modulation``, ``code_rate``, ``spectral_efficiency`` (bit per complex
        symbol), ``threshold_snr_db`` (dict channel -> dB, ``None`` when never reached) and
        ``shannon_limit_db`` (lowest SNR at which the efficiency is below capacity).

    Example:
        >>> table_rows()[0]["modulation"], table_rows()[0]["threshold_snr_db"]["awgn"] < 0
        ('qpsk', True)
    """
    table = table if table is not None else load_bler_table()
    return [
        {
            "index": i,
            "modulation": mcs.modulation,
            "code_rate": mcs.code_rate,
            "spectral_efficiency": mcs.spectral_efficiency,
            "threshold_snr_db": {
                ch: _json_float(table.curves[ch][i].threshold_snr_db(target_bler)) for ch in table.curves
            },
            "shannon_limit_db": shannon_snr_db(mcs.spectral_efficiency),
        }
        for i, mcs in enumerate(table.entries)
    ]


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
