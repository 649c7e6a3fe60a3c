"""The edge server on Ray Serve (slow: Ray starts in ~12 s): same answers as in-process, batching used."""

from __future__ import annotations

import concurrent.futures
import os

import httpx
import pytest
import torch

from megen.testing.serve import start_servers, stop_server
from test_serve import TOKEN, _engines, _run

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_ray_serve_equals_in_process_and_batches(tiny, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ((proc, url),) = start_servers(token_file, 1, "--ray")
    try:
        local, _ = _engines(tiny, [url], "awgn")
        want = _run(local, "CIAG", "awgn")

        def client(_: int) -> torch.Tensor:
            _, remote = _engines(tiny, [url], "awgn")
            out = _run(remote, "CIAG", "awgn")
            assert out.transfers == want.transfers and out.stages == want.stages
            return out.image

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            images = list(pool.map(client, range(8)))
        assert all(torch.equal(img, want.image) for img in images)
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        count = next(line for line in metrics.splitlines() if line.startswith("megen_batch_size_count"))
        total = next(line for line in metrics.splitlines() if line.startswith("megen_batch_size_sum"))
        assert float(count.split()[-1]) >= 1 and float(total.split()[-1]) >= float(count.split()[-1])
        assert httpx.get(url + "/info").status_code == 401
    finally:
        stop_server(proc, timeout_s=120)  # SIGTERM: the server shuts its own local Ray down


@pytest.mark.timeout(900)
def test_ray_serve_fused_batches_equal_unbatched(tiny, tmp_path):
    """`--ray --fuse`: concurrent clients' denoising stages run fused; images equal within 1e-4."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ((proc, url),) = start_servers(token_file, 1, "--ray", "--fuse")
    try:
        local, _ = _engines(tiny, [url], "none")
        want = _run(local, "CIAG", "none")

        def client(_: int) -> torch.Tensor:
            _, remote = _engines(tiny, [url], "none")
            out = _run(remote, "CIAG", "none")
            assert [t.flops for t in out.stages] == [t.flops for t in want.stages]
            return out.image

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            images = list(pool.map(client, range(8)))
        assert max(float((img - want.image).abs().max()) for img in images) < 1e-4
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        fused = next(line for line in metrics.splitlines() if line.startswith("megen_fused_batch_size_count"))
        assert float(fused.split()[-1]) >= 1  # at least one fused model call
    finally:
        stop_server(proc, timeout_s=120)
