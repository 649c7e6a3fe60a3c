"""``megen app`` in a real browser: Playwright driving Debian's Chromium (never a downloaded browser).

The server runs as ``megen app`` in a subprocess on a free 127.0.0.1 port and is always stopped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed"),
    pytest.mark.timeout(600),
]
sync_api = pytest.importorskip("playwright.sync_api")

STEPS = 2
START_TIMEOUT_S = 180.0
ANSWER_TIMEOUT_MS = 180_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory) -> Path:
    from megen.experiments.spec import spec_from_flags
    from megen.experiments.sweep import run_sweep

    spec = spec_from_flags(
        protocols="central,EIUG",
        channels="awgn",
        snr_db="0,10",
        transmissions="analog",
        samples=2,
        seeds="0",
        model="tiny-random",
        batch_size=2,
        extra={"steps": 2},
    )
    db = tmp_path_factory.mktemp("browser") / "results.sqlite"
    run_sweep(spec, db, progress=False, log=lambda _m: None)
    return db


@pytest.fixture(scope="module")
def server(sweep_db, tmp_path_factory):
    """``megen app`` on a free port; yields its base URL; always stopped."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "megen.cli.main", "app", "--port", str(port), "--db", str(sweep_db)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, as in this process (conftest): equal floats
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    with urllib.request.urlopen(url + "/api/options", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"megen app did not start: {log.read_text()}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A page that records every console error and uncaught exception (asserted empty at the end)."""
    p = browser.new_page()
    p.errors = []
    p.on("console", lambda m: p.errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    try:
        yield p
        assert p.errors == [], p.errors
    finally:
        p.close()


def _answered(page, n: int) -> None:
    page.wait_for_function(f"document.body.dataset.done === '{n}'", timeout=ANSWER_TIMEOUT_MS)


def _value(page, cell: str):
    return json.loads(page.get_attribute(f"#{cell}", "data-value"))


def _set_snr(page, snr: int) -> None:
    page.eval_on_selector(
        "#snr",
        f"e => {{ e.value = '{snr}'; e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); }}",
    )


def test_generate_tab(server, page, tmp_path):
    """Load, change the SNR (image and channel uses change), a bad upload (message), numbers == CLI."""
    page.goto(f"{server}/?steps={STEPS}&snr_db=5&protocol=CIAG")
    _answered(page, 1)
    assert page.is_hidden("#message")
    assert page.locator("#plan .node").count() == 2 and page.locator("#plan line[marker-end]").count() >= 2
    uses_5, image_5 = _value(page, "protocol-uses-total"), page.get_attribute("#img-received", "src")
    assert page.inner_text("#protocol-uses-total") == str(uses_5)

    _set_snr(page, 20)
    _answered(page, 2)
    assert page.inner_text("#snr-value") == "20"
    assert _value(page, "protocol-uses-total") != uses_5
    assert page.get_attribute("#img-received", "src") != image_5
    assert page.locator("#bars svg").count() == 3

    from megen.cli.main import app
    from megen.experiments.references import load_references
    from megen.images import encode_png

    ref = tmp_path / "ref.png"
    ref.write_bytes(encode_png(load_references("fashion-mnist").images[0]))
    args = ["generate", "-p", page.input_value("#prompt"), "--protocol", "CIAG", "--snr-db", "20", "--json"]
    args += ["--steps", str(STEPS), "--image", str(ref), "--out", str(tmp_path / "o.png")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    cli = json.loads(res.stdout.strip().splitlines()[-1])
    for link in ("uplink", "downlink", "backhaul", "total"):
        assert _value(page, f"protocol-uses-{link}") == cli["channel_uses"][link]
    assert _value(page, "protocol-latency") == cli["latency_s"]
    assert _value(page, "protocol-energy") == cli["energy_j"]
    assert _value(page, "protocol-psnr") == cli["quality"]["psnr_fidelity_db"]

    page.set_input_files(
        "#upload", files=[{"name": "bad.png", "mimeType": "image/png", "buffer": b"not an image"}]
    )
    page.wait_for_selector("#message:not(.hidden)")
    assert "not an image" in page.inner_text("#message")
    page.fill("#prompt", "")
    page.click("#run")
    page.wait_for_function("document.getElementById('message').textContent.includes('prompt is empty')")
    page.fill("#prompt", "a photo of a bag")
    _set_snr(page, 10)  # the page keeps working
    _answered(page, 4)
    # under load the debounced requests may be numbered differently: wait for the answer that clears it
    page.wait_for_selector("#message", state="hidden", timeout=ANSWER_TIMEOUT_MS)
    assert _value(page, "protocol-uses-total") > 0


def test_explore_tab(server, page):
    page.goto(f"{server}/?steps={STEPS}")
    _answered(page, 1)
    page.click("#tab-explore")
    page.wait_for_selector("#plot circle.point", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#plot circle.point").count() == 4  # two protocols at two SNRs
    page.select_option("#metric", "uses_total")
    page.wait_for_function(
        "document.querySelector('#plot .axis-label:last-of-type').textContent === 'uses_total'"
    )
    page.locator("#plot circle.point").first.click()
    page.wait_for_selector("#point-images img", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#point-images img").count() == 2
    assert "snr_db" in page.inner_text("#point-title")
