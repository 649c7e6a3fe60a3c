"""The edge server's HTTP behaviour in-process: validation, tokens, the bounded queue, timeouts, metrics.

The app runs in the test process (Starlette's TestClient, or httpx's ASGI transport for concurrent
requests); nothing listens on a socket.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import torch
from starlette.testclient import TestClient

from megen.config import RunConfig
from megen.errors import MegenError
from megen.protocols.items import ItemMeta
from megen.runtime import wire
from megen.runtime.server import ServerConfig, check_bind, create_app, is_loopback, read_token
from megen.runtime.service import EdgeService, ServiceConfig
from megen.runtime.wire import Packer, WireError

TOKEN = "tok-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def service(tiny):
    return EdgeService(ServiceConfig(model="tiny", max_bytes=2**20), model=tiny)


@pytest.fixture()
def client(service):
    with TestClient(create_app(cfg=ServerConfig(token=TOKEN), service=service), headers=AUTH) as c:
        yield c


def open_run(client: TestClient) -> str:
    r = client.post("/v1/runs", json={"node": "ES1", "links": RunConfig().links.model_dump(mode="json")})
    assert r.status_code == 200, r.text
    return str(r.json()["run"])


def put_latent(client: TestClient, run: str, value: torch.Tensor) -> httpx.Response:
    pack = Packer()
    header = {"item": "latent", "value": pack.value(value), "meta": pack.meta(ItemMeta(step=0))}
    return client.post(f"/v1/runs/{run}/put", content=pack.message(header))


def get(client: TestClient, run: str, item: str) -> torch.Tensor:
    r = client.post(f"/v1/runs/{run}/get", content=wire.encode({"item": item}))
    assert r.status_code == 200, r.text
    head, tensors = wire.decode(r.content)
    return wire.Unpacker(tensors).value(head["value"])


def test_wire_roundtrip_and_errors():
    pack = Packer()
    x = torch.randn(2, 4, 8, 8)
    meta = ItemMeta(step=3, noise_var=torch.tensor([0.1, 0.2]), unbiased=x * 2, core=True)
    body = pack.message({"value": pack.value(x), "meta": pack.meta(meta), "texts": pack.value(["a", "b"])})
    head, tensors = wire.decode(body)
    u = wire.Unpacker(tensors)
    assert torch.equal(u.value(head["value"]), x) and u.value(head["texts"]) == ["a", "b"]
    back = u.meta(head["meta"])
    assert back.step == 3 and back.core and torch.equal(back.unbiased, x * 2)
    with pytest.raises(WireError, match="exceeds") as e:
        wire.decode(body, max_bytes=100)
    assert e.value.status == 413
    with pytest.raises(WireError, match="truncated"):
        wire.decode(body[:-7])
    with pytest.raises(WireError, match="MEGW"):
        wire.decode(b"hello world")
    with pytest.raises(WireError, match="dtype int64"):
        wire.decode(wire.encode({}, {"0": torch.ones(3, dtype=torch.int64)}))
    with pytest.raises(WireError, match="NaN"):
        wire.decode(wire.encode({}, {"0": torch.tensor([1.0, float("nan")])}))
    with pytest.raises(WireError, match="unknown tensor reference"):
        u.ref("$t:99")
    with pytest.raises(MegenError, match="cannot send a dict"):
        Packer().value({"a": 1})


def test_put_get_and_stage(client):
    run = open_run(client)
    x = torch.randn(1, 4, 8, 8)
    assert put_latent(client, run, x).status_code == 200
    assert torch.equal(get(client, run, "latent"), x)
    assert client.delete(f"/v1/runs/{run}").status_code == 200
    r = client.post(f"/v1/runs/{run}/get", content=wire.encode({"item": "latent"}))
    assert r.status_code == 404 and "unknown or expired run" in r.json()["error"]


def _stage_body(kind: str) -> bytes:
    from megen.protocols.engine import EngineConfig
    from megen.protocols.executors import RunContext

    ctx = RunContext(EngineConfig(num_steps=2), 1, False, 0)
    stage = {"kind": kind, "node": "ES1", "start": None, "stop": None, "denoiser": None, "tile": None}
    return wire.encode({"stage": stage, "ctx": wire.ctx_to_wire(ctx)})


@pytest.mark.parametrize(
    ("name", "make", "status", "message"),
    [
        (
            "dtype",
            lambda: wire.encode(
                {"item": "latent", "value": {"tensor": "$t:0"}},
                {"0": torch.ones(1, 4, 8, 8, dtype=torch.int32)},
            ),
            400,
            "dtype int32",
        ),
        (
            "nan",
            lambda: wire.encode(
                {"item": "latent", "value": {"tensor": "$t:0"}}, {"0": torch.full((1, 4, 8, 8), float("nan"))}
            ),
            400,
            "NaN",
        ),
        (
            "shape",
            lambda: wire.encode(
                {"item": "latent", "value": {"tensor": "$t:0"}}, {"0": torch.ones(1, 3, 8, 8)}
            ),
            400,
            "must have shape",
        ),
        ("oversized", lambda: wire.encode({}, {"0": torch.zeros(2**19)}), 413, "exceeds the limit"),
        ("truncated", lambda: wire.encode({"item": "latent"}, {"0": torch.ones(64)})[:-9], 400, "truncated"),
        ("header", lambda: b"MEGW\x00\x00\x00\x05{oops", 400, "not valid JSON"),
        ("item", lambda: wire.encode({"item": "weights", "value": {"texts": ["x"]}}), 400, "unknown item"),
    ],
)
def test_malformed_put_is_4xx_and_server_keeps_serving(client, name, make, status, message):
    run = open_run(client)
    r = client.post(f"/v1/runs/{run}/put", content=make())
    assert r.status_code == status and message in r.json()["error"], (name, r.text)
    x = torch.randn(1, 4, 8, 8)
    assert put_latent(client, run, x).status_code == 200
    assert torch.equal(get(client, run, "latent"), x)


def test_unknown_stage_and_call(client):
    run = open_run(client)
    r = client.post(f"/v1/runs/{run}/run_stage", content=_stage_body("X"))
    assert r.status_code == 400 and "unknown stage 'X'" in r.json()["error"]
    r = client.post(f"/v1/runs/{run}/explode", content=wire.encode({}))
    assert r.status_code == 404 and "unknown call" in r.json()["error"]
    r = client.post(f"/v1/runs/{run}/run_stage", content=_stage_body("D"))  # no latent here yet
    assert r.status_code == 400 and "latent" in r.json()["error"]
    r = client.post("/v1/runs", json={"node": "UE"})
    assert r.status_code == 400 and "ES1..ES4" in r.json()["error"]
    assert put_latent(client, run, torch.zeros(1, 4, 8, 8)).status_code == 200


def test_tokens(service):
    with TestClient(create_app(cfg=ServerConfig(token=TOKEN), service=service)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/info").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer tok-12"}).status_code == 401
        assert c.get("/info", headers={"Authorization": TOKEN}).status_code == 401  # no "Bearer "
        info = c.get("/info", headers=AUTH).json()
        assert info["model"] == "tiny" and info["version"] and info["max_bytes"] == 2**20
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/health", "/info", "/metrics", "/v1/runs", "/v1/runs/{run}/{call}"} <= set(paths)


def _slow_get(seconds: float):
    def fn(run, header, unpack):
        time.sleep(seconds)
        return wire.encode({"slept": seconds})

    return fn


def test_queue_full_answers_503_with_retry_after(tiny):
    service = EdgeService(ServiceConfig(model="tiny"), model=tiny)
    service.calls["get"] = _slow_get(0.3)
    app = create_app(cfg=ServerConfig(token=TOKEN, max_queue=2), service=service)
    with TestClient(app, headers=AUTH) as c:
        run = open_run(c)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://es", headers=AUTH) as ac:
            body = wire.encode({"item": "latent"})
            return list(
                await asyncio.gather(*(ac.post(f"/v1/runs/{run}/get", content=body) for _ in range(6)))
            )

    answers = asyncio.run(burst())
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503, 503, 503, 503]
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
    text = app.state.metrics.render()
    assert 'megen_requests_total{endpoint="get",status="503"} 4' in text
    assert 'megen_request_errors_total{endpoint="get"} 4' in text
    assert "megen_queue_depth 0" in text


def test_timeout_answers_504_and_drops_the_run(tiny):
    service = EdgeService(ServiceConfig(model="tiny"), model=tiny)
    service.calls["get"] = _slow_get(0.5)
    app = create_app(cfg=ServerConfig(timeout_s=0.1), service=service)
    with TestClient(app) as c:
        run = open_run(c)
        r = c.post(f"/v1/runs/{run}/get", content=wire.encode({"item": "latent"}))
        assert r.status_code == 504 and "longer than 0.1 s" in r.json()["error"]
        r = c.post(f"/v1/runs/{run}/put", content=wire.encode({"item": "prompt", "value": {"texts": ["a"]}}))
        assert r.status_code == 404
        text = c.get("/metrics").text
        assert 'megen_request_seconds_bucket{endpoint="get",le="+Inf"} 1' in text
        assert "megen_batch_size_count" in text


def test_bind_rules(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    check_bind("127.0.0.1", None)
    with pytest.raises(MegenError, match="without a token"):
        check_bind("0.0.0.0", None)
    f = tmp_path / "t"
    f.write_text("  abc \n")
    assert read_token(str(f)) == "abc"
    f.write_text("\n")
    with pytest.raises(MegenError, match="empty"):
        read_token(str(f))
    with pytest.raises(MegenError, match="cannot read"):
        read_token(str(tmp_path / "missing"))
