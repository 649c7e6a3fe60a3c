"""``megen app``: the interactive MEG page, a FastAPI server with a static HTML/JS front end.

Routes (all JSON unless noted; bad input answers HTTP 400 ``{"error": "<one line>"}``, which the
page shows and then keeps working):

=============================  ==========================================================================
``GET /``                      the page (``static/index.html``; ``/static/*`` its script and style)
``GET /api/options``           the Generate form: protocols, channels, codecs, SNR range, references
``GET /api/reference/{i}.png`` image ``i`` of the reference set (PNG)
``POST /api/plan``             the plan of a form's protocol (stages per node, transfers per link)
``POST /api/generate``         one generation: the protocol, the centralized baseline and the
                               error-free image (:meth:`megen.app.interact.Studio.generate`)
``GET /api/explore/options``   what a results database offers (``?db=PATH``; default ``--db``)
``GET /api/explore/series``    one line per series (``?db&metric&x&protocols=a,b&channel``)
``GET /api/explore/images``    the stored images of points (``?db&hashes=h1,h2``)
=============================  ==========================================================================

Nothing is fetched from the network: the page, its script and its plots (plain SVG) are served from
the package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from megen.app.interact import MAX_UPLOAD_BYTES, Studio, form_options, plan_diagram
from megen.errors import MegenError

STATIC = Path(__file__).parent / "static"
"""The page's files (served at ``/static``)."""
MAX_BODY_BYTES = 2 * MAX_UPLOAD_BYTES
"""Largest request body (bytes): an upload's base64 text and the form; larger requests answer 413."""


def create_app(model: str = "tiny", db: Path | str | None = None) -> FastAPI:
    """The FastAPI application of ``megen app``.

    Args:
        model: The model every generation uses (any ``megen generate --model``).
        db: The results database the Explore tab opens first (``None``: the page asks for a path).

    Returns:
        A :class:`fastapi.FastAPI` application (serve it with uvicorn, or test it with ``TestClient``).
    """
    studio = Studio(model=model)
    app = FastAPI(title="megen app", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    _add_error_handling(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/options")
    def options() -> dict[str, Any]:
        return {**form_options(model), "db": None if db is None else str(db)}

    @app.get("/api/reference/{index}.png")
    def reference(index: int) -> Response:
        from megen.experiments.references import load_references, resolve_references
        from megen.images import encode_png

        refs = load_references(resolve_references("auto", model))
        if not 0 <= index < len(refs.images):
            raise MegenError(f"no reference image {index} (the set has {len(refs.images)})")
        return Response(encode_png(refs.images[index]), media_type="image/png")

    @app.post("/api/plan")
    async def plan(request: Request) -> dict[str, Any]:
        form = await form_of(request)
        return plan_diagram(
            studio.config(form), bool(form.get("upload")) or form.get("reference") is not None
        )

    @app.post("/api/generate")
    async def generate(request: Request) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        form = await form_of(request)
        return await run_in_threadpool(studio.generate, form)

    _add_explore_routes(app, db)
    return app


async def form_of(request: Request) -> dict[str, Any]:
    """The JSON object of a request body (the page's form)."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise MegenError(f"the request is too large (more than {MAX_BODY_BYTES // 2**20} MiB)")
    try:
        form = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise MegenError("the request is not JSON") from None
    if not isinstance(form, dict):
        raise MegenError("the request must be a JSON object")
    return form


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _add_error_handling(app: FastAPI) -> None:
    """Bad input answers ``{"error": "<one line>"}`` (400; 413 for a request over MAX_BODY_BYTES)."""

    @app.exception_handler(MegenError)
    async def _megen_error(_request: Request, exc: MegenError) -> JSONResponse:
        return _bad(" ".join(str(exc).split()) or "bad input")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        return _bad(f"bad request: {where + ': ' if where else ''}{err.get('msg', 'invalid value')}")

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return _bad(f"the request is too large (more than {MAX_BODY_BYTES // 2**20} MiB)", 413)
        return await call_next(request)


def _add_explore_routes(app: FastAPI, db: Path | str | None) -> None:
    """The Explore tab's routes; ``db`` is the database opened when a request names none."""
    from megen.app import explore

    def db_of(db_arg: str | None) -> Path:
        path = db_arg or (str(db) if db is not None else "")
        if not path.strip():
            raise MegenError("no results database given: enter the path of a megen sweep database")
        return Path(path).expanduser()

    @app.get("/api/explore/options")
    def explore_options(db: str | None = None) -> dict[str, Any]:
        return explore.explore_options(db_of(db))

    @app.get("/api/explore/series")
    def explore_series(
        metric: str, x: str, db: str | None = None, protocols: str = "", channel: str = ""
    ) -> dict[str, Any]:
        chosen = [p for p in protocols.split(",") if p.strip()] or None
        return explore.explore_series(db_of(db), metric, x, chosen, channel or None)

    @app.get("/api/explore/images")
    def explore_images(hashes: str, db: str | None = None) -> dict[str, Any]:
        return {"images": explore.explore_images(db_of(db), [h for h in hashes.split(",") if h])}


def serve(host: str, port: int, model: str, db: Path | None, log: Any = print) -> None:
    """Run the page with uvicorn until interrupted (Ctrl-C).

    Raises:
        MegenError: a port outside 1..65535, a port in use, or a database path that does not exist.
    """
    import uvicorn

    if not 0 < port < 65536:
        raise MegenError(f"--port must be in 1..65535, got {port}")
    if db is not None and not db.exists():
        raise MegenError(f"results database not found: {db}")
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise MegenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    app = create_app(model, db)
    log(f"megen app: http://{host}:{port}/ (model {model}; Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
