"""scripts/threshold_moves.py: which brackets move between two reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "threshold_moves.py"


def _script():
    spec = importlib.util.spec_from_file_location("threshold_moves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(rows: list[str]) -> str:
    head = (
        "| protocol | image lands at | channel | error-free prompt accuracy | from | 90% threshold "
        "| falls below it | outage > 10% |\n|---|---|---|---|---|---|---|---|\n"
    )
    return (
        "# r\n\n## Where each protocol falls below 90% of x\n\nText.\n\n"
        + head
        + "\n".join(rows)
        + "\n\n## Next\n| a |\n"
    )


def test_lists_only_the_series_whose_brackets_move(tmp_path, capsys):
    before = _report(
        [
            "| CIAG | UE | rayleigh | 0.96 | channel none | 0.864 | between -2 and -1 dB | between -10 and -9 dB |",
            "| central | UE | awgn | 1 | channel none | 0.9 | above all | above all |",
            "| UIDG | ES | awgn | 0.92 | channel none | 0.828 | between 7 and 8 dB | above all |",
        ]
    )
    after = _report(
        [
            "| CIAG | UE | rayleigh | 0.96 | channel none | 0.864 | between -12 and -11 dB | between -10 and -9 dB |",
            "| central | UE | awgn | 0.96 | channel none | 0.864 | above all | above all |",  # only error-free moves
        ]
    )
    (tmp_path / "a.md").write_text(before)
    (tmp_path / "b.md").write_text(after)
    assert _script().main([str(tmp_path / "a.md"), str(tmp_path / "b.md"), "--labels", "25", "250"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| series | channel | error-free, 25 | error-free, 250 | 90% threshold, 25 |")
    assert lines[2] == (
        "| CIAG | rayleigh | 0.96 | 0.96 | between -2 and -1 dB | between -12 and -11 dB "
        "| between -10 and -9 dB | between -10 and -9 dB |"
    )
    assert lines[3] == "| UIDG | awgn | 0.92 | — | between 7 and 8 dB | — | above all | — |"
    assert len(lines) == 4  # central's brackets did not move


@pytest.mark.parametrize("text", ["# no section\n", "## Where each protocol falls below 90%\n\nno table\n"])
def test_a_report_without_the_table_exits_2_with_one_line(tmp_path, capsys, text):
    (tmp_path / "a.md").write_text(text)
    assert _script().main([str(tmp_path / "a.md"), str(tmp_path / "a.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
