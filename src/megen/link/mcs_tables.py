"""The 5G NR PDSCH MCS tables of 3GPP TS 38.214 Sec. 5.1.3.1, as data.

* ``qam64``: Table 5.1.3.1-1 (QPSK..64QAM, indices 0..28),
* ``qam256``: Table 5.1.3.1-2 (QPSK..256QAM, indices 0..27),
* ``qam64lowse``: Table 5.1.3.1-3 (low spectral efficiency, QPSK 30/1024 .. 64QAM, indices 0..28).

Code rates are stored as in the standard, ``R x 1024`` (two 256QAM entries have half steps). The
reserved indices (29..31 / 28..31, retransmission-only) are not listed. Entries are :class:`Mcs`
values; :class:`TableEntry` adds the table name and index.

Example:
    >>> lookup("qam64lowse", 0).code_rate * 1024, lookup("qam256", 27).modulation
    (30.0, '256qam')
"""

from __future__ import annotations

from dataclasses import dataclass

from megen.errors import MegenError
from megen.link.modulation import Mcs

_ORDER_NAMES = {2: "qpsk", 4: "16qam", 6: "64qam", 8: "256qam"}

_RAW: dict[str, tuple[tuple[int, float], ...]] = {
    "qam64": (
        (2, 120), (2, 157), (2, 193), (2, 251), (2, 308), (2, 379), (2, 449), (2, 526), (2, 602),
        (2, 679), (4, 340), (4, 378), (4, 434), (4, 490), (4, 553), (4, 616), (4, 658), (6, 438),
        (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719), (6, 772), (6, 822), (6, 873),
        (6, 910), (6, 948),
    ),
    "qam256": (
        (2, 120), (2, 193), (2, 308), (2, 449), (2, 602), (4, 378), (4, 434), (4, 490), (4, 553),
        (4, 616), (4, 658), (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719), (6, 772),
        (6, 822), (6, 873), (8, 682.5), (8, 711), (8, 754), (8, 797), (8, 841), (8, 885),
        (8, 916.5), (8, 948),
    ),
    "qam64lowse": (
        (2, 30), (2, 40), (2, 50), (2, 64), (2, 78), (2, 99), (2, 120), (2, 157), (2, 193),
        (2, 251), (2, 308), (2, 379), (2, 449), (2, 526), (2, 602), (4, 340), (4, 378), (4, 434),
        (4, 490), (4, 553), (4, 616), (6, 438), (6, 466), (6, 517), (6, 567), (6, 616), (6, 666),
        (6, 719), (6, 772),
    ),
}  # fmt: skip
"""(modulation order Q_m, code rate x 1024) per index, TS 38.214 Tables 5.1.3.1-1/-2/-3."""

MCS_TABLES: dict[str, tuple[Mcs, ...]] = {
    name: tuple(Mcs(_ORDER_NAMES[q], rate / 1024) for q, rate in rows) for name, rows in _RAW.items()
}
"""Table name -> its entries in index order."""

TABLE_NAMES: tuple[str, ...] = tuple(MCS_TABLES)


@dataclass(frozen=True)
class TableEntry:
    """One row of a 38.214 MCS table.

    Attributes:
        table: ``qam64``, ``qam256`` or ``qam64lowse``.
        index: MCS index ``I_MCS`` within the table.
        mcs: The scheme (modulation and code rate).
    """

    table: str
    index: int
    mcs: Mcs

    @property
    def rate_x1024(self) -> float:
        """Code rate times 1024, as the standard lists it."""
        return float(self.mcs.code_rate or 0.0) * 1024

    @property
    def name(self) -> str:
        """``TABLE:INDEX``, e.g. ``qam64lowse:0`` (the form the ``mcs`` setting accepts)."""
        return f"{self.table}:{self.index}"


def all_entries() -> tuple[TableEntry, ...]:
    """Every entry of every table, table by table in index order."""
    return tuple(
        TableEntry(table, i, mcs) for table, entries in MCS_TABLES.items() for i, mcs in enumerate(entries)
    )


def unique_schemes() -> tuple[Mcs, ...]:
    """The distinct (modulation, code rate) pairs of all tables, by spectral efficiency then order."""
    seen = {(e.mcs.modulation, e.mcs.code_rate): e.mcs for e in all_entries()}
    return tuple(sorted(seen.values(), key=lambda m: (m.spectral_efficiency, m.bits_per_symbol)))


def lookup(table: str, index: int) -> Mcs:
    """The scheme at ``index`` of ``table``; unknown tables or indices raise :class:`MegenError`."""
    if table not in MCS_TABLES:
        raise MegenError(f"unknown MCS table {table!r}; choose one of {', '.join(TABLE_NAMES)}")
    entries = MCS_TABLES[table]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(entries):
        raise MegenError(f"MCS table {table} has indices 0..{len(entries) - 1}, got {index!r}")
    return entries[index]


def parse_entry(text: str) -> Mcs:
    """``"qam64lowse:0"`` -> the scheme of that entry (``TABLE:INDEX``; one-line errors)."""
    table, _, index = text.strip().lower().partition(":")
    try:
        number = int(index)
    except ValueError:
        raise MegenError(f"MCS entry must look like 'qam64:5' (TABLE:INDEX), got {text!r}") from None
    return lookup(table, number)
