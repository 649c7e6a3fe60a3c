"""Screenshot of ``megen app`` (docs/images/app.png) and its start-up and interaction times.

Starts ``megen app`` on a free 127.0.0.1 port, opens the page in Debian's Chromium (Playwright, no
browser download), waits for the first generation, changes the SNR and times the answer, takes the
screenshot, and stops the server. Prints one JSON line::

    python benchmarks/app_screenshot.py [--out docs/images/app.png] [--steps 25] [--model tiny] [--db DB]

``start_s``: from launching ``megen app`` to the first answer of ``/api/options`` (the page is usable).
``first_s``: the page's first generation (loads the model, computes the error-free image).
``interaction_s``: median wall-clock time of SNR changes as measured by the server (protocol,
centralized baseline and error-free image). ``start_cpu_s`` and ``interaction_cpu_s``: the server's
CPU seconds (user + system) for the same, a measure that a busy machine does not inflate.
The server runs with ``OMP_NUM_THREADS=1`` unless the environment sets it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"megen app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/api/options", timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    raise SystemExit("megen app did not start")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/images/app.png"))
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--db", type=Path, default=None, help="results database for the Explore tab")
    ap.add_argument("--changes", type=int, default=3, help="SNR changes to time")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "megen.cli.main", "app", "--port", str(port), "--model", args.model]
    if args.db is not None:
        cmd += ["--db", str(args.db)]
    t_launch = time.perf_counter()
    proc = subprocess.Popen(cmd, env={"OMP_NUM_THREADS": "1", **os.environ})
    try:
        start_s = _wait_ready(url, proc, 300)
        start_cpu_s = _cpu_s(proc.pid)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.perf_counter()
            page.goto(f"{url}/?steps={args.steps}&snr_db=0&protocol=CIAG")
            page.wait_for_function("document.body.dataset.done === '1'", timeout=600_000)
            first_s = time.perf_counter() - t0
            seconds, cpu = [], []
            for i, snr in enumerate([5, 10, 15, 20, 25][: args.changes]):
                before = _cpu_s(proc.pid)
                page.eval_on_selector(
                    "#snr", f"e => {{ e.value = '{snr}'; e.dispatchEvent(new Event('change')); }}"
                )
                page.wait_for_function(f"document.body.dataset.done === '{i + 2}'", timeout=600_000)
                seconds.append(float(page.inner_text("#timing").split()[2]))
                cpu.append(round(_cpu_s(proc.pid) - before, 2))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(
        json.dumps(
            {
                "start_s": round(start_s, 2),
                "first_s": round(first_s, 2),
                "interaction_s": round(statistics.median(seconds), 3) if seconds else None,
                "interactions_s": seconds,
                "start_cpu_s": round(start_cpu_s, 2),
                "interaction_cpu_s": statistics.median(cpu) if cpu else None,
                "interactions_cpu_s": cpu,
                "steps": args.steps,
                "model": args.model,
                "total_s": round(time.perf_counter() - t_launch, 1),
                "screenshot": str(args.out),
            }
        )
    )


if __name__ == "__main__":
    main()
