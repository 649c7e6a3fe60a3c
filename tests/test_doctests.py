"""The examples in docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "megen.link.analog",
    "megen.link.channels",
    "megen.link.digital",
    "megen.link.mcs",
    "megen.grid",
    "megen.link.theory",
    "megen.protocols.memo",
    "megen.experiments.references",
    "megen.experiments.sweep",
    "megen.config",
    "megen.protocols.builders",
    "megen.rng",
    "megen.report.markdown",
    "megen.analysis.aggregate",
    "megen.analysis.cells",
    "megen.analysis.compare",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
