"""Code health rules the project holds itself to, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import megen

SRC = Path(megen.__file__).parent
MAX_FUNCTION_LINES = 80


def _functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(SRC.parent), node


def test_no_function_over_80_lines_unless_its_docstring_says_why():
    long = [
        f"{path}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for path, fn in _functions()
        if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
        and "long because" not in (ast.get_docstring(fn) or "").lower()
    ]
    assert long == []


def test_docstrings_cite_only_what_ships_with_the_repository():
    """Users of the package never see the planning notes; the docs they get are under docs/."""
    offenders = [str(p.relative_to(SRC.parent)) for p in SRC.rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert offenders == []


def test_link_package_imports_nothing_heavy():
    """``megen.link.channels`` (used by the configuration, so by every command) does not pull in Sionna."""
    import subprocess
    import sys

    code = "import sys, megen.config; print('sionna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
