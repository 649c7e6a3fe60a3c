"""``megen generate``/``sweep`` accept ``--harq`` and ``--max-transmissions``; bad values exit 2 with one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from megen.cli.main import app

pytestmark = pytest.mark.cli
runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-transmissions", "0"], "max_transmissions"),
        (["--max-transmissions", "17"], "max_transmissions"),
        (["--harq", "arq"], "harq"),
        (["--mcs", "qam1024:3"], "unknown MCS table"),
        (["--mcs", "qam64lowse:29"], "indices 0..28"),
    ],
)
def test_bad_link_settings_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["generate", "-p", "a cat", "--protocol", "central", *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_sweep_grid_accepts_harq_modes() -> None:
    from megen.config import RunConfig, parse_assignments

    grid = parse_assignments(["harq=off,ir", "max-transmissions=2"], lists=True)
    assert grid == {"links.*.transmission.harq": ["off", "ir"], "links.*.transmission.max_transmissions": [2]}
    cfg = RunConfig.from_paths({"harq": "chase", "max_transmissions": 2})
    t = cfg.links.downlink.transmission
    assert (t.harq, t.max_transmissions) == ("chase", 2)
    assert RunConfig().links.uplink.transmission.harq == "ir"
    assert RunConfig().links.uplink.transmission.max_transmissions == 4
