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


def test_nothing_is_generated_or_sent_for_an_image_whose_uplink_failed(app, tmp_path):
    """At -25 dB the prompt never reaches the ES: the ES generates nothing and nothing comes down; the
    fallback's cost is exactly the UE's own ``local`` generation (booked for the images in outage)."""
    fb = _central(app, tmp_path, "-25", "--protocol", "central-fallback")
    assert fb["flops"]["ES1"] == 0.0 and fb["channel_uses"]["downlink"] == 0
    assert fb["channel_uses"]["uplink"] > 0  # the failed attempt (all four transmissions) is counted
    local = _central(app, tmp_path, "-25", "--protocol", "local", "--channel", "none")
    assert fb["flops"]["UE"] == pytest.approx(local["flops"]["UE"])


def test_pro_rata_books_only_the_share_of_the_batch_still_served():
    from megen.protocols.engine import pro_rata
    from megen.protocols.links import Sent

    sent = Sent(value=None, channel_uses=1000, payload_bits=800, transmissions=4)
    assert pro_rata(sent, 1.0) is sent
    part = pro_rata(sent, 0.75)
    assert (part.channel_uses, part.payload_bits, part.transmissions) == (750, 600, 3)
    assert pro_rata(sent, 0.0).channel_uses == 0
