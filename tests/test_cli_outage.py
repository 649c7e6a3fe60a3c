"""``megen generate`` at the edges of the link: the image delivered at -10 dB, an outage (exit 0) at -25 dB."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from megen.cli import generate as gen_cli

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    gen_cli.register(a)
    return a


def _central(app, tmp_path, snr_db: str, *extra: str) -> dict:
    args = ["generate", "-p", "a photo of a sneaker", "--protocol", "central", "--channel", "awgn"]
    args += ["--snr-db", snr_db, "--steps", "5", "--out", str(tmp_path / "c.png"), "--json", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_central_delivers_at_minus_10_db(app, tmp_path):
    data = _central(app, tmp_path, "-10")
    assert data["outage"] == [False] and data["delivered_to"] == "UE"
    assert data["quality"]["psnr_fidelity_db"] >= 30.0
    assert data["channel_uses"]["total"] > 0


def test_central_reports_outage_at_minus_25_db(app, tmp_path):
    data = _central(app, tmp_path, "-25")
    assert data["outage"] == [True] and data["outage_rate"] == 1.0
    assert data["quality"]["psnr_fidelity_db"] is None
    assert "OUTAGE" in data["message"] and data["delivered_to"] == "UE"
    fb = _central(app, tmp_path, "-25", "--protocol", "central-fallback")
    assert (
        fb["outage"] == [False] and fb["fallback"] == [True] and fb["quality"]["psnr_fidelity_db"] is not None
    )
