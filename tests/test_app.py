"""``megen app`` at the API level (FastAPI TestClient): options, plan, generation, bad input, Explore."""

from __future__ import annotations

import base64
import io
import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from megen.app.interact import MAX_UPLOAD_PIXELS, path_choices  # noqa: E402
from megen.app.server import create_app  # noqa: E402

STEPS = 2
FORM = {
    "prompt": "a photo of a sneaker",
    "protocol": "CIAG",
    "channel": "awgn",
    "snr_db": 5,
    "transmission": "analog",
    "image_codec": "jpeg",
    "steps": STEPS,
    "reference": 0,
}
#: Summary keys the page shows (or draws) and ``megen generate --json`` prints.
COMPARED = ("channel_uses", "payload_bits", "latency_s", "energy_j", "link_failures", "quality", "flops")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app("tiny")) as c:
        yield c


@pytest.fixture(scope="module")
def generated(client):
    """Two generations that differ only in the SNR."""
    out = {}
    for snr in (5, 20):
        r = client.post("/api/generate", json={**FORM, "snr_db": snr})
        assert r.status_code == 200, r.text
        out[snr] = r.json()
    return out


def _png(width: int, height: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="tab-explore"' in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http://www.w3.org", "")  # nothing from the network
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_options_come_from_the_configuration(client):
    opts = client.get("/api/options").json()
    assert {"central", "CIAG", "EIUG"} <= set(opts["protocols"]) and "unsplit" not in opts["protocols"]
    assert opts["choices"]["channel"]["values"] == ["none", "awgn", "rayleigh", "rician"]
    assert opts["choices"]["image_codec"]["values"] == path_choices("links.*.codec.image")
    assert ("seed_codec" in opts["choices"]) == (path_choices("links.*.codec.seed") is not None)
    assert opts["snr_db"] == {"min": -30.0, "max": 60.0, "default": 10.0}
    assert len(opts["references"]) == 10 and opts["reference_set"] == "fashion-mnist"
    ref = client.get(f"/api/reference/{opts['references'][1]['index']}.png")
    assert ref.status_code == 200 and ref.content.startswith(b"\x89PNG")


def test_plan_has_stages_per_node_and_transfers_per_link(client):
    plan = client.post("/api/plan", json=FORM).json()
    assert [n["node"] for n in plan["nodes"]] == ["UE", "ES1"] and plan["result_node"] == "UE"
    assert {t["link"] for t in plan["transfers"]} == {"uplink", "downlink"}
    assert any(s.startswith("D[") for s in plan["nodes"][1]["stages"])
    central = client.post("/api/plan", json={**FORM, "protocol": "central"}).json()
    assert [t["item"] for t in central["transfers"]][-1] == "image"


def test_generation_equals_megen_generate_json(generated, tmp_path):
    """The numbers on the page are those of `megen generate --json` with the same settings and image."""
    from megen.cli.main import app
    from megen.experiments.references import load_references
    from megen.images import encode_png

    ref = tmp_path / "ref.png"
    ref.write_bytes(encode_png(load_references("fashion-mnist").images[0]))
    page = generated[20]
    for protocol, shown in (("CIAG", page["summary"]), ("central", page["baseline"])):
        flags = f"--protocol {protocol} --channel awgn --snr-db 20 --transmission analog --image-codec jpeg"
        args = ["generate", *flags.split(), "--steps", str(STEPS), "-p", FORM["prompt"], "--image", str(ref)]
        res = CliRunner().invoke(app, [*args, "--json", "--out", str(tmp_path / "o.png")])
        assert res.exit_code == 0, res.output
        cli = json.loads(res.stdout.strip().splitlines()[-1])
        for key in COMPARED:
            assert shown[key] == cli[key], key
        assert shown["config"] == cli["config"]


def test_snr_changes_the_numbers_and_the_image(generated):
    low, high = generated[5], generated[20]
    assert low["summary"]["channel_uses"] != high["summary"]["channel_uses"]
    assert low["images"]["received"] != high["images"]["received"]
    assert low["images"]["error_free"] == high["images"]["error_free"]
    assert low["summary"]["snr_db"] == 5 and high["baseline"]["snr_db"] == 20
    assert high["baseline"]["protocol"] == "central" and high["plan"]["protocol"] == "CIAG"
    for key in ("error_free", "received", "baseline"):
        assert high["images"][key].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 501}, "prompt is too long"),
        ({"snr_db": 100}, "SNR must be a number"),
        ({"snr_db": "loud"}, "SNR must be a number"),
        ({"protocol": "XYZ"}, "unknown protocol"),
        ({"channel": "wifi"}, "channel must be one of"),
        ({"steps": 0}, "task.steps"),
        ({"reference": 10_000}, "reference must be an index"),
        ({"upload": "data:image/png;base64,bm90IGFuIGltYWdl"}, "not an image"),
        ({"upload": "***"}, "bad base64"),
        ({"upload": _png(MAX_UPLOAD_PIXELS // 1000 + 1, 1001)}, "too large"),
    ],
)
def test_bad_input_is_a_one_line_400(client, change, expected):
    r = client.post("/api/generate", json={**FORM, **change})
    assert r.status_code == 400, r.text
    assert expected in r.json()["error"] and "\n" not in r.json()["error"]


def test_bad_requests_keep_the_server_working(client):
    assert client.post("/api/generate", content=b"{not json").json()["error"] == "the request is not JSON"
    assert client.post("/api/generate", json=[1, 2]).status_code == 400
    big = client.post(
        "/api/generate", content=b"x" * (17 * 2**20), headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and "too large" in big.json()["error"]
    assert client.get("/api/reference/100.png").status_code == 400
    assert client.post("/api/plan", json={**FORM, "snr_db": 3}).status_code == 200


def test_an_uploaded_image_is_used(client):
    r = client.post("/api/generate", json={**FORM, "upload": _png(48, 40), "reference": None})
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["quality"]["psnr_reference_db"] is not None


# ------------------------------------------------------------------------------------------- Explore
@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    from megen.experiments.spec import spec_from_flags
    from megen.experiments.sweep import run_sweep

    spec = spec_from_flags(
        protocols="central,CIAG",
        channels="awgn",
        snr_db="0,10",
        transmissions="analog",
        samples=2,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 2},
    )
    db = tmp_path_factory.mktemp("explore") / "results.sqlite"
    run_sweep(spec, db, progress=False, log=lambda _m: None)
    return db


def test_explore_options_series_and_images(client, sweep_db):
    opts = client.get("/api/explore/options", params={"db": str(sweep_db)}).json()
    assert opts["rows"] == 8 and opts["protocols"] == ["CIAG", "central"] and "snr_db" in opts["x_axes"]
    assert "psnr_fidelity_db" in opts["metrics"] and "uses_total" in opts["costs"]
    data = client.get(
        "/api/explore/series",
        params={"db": str(sweep_db), "metric": "uses_total", "x": "snr_db", "protocols": "CIAG,central"},
    ).json()
    assert [s["protocol"] for s in data["series"]] == ["CIAG", "central"]
    for s in data["series"]:
        assert [p["x"] for p in s["points"]] == [0.0, 10.0] and all(p["n"] == 2 for p in s["points"])
    point = data["series"][0]["points"][0]
    images = client.get(
        "/api/explore/images", params={"db": str(sweep_db), "hashes": ",".join(point["config_hashes"])}
    ).json()["images"]
    assert len(images) == 2 and images[0]["png"].startswith("data:image/png;base64,")
    only = client.get(
        "/api/explore/series",
        params={"db": str(sweep_db), "metric": "uses_total", "x": "snr_db", "protocols": "central"},
    ).json()
    assert [s["protocol"] for s in only["series"]] == ["central"]


def test_explore_bad_input(client, sweep_db, tmp_path):
    missing = client.get("/api/explore/options", params={"db": str(tmp_path / "nope.sqlite")})
    assert missing.status_code == 400 and "not found" in missing.json()["error"]
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 10)
    assert client.get("/api/explore/options", params={"db": str(tmp_path / "junk.sqlite")}).status_code == 400
    assert "no results database" in client.get("/api/explore/options").json()["error"]
    bad = client.get("/api/explore/series", params={"db": str(sweep_db), "metric": "nope", "x": "snr_db"})
    assert bad.status_code == 400 and "unknown metric" in bad.json()["error"]
    bad = client.get(
        "/api/explore/series", params={"db": str(sweep_db), "metric": "uses_total", "x": "cfg_steps"}
    )
    assert bad.status_code == 400 and "unknown x axis" in bad.json()["error"]


def test_cli_refuses_bad_ports_and_databases(tmp_path):
    import socket

    from megen.cli.main import app

    res = CliRunner().invoke(app, ["app", "--port", "0"])
    assert res.exit_code == 2 and "--port must be in 1..65535" in res.output
    res = CliRunner().invoke(app, ["app", "--port", "8000", "--db", str(tmp_path / "none.sqlite")])
    assert res.exit_code == 2 and "results database not found" in res.output
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["app", "--port", str(port)])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output


def test_docstring_examples():
    import doctest

    import megen.app.interact

    result = doctest.testmod(megen.app.interact, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
