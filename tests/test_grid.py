"""``megen.grid``: one grammar for SNR lists and ranges, one cap; ``megen.errors.check_text``."""

from __future__ import annotations

import doctest

import pytest

import megen.errors
import megen.grid
from megen.errors import MegenError, check_text
from megen.grid import MAX_GRID_POINTS, check_grid_points, parse_grid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", [7.0]),
        (" 0, 5 ,10 ", [0.0, 5.0, 10.0]),
        ("-10:20:5", [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0]),
        ("-5:5", [float(v) for v in range(-5, 6)]),
        ("0:1:0.1", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        ("0:10:4", [0.0, 4.0, 8.0]),  # the stop is inclusive only when on the grid
        ("3:3:1", [3.0]),
        ("20,0:10:5,5", [20.0, 0.0, 5.0, 10.0]),  # order kept, duplicates dropped
        ("1e1,-2.5", [10.0, -2.5]),
        (4, [4.0]),
        (2.5, [2.5]),
        ([0, "10:12", 1.5], [0.0, 10.0, 11.0, 12.0, 1.5]),
        ((1, 1, 2), [1.0, 2.0]),
    ],
)
def test_grammar(text, expected) -> None:
    assert parse_grid(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ([], "empty"),
        ("loud", "not a number"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("1e400", "finite"),
        ("1:0:1", "below its start"),
        ("0:10:0", "step .* must be > 0"),
        ("0:10:-1", "step .* must be > 0"),
        ("0:10:nan", "finite"),
        ("0:1:2:3", "cannot read range"),
        ("0:", "cannot read range"),
        (":5", "cannot read range"),
        ("a:b", "not a number"),
        (True, "not a number"),
        ([1, True], "not a number"),
        ({"a": 1}, "expected a number"),
        (None, "expected a number"),
    ],
)
def test_bad_grids_raise_megen_error_naming_the_option(text, match: str) -> None:
    with pytest.raises(MegenError, match=match) as info:
        parse_grid(text, "--snr-db")
    assert str(info.value).startswith("--snr-db: ")


def test_cap_is_shared_and_checked_before_expanding() -> None:
    assert MAX_GRID_POINTS == 2000
    cap = MAX_GRID_POINTS
    assert len(parse_grid(f"0:{cap - 1}")) == cap
    with pytest.raises(MegenError, match=f"{cap + 1} points; at most {cap}"):
        parse_grid(f"0:{cap}")
    with pytest.raises(MegenError, match=f"at most {cap}"):
        parse_grid("0:900000:1")  # the 900 001-point grid
    with pytest.raises(MegenError, match=f"at most {cap}"):
        parse_grid("0:1e300:1e-300")  # would overflow if counted as an int first
    with pytest.raises(MegenError, match=f"at most {cap}"):
        parse_grid(f"0:{cap - 2}," + ",".join(str(cap + i) for i in range(5)))  # ranges and values together
    with pytest.raises(MegenError, match=f"sweep: {cap + 1} points"):
        check_grid_points(cap + 1, "sweep")
    check_grid_points(MAX_GRID_POINTS, "sweep")


@pytest.mark.parametrize("module", [megen.grid, megen.errors])
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_check_text_accepts_unicode() -> None:
    assert check_text("ein Foto von einem Schuh – 👟", "--prompt") == "ein Foto von einem Schuh – 👟"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"\xff\xfe".decode("utf-8", "surrogateescape"), r"--prompt is not valid UTF-8 text \(byte 0xff"),
        ("a\ud800b", r"code point U\+D800 at character 2"),
        ("a\x00b", "NUL character"),
        (b"abc", "must be text"),
        (None, "must be text"),
    ],
)
def test_check_text_refuses_what_a_tokenizer_cannot_take(text, match: str) -> None:
    with pytest.raises(MegenError, match=match):
        check_text(text, "--prompt")
