"""Link adaptation: the 5G NR MCS tables, their measured BLER curves, and an MCS selector.

The entries are every distinct (modulation, code rate) pair of the three 38.214 PDSCH tables
(:mod:`megen.link.mcs_tables`: 64QAM, 256QAM and low-spectral-efficiency down to QPSK 30/1024, rates
below 1/5 by circular-buffer repetition). Their BLER curves live in ``bler_tables.json`` next to this
module, measured with this package's own link (CRC24A + 5G LDPC + Gray QAM + channel + soft demapping +
layered min-sum decoding, one transmission, no HARQ) on transport blocks of :data:`REFERENCE_TB_BITS`
bits, on AWGN and block-Rayleigh fading with perfect and with estimated CSI (LS on counted pilots).
Only a window around each entry's threshold is measured (:func:`measure_curve`); regenerate with
``megen mcs --rebuild`` (tens of CPU-minutes; ``meta.seconds`` of the table says how long it took); ``megen mcs`` prints the table.

Selection (:func:`select_mcs`) picks the entry with the highest spectral efficiency whose first
transmission meets the target BLER (10%) at the given average SNR, from the curves of the channel's
kind and CSI (Rician uses the Rayleigh curves: conservative). Below the most robust entry's threshold it
returns that entry (``meets_target=False``): HARQ then tries, and the transfer is an outage if every
transmission fails. The ideal link gets the highest entry.
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
from megen.link.channels import CHANNEL_KINDS, ChannelConfig, Csi
from megen.link.digital import transmit_bits
from megen.link.mcs_tables import all_entries, unique_schemes
from megen.link.modulation import Mcs
from megen.link.theory import shannon_snr_db
from megen.rng import derive

MCS_TABLE: tuple[Mcs, ...] = unique_schemes()
"""Entries of the BLER table: the distinct schemes of the three 38.214 tables, by spectral efficiency."""

TARGET_BLER = 0.1
REFERENCE_TB_BITS = 2048
"""Transport-block size of the stored measurements (one code block, ~ a 256-byte payload)."""
TABLE_CHANNELS: tuple[str, ...] = ("awgn", "rayleigh", "rayleigh_estimated_csi")
"""Curves stored per entry: AWGN, block Rayleigh with perfect CSI, and with LS-estimated CSI."""
REFERENCE_COHERENCE_SYMBOLS = 100
SNR_STEP_DB: dict[str, float] = {"awgn": 0.25, "rayleigh": 0.5, "rayleigh_estimated_csi": 0.5}
"""Fine grid step of the measured window per channel (twice the step while the BLER is ~1)."""
STOP_BLER: dict[str, float] = {"awgn": 0.01, "rayleigh": 0.025, "rayleigh_estimated_csi": 0.025}
"""A curve's window ends at the first point with BLER at or below this."""
MAX_ERRORS = 8
"""A point stops once this many blocks failed (or at the block budget)."""
MAX_WINDOW_DB = 45.0
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
    """Measured BLER curves: ``curves[channel][i]`` belongs to ``entries[i]``; ``None``: not measured.

    A curve that was not measured counts as never reaching any target (:func:`select_mcs` skips it).
    """

    entries: tuple[Mcs, ...]
    curves: dict[str, tuple[BlerCurve | None, ...]]
    meta: dict[str, Any]

    def threshold(self, channel: str, i: int, target_bler: float = TARGET_BLER) -> float:
        """Threshold of entry ``i`` on ``channel`` (``inf`` when not measured)."""
        curve = self.curves[channel][i]
        return math.inf if curve is None else curve.threshold_snr_db(target_bler)

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
                    "threshold_snr_db": {ch: _json_float(self.threshold(ch, i)) for ch in self.curves},
                    "curves": {
                        ch: {"snr_db": list(c.snr_db), "bler": list(c.bler), "blocks": list(c.blocks)}
                        for ch in self.curves
                        if (c := self.curves[ch][i]) is not None
                    },
                }
                for i, mcs in enumerate(self.entries)
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlerTable:
        """Inverse of :meth:`to_dict`."""
        entries = tuple(Mcs(e["modulation"], e["code_rate"]) for e in data["entries"])
        channels = list(data["entries"][0]["threshold_snr_db"])

        def curve(e: dict[str, Any], ch: str) -> BlerCurve | None:
            if ch not in e["curves"]:
                return None
            c = e["curves"][ch]
            return BlerCurve(
                tuple(float(s) for s in c["snr_db"]),
                tuple(float(b) for b in c["bler"]),
                tuple(int(n) for n in c["blocks"]),
            )

        curves = {ch: tuple(curve(e, ch) for e in data["entries"]) for ch in channels}
        return cls(entries, curves, dict(data.get("meta", {})))


@dataclass(frozen=True)
class McsChoice:
    """Result of :func:`select_mcs`.

    Attributes:
        index: Position in :data:`MCS_TABLE` (and in the BLER table's entries).
        mcs: The chosen scheme.
        threshold_snr_db: SNR from which its first-transmission BLER stays at or below the target.
        predicted_bler: Interpolated first-transmission BLER at the requested SNR.
        meets_target: False when even the most robust entry misses the target (it is returned anyway;
            HARQ then tries).
        entry: The 38.214 entry it comes from, ``TABLE:INDEX`` (first table listing the scheme).
        curve: Which stored curve was used (``awgn``, ``rayleigh``, ``rayleigh_estimated_csi``;
            ``none`` for the ideal link). An entry whose estimated-CSI curve is not measured uses its
            perfect-CSI curve (optimistic; HARQ absorbs the difference).
    """

    index: int
    mcs: Mcs
    threshold_snr_db: float
    predicted_bler: float
    meets_target: bool
    entry: str = ""
    curve: str = "awgn"


def entry_name(mcs: Mcs) -> str:
    """``TABLE:INDEX`` of the first 38.214 entry with this scheme (``""`` if none has it)."""
    return next((e.name for e in all_entries() if e.mcs == mcs), "")


def curve_kind(channel: str | ChannelConfig) -> str:
    """The stored curves that describe a channel: ``none``, ``awgn``, ``rayleigh`` or ``rayleigh_estimated_csi``."""
    kind = channel.kind if isinstance(channel, ChannelConfig) else channel
    if kind not in CHANNEL_KINDS:
        raise MegenError(f"unknown channel kind {kind!r}; choose one of {', '.join(CHANNEL_KINDS)}")
    if kind in ("none", "awgn"):
        return kind
    estimated = isinstance(channel, ChannelConfig) and channel.csi == "estimated"
    return "rayleigh_estimated_csi" if estimated else "rayleigh"


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
    """Highest-spectral-efficiency MCS whose first-transmission BLER is ``<= target_bler`` at ``snr_db``.

    Args:
        snr_db: Average Es/N0 per complex symbol, dB (finite).
        channel: Channel kind (``none``, ``awgn``, ``rayleigh``, ``rician``; perfect CSI) or a
            :class:`ChannelConfig` (its ``csi`` picks the perfect- or estimated-CSI curves).
        target_bler: Highest acceptable block error rate, in (0, 1).
        table: BLER table; the packaged one by default.

    Returns:
        :class:`McsChoice`; when no entry meets the target, the most robust entry with
        ``meets_target=False``.

    Example:
        >>> select_mcs(30.0, "awgn").mcs.modulation
        '256qam'
        >>> select_mcs(-10.0, "awgn").entry
        'qam64lowse:1'
        >>> select_mcs(-20.0, "awgn").entry, select_mcs(-20.0, "awgn").meets_target
        ('qam64lowse:0', False)
    """
    kind = curve_kind(channel)
    snr = float(snr_db)
    if not math.isfinite(snr):
        raise MegenError(f"snr_db must be finite (got {snr_db!r})")
    if not 0.0 < target_bler < 1.0:
        raise MegenError(f"target BLER must be in (0, 1), got {target_bler}")
    table = table if table is not None else load_bler_table()
    entries = table.entries
    if kind == "none":
        top = max(range(len(entries)), key=lambda i: entries[i].spectral_efficiency)
        return McsChoice(top, entries[top], -math.inf, 0.0, True, entry_name(entries[top]), kind)
    if kind not in table.curves:
        raise MegenError(f"BLER table has no {kind} curves (run `megen mcs --rebuild`)")
    # an entry whose estimated-CSI curve is not measured (yet) falls back on its perfect-CSI curve
    used = [
        "rayleigh" if kind == "rayleigh_estimated_csi" and table.curves[kind][i] is None else kind
        for i in range(len(entries))
    ]
    thresholds = [table.threshold(used[i], i, target_bler) for i in range(len(entries))]
    meeting = [i for i in range(len(entries)) if thresholds[i] <= snr]
    meets = bool(meeting)
    if meets:
        index = max(meeting, key=lambda i: (entries[i].spectral_efficiency, -thresholds[i]))
    else:
        index = min(range(len(entries)), key=lambda i: (entries[i].spectral_efficiency, thresholds[i]))
    mcs = entries[index]
    curve = table.curves[used[index]][index]
    predicted = 1.0 if curve is None else curve.at(snr)
    return McsChoice(index, mcs, thresholds[index], predicted, meets, entry_name(mcs), used[index])


def reference_channel(kind: str, snr_db: float) -> ChannelConfig:
    """The channel a stored curve was measured on (``kind`` from :data:`TABLE_CHANNELS`)."""
    if kind == "awgn":
        return ChannelConfig(kind="awgn", snr_db=snr_db)
    csi: Csi = "estimated" if kind == "rayleigh_estimated_csi" else "perfect"
    return ChannelConfig(
        kind="rayleigh", snr_db=snr_db, coherence_symbols=REFERENCE_COHERENCE_SYMBOLS, csi=csi
    )


def measure_bler(
    mcs: Mcs,
    channel: ChannelConfig,
    num_blocks: int,
    tb_bits: int,
    generator: torch.Generator,
    max_errors: int | None = None,
) -> tuple[float, int]:
    """First-transmission BLER of up to ``num_blocks`` random transport blocks of ``tb_bits`` bits.

    Blocks go in batches of ``ceil(num_blocks / 4)``; with ``max_errors`` the point stops after the batch
    that reaches that many failed blocks (Monte-Carlo until enough errors or the budget).

    Returns:
        ``(bler, blocks)``: failed fraction and code blocks simulated.
    """
    batch = max(1, math.ceil(num_blocks / 4))
    errors = blocks = 0
    while blocks < num_blocks and (max_errors is None or errors < max_errors):
        count = min(batch, num_blocks - blocks)
        payloads = [
            torch.randint(0, 2, (tb_bits,), generator=generator, dtype=torch.uint8) for _ in range(count)
        ]
        results = transmit_bits(payloads, mcs, channel, generator)
        errors += sum(r.block_errors for r in results)
        blocks += sum(r.num_blocks for r in results)
    return errors / blocks, blocks


def measure_curve(
    mcs: Mcs,
    kind: str,
    start_db: float,
    num_blocks: int,
    tb_bits: int,
    seed: int,
) -> BlerCurve:
    """BLER of one entry on one channel, measured on a window around its threshold.

    From ``start_db`` on in steps of :data:`SNR_STEP_DB` (twice that while the BLER is >= 0.99, then
    the skipped point is filled in), until the BLER falls to :data:`STOP_BLER` (or the window reaches
    :data:`MAX_WINDOW_DB`). If the first point already has BLER < 0.5 the window starts 1 dB lower.
    Each point has its own generator, named by ``(seed, kind, scheme, SNR in mdB)``.

    Returns:
        :class:`BlerCurve` of the measured points (gaps <= 2 steps where the BLER is ~1).
    """
    step = SNR_STEP_DB[kind]
    points: dict[float, tuple[float, int]] = {}

    def point(snr: float) -> float:
        snr = round(snr, 4)
        if snr not in points:
            name = f"{mcs.modulation}-{mcs.code_rate}"
            gen = torch.Generator().manual_seed(derive(seed, "bler", kind, name, int(round(snr * 1000))))
            points[snr] = measure_bler(
                mcs, reference_channel(kind, snr), num_blocks, tb_bits, gen, MAX_ERRORS
            )
        return points[snr][0]

    snr = start_db
    while point(snr) < 0.5 and snr > start_db - 10:
        snr -= 1.0
    while snr < start_db + MAX_WINDOW_DB:
        bler = point(snr)
        if bler <= STOP_BLER[kind]:
            break
        if bler >= 0.99:
            snr += 2 * step
            if point(snr) < 0.99:
                point(snr - step)
            continue
        snr += step
    grid = sorted(points)
    return BlerCurve(tuple(grid), tuple(points[s][0] for s in grid), tuple(points[s][1] for s in grid))


def build_bler_table(
    num_blocks: int = 40,
    seed: int = 0,
    tb_bits: int = REFERENCE_TB_BITS,
    progress: Callable[[str], None] | None = None,
) -> BlerTable:
    """Measure BLER curves for every :data:`MCS_TABLE` entry on every :data:`TABLE_CHANNELS` channel.

    AWGN windows start 1 dB below the entry's Shannon SNR; Rayleigh windows start 0.5 dB below the
    AWGN threshold (perfect CSI) or the perfect-CSI threshold (estimated CSI). Points are reproducible
    on their own (:func:`measure_curve`).

    Raises:
        MegenError: ``num_blocks`` or ``tb_bits`` below 1, or ``seed`` outside ``0..MAX_TABLE_SEED``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_TABLE_SEED:
        raise MegenError(f"seed must be an integer in 0..{MAX_TABLE_SEED}, got {seed!r}")
    if num_blocks < 1 or tb_bits < 1:
        raise MegenError(f"num_blocks and tb_bits must be >= 1, got {num_blocks} and {tb_bits}")
    started = time.perf_counter()
    curves: dict[str, list[BlerCurve]] = {kind: [] for kind in TABLE_CHANNELS}
    for mcs in MCS_TABLE:
        start = shannon_snr_db(mcs.spectral_efficiency) - 1.0
        for kind in TABLE_CHANNELS:
            curve = measure_curve(mcs, kind, round(start * 4) / 4, num_blocks, tb_bits, seed)
            curves[kind].append(curve)
            threshold = curve.threshold_snr_db()
            start = (threshold if math.isfinite(threshold) else start) - 0.5
            if progress is not None:
                progress(
                    f"{kind:22s} {mcs.label:16s} threshold {threshold:6.2f} dB "
                    f"({len(curve.snr_db)} points, {time.perf_counter() - started:6.0f} s)"
                )
    meta = {
        "description": "first-transmission BLER vs average Es/N0 per complex symbol, measured by megen.link.mcs",
        "regenerate": "megen mcs --rebuild",
        "tb_bits": tb_bits,
        "max_blocks_per_point": num_blocks,
        "max_errors_per_point": MAX_ERRORS,
        "seed": seed,
        "target_bler": TARGET_BLER,
        "decoder": "layered normalised min-sum, up to 20 iterations, early termination",
        "rayleigh": {
            "coherence_symbols": REFERENCE_COHERENCE_SYMBOLS,
            "csi": "perfect / estimated (LS, 4 pilots per coherence block)",
            "equalizer": "mmse",
        },
        "window": "steps "
        + ", ".join(f"{k} {v} dB" for k, v in SNR_STEP_DB.items())
        + "; stop at BLER "
        + ", ".join(f"{k} {v}" for k, v in STOP_BLER.items()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return BlerTable(MCS_TABLE, {k: tuple(v) for k, v in curves.items()}, meta)


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
    """One plain-data row per 38.214 table entry (all three tables): scheme, efficiency, thresholds.

    Args:
        table: BLER table; the packaged one by default.
        target_bler: BLER that defines the thresholds.

    Returns:
        Rows with ``table``, ``index``, ``modulation``, ``code_rate``, ``code_rate_x1024``,
        ``spectral_efficiency`` (bit per complex symbol), ``snr_db_at_10pct_bler`` (dict channel -> dB
        of the first transmission, ``None`` when never reached; the key keeps its name for other
        targets) and ``shannon_snr_db`` (lowest SNR at which the efficiency is below capacity).

    Example:
        >>> row = table_rows()[0]
        >>> row["table"], row["index"], row["modulation"], row["code_rate_x1024"]
        ('qam64', 0, 'qpsk', 120.0)
    """
    table = table if table is not None else load_bler_table()
    position = {(m.modulation, m.code_rate): i for i, m in enumerate(table.entries)}
    rows = []
    for entry in all_entries():
        mcs = entry.mcs
        i = position.get((mcs.modulation, mcs.code_rate))
        thresholds = {
            ch: None if i is None else _json_float(table.threshold(ch, i, target_bler)) for ch in table.curves
        }
        rows.append(
            {
                "table": entry.table,
                "index": entry.index,
                "modulation": mcs.modulation,
                "code_rate": mcs.code_rate,
                "code_rate_x1024": entry.rate_x1024,
                "spectral_efficiency": mcs.spectral_efficiency,
                "snr_db_at_10pct_bler": thresholds,
                "shannon_snr_db": shannon_snr_db(mcs.spectral_efficiency),
            }
        )
    return rows


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
