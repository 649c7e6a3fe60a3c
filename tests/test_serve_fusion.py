"""Fused batching: denoising stages of concurrent runs as one model call equal the unbatched runs.

In process (an :class:`EdgeService` with the tiny model, the calls as wire messages, as Ray Serve's
batcher hands them over). Tolerance: the fused call is not bit-identical on CPU (oneDNN chooses
convolution kernels by batch size; see :mod:`megen.runtime.fusion`); measured differences are ~2e-5
after 5 guided steps, the bound is 1e-4 on latents in [-4, 4] and images in [0, 1].
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from megen.config import RunConfig
from megen.protocols.engine import EngineConfig
from megen.protocols.executors import RunContext
from megen.runtime import wire
from megen.runtime.service import EdgeService, ServiceConfig

PROMPTS = ["a photo of a bag", "a photo of a dog", "a red car", "a cat on a sofa"]
STEPS = 5
TOL = 1e-4


@pytest.fixture(scope="module")
def service(tiny) -> EdgeService:
    return EdgeService(ServiceConfig(), model=tiny)


def _stage(kind: str, start: int | None = None, stop: int | None = None) -> dict[str, Any]:
    return {"kind": kind, "node": "ES1", "start": start, "stop": stop, "denoiser": None, "tile": None}


def _ctx(seed: int, guidance: float) -> dict[str, Any]:
    cfg = EngineConfig(num_steps=STEPS, seed=seed, guidance=guidance)
    return wire.ctx_to_wire(RunContext(cfg, 1, False, 0))


def _open(service: EdgeService, prompt: str, seed: int, guidance: float) -> str:
    """A run with its prompt encoded and its seeded noise drawn (stages T and Z)."""
    run = service.open_run({"node": "ES1", "links": RunConfig().links.model_dump(mode="json")})
    put = {"item": "prompt", "value": {"texts": [prompt]}, "meta": {}}
    service.call(run, "put", wire.encode(put))
    for st in (_stage("T"), _stage("Z")):
        service.call(run, "run_stage", wire.encode({"stage": st, "ctx": _ctx(seed, guidance)}))
    return run


def _latent(service: EdgeService, run: str) -> torch.Tensor:
    head, tensors = wire.decode(service.call(run, "get", wire.encode({"item": "latent"})))
    value: torch.Tensor = wire.Unpacker(tensors).value(head["value"])
    return value


def _denoise_calls(
    service: EdgeService, guidance: float, ranges: list[tuple[int, int]]
) -> tuple[list[str], list[tuple[str, str, bytes]]]:
    runs = [_open(service, p, seed, guidance) for seed, p in enumerate(PROMPTS[: len(ranges)])]
    calls = [
        (run, "run_stage", wire.encode({"stage": _stage("D", a, b), "ctx": _ctx(seed, guidance)}))
        for seed, (run, (a, b)) in enumerate(zip(runs, ranges, strict=True))
    ]
    return runs, calls


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_fused_denoising_equals_unbatched(service, guidance):
    ranges = [(0, STEPS)] * 4
    runs, calls = _denoise_calls(service, guidance, ranges)
    alone = service.call_batch(calls)  # back to back: what each run gets unbatched
    want = [_latent(service, r) for r in runs]

    runs, calls = _denoise_calls(service, guidance, ranges)
    sizes: list[int] = []
    fused = service.call_batch(calls, fuse=True, on_fused=sizes.append)
    got = [_latent(service, r) for r in runs]

    assert sizes == [4]
    assert [wire.decode(a)[0] for a in fused] == [wire.decode(a)[0] for a in alone]  # names, FLOPs
    diffs = [float((g - w).abs().max()) for g, w in zip(got, want, strict=True)]
    assert max(diffs) < TOL, diffs
    assert len({tuple(w.flatten()[:4].tolist()) for w in want}) == 4  # per-run noise kept per run
    for r in runs:  # the rest of each run goes on as usual: the image decodes from the fused latent
        service.call(r, "run_stage", wire.encode({"stage": _stage("G"), "ctx": _ctx(0, guidance)}))


def test_only_matching_stages_are_fused(service):
    """Different step ranges form separate groups; a lone stage runs as usual, bit for bit."""
    ranges = [(0, 2), (0, 3), (0, 2), (0, 3)]
    runs, calls = _denoise_calls(service, 1.0, ranges)
    service.call_batch(calls)
    want = [_latent(service, r) for r in runs]
    runs, calls = _denoise_calls(service, 1.0, ranges[:3])
    sizes: list[int] = []
    service.call_batch(calls, fuse=True, on_fused=sizes.append)
    got = [_latent(service, r) for r in runs]
    assert sizes == [2]  # (0, 2) twice; (0, 3) alone
    assert torch.equal(got[1], want[1])
    assert max(float((g - w).abs().max()) for g, w in zip(got, want[:3], strict=True)) < TOL


def test_fusion_leaves_errors_and_other_calls_alone(service):
    """A bad call in a fused batch answers its own error; the other calls are answered normally."""
    runs, calls = _denoise_calls(service, 1.0, [(0, 2), (0, 2)])
    bad = (runs[0], "run_stage", b"not a wire message")
    unknown = ("0" * 32, "run_stage", calls[0][2])
    out = service.call_batch([calls[0], bad, calls[1], unknown], fuse=True)
    assert isinstance(out[0], bytes) and isinstance(out[2], bytes)
    assert isinstance(out[1], Exception) and isinstance(out[3], Exception)
    assert "unknown" in str(out[3])


def test_cli_fuse_needs_ray():
    from typer.testing import CliRunner

    from megen.cli.main import app

    r = CliRunner().invoke(app, ["serve", "--fuse"])
    assert r.exit_code == 2 and "--fuse needs --ray" in r.output
