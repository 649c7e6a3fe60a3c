"""Which thresholds and outage cliffs move between two case-study reports (e.g. 25 against 250 images).

Usage: python scripts/threshold_moves.py BEFORE/report.md AFTER/report.md [--labels "25 images" "250 images"]

Reads the section "Where each protocol falls below 90%" that ``megen reproduce`` writes into each
``report.md`` and prints a markdown table of every series (protocol, options, channel) whose 90%
bracket or outage cliff differs between the two, with both values side by side and the error-free
values that set each line; a series in only one report is listed with "—" for the other. This is how docs/results.md compares the default
preset (25 images per point) with the full preset's run (up to 250).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SECTION = "## Where each protocol falls below"
#: Columns compared (report headers), and the short name each gets in the output.
COMPARED = {
    "error-free prompt accuracy": "error-free",
    "falls below it": "90% threshold",
    "outage > 10%": "outage > 10%",
}

#: The columns whose difference lists a series (the error-free value is shown beside them).
MOVES = ("falls below it", "outage > 10%")


def read_thresholds(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """``{(series label, channel): {header: cell}}`` from a report's threshold table.

    Raises:
        ValueError: The report has no such section or the table lacks a compared column.
    """
    start = text.find(SECTION)
    if start < 0:
        raise ValueError(f"no section {SECTION!r}...")
    lines = [ln.strip() for ln in text[start:].splitlines()[1:]]
    table = [ln for ln in lines[: _end_of_section(lines)] if ln.startswith("|")]
    if len(table) < 2:
        raise ValueError("the threshold section has no table")
    header = [c.strip() for c in table[0].strip("|").split("|")]
    missing = [c for c in (*COMPARED, "protocol", "channel") if c not in header]
    if missing:
        raise ValueError(f"the threshold table lacks column(s) {missing}")
    out = {}
    for row in table[2:]:
        cells = dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=False))
        out[(cells["protocol"], cells["channel"])] = {c: cells.get(c, "") for c in COMPARED}
    return out


def _end_of_section(lines: list[str]) -> int:
    return next((i for i, ln in enumerate(lines) if ln.startswith("## ")), len(lines))


def moves(before: dict, after: dict, labels: tuple[str, str]) -> str:
    """Markdown table of the series whose brackets differ (or that only one report has)."""
    head = ["series", "channel"] + [f"{short}, {label}" for short in COMPARED.values() for label in labels]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    empty = dict.fromkeys(COMPARED, "—")
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, empty), after.get(key, empty)
        if all(a[c] == b[c] for c in MOVES):
            continue
        cells = [key[0], key[1]] + [x for c in COMPARED for x in (a[c], b[c])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) if len(out) > 2 else "no threshold or outage cliff moves"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--labels", nargs=2, default=("before", "after"), metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    try:
        tables = [read_thresholds(p.read_text(encoding="utf-8")) for p in (args.before, args.after)]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(moves(*tables, labels=tuple(args.labels)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
