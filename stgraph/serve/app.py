"""The FastAPI app of ``stgraph serve`` (:func:`create_app`): forecasts, explanations, sensors and model facts
over HTTP, and the page at ``/``.

Endpoints (schemas at ``/docs`` and ``/openapi.json``):

* ``POST /forecast``: JSON ``{timestamps, sensors, values}`` (with ``covariates`` for a run trained with
  covariate files: :mod:`stgraph.serve.covariates`) or a CSV body (``Content-Type: text/csv``) -> the forecast
  per step and sensor in data units (``q05``/``q50``/``q95`` for a probabilistic run);
* ``GET /forecast/latest[?at=T]``: the forecast from the newest step of ``--data FILE`` (re-read when the file
  changes, cached per file version), or of the run's own series without ``--data``; with the input window
  (``history``) and, where the series already has them, the readings of the forecast steps (``truth``);
* ``GET /explain?sensor=ID&step=K[&at=T]``: attention into that sensor (models that have it) and integrated
  gradients of its forecast over every input reading (:mod:`stgraph.explain`);
* ``GET /sensors``, ``GET /model``, ``GET /health``.

Every refused request is a JSON 4xx ``{"detail": [{"loc": [..., field], "msg": ..., "type": ...}]}``; an
unexpected failure is a JSON 500 without a traceback (logged). With a token every endpoint but ``/``, its
static files, ``/health`` and the schema needs ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from ..errors import RequestError
from .batching import MicroBatcher
from .engine import Engine, dumps
from .schemas import ErrorAnswer, ForecastAnswer, ForecastRequest, Health

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
#: largest request body accepted (bytes): a METR-LA window of 12 x 207 readings is about 30 kB of JSON
MAX_BODY = 4 << 20
OPEN_PATHS = ("/", "/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/favicon.ico")
ERRORS = {422: {"model": ErrorAnswer}, 413: {"model": ErrorAnswer}, 401: {"model": ErrorAnswer}}


def _error(status: int, field: str, msg: str, kind: str = "value_error") -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body"] if field in ("", "body") else ["body", field], "msg": msg,
                                     "type": kind}]}, status_code=status)


def create_app(run, *, data=None, token: str | None = None, locations=None, max_body: int = MAX_BODY,
               max_batch: int = 32, amp: str = "off", model: str | None = None, tiles: str | None = None) -> FastAPI:
    """The app serving ``run``.

    Args:
        run: a run directory or an opened :class:`~stgraph.training.run.Run`.
        data: series file for ``/forecast/latest`` (re-read when it changes); default the run's own series.
        token: the Bearer token every data endpoint requires (``None``: none).
        locations: CSV of sensor coordinates for the map (default the graph's, or ``graph_sensor_locations.csv``
            beside the run's graph file).
        max_body: largest request body in bytes (a larger one: 413 naming ``body``).
        max_batch: most concurrent requests batched into one forward (:class:`MicroBatcher`).
        amp: precision of the forward (``off``, ``bf16``, ``auto``).
        model: import path of a user model (``pkg.mod:Class``), as :func:`stgraph.open_run`.
        tiles: map tile URL template for the page (``https://.../{z}/{x}/{y}.png``; default none: no request
            leaves the page).
    """
    if not hasattr(run, "forecaster"):
        from ..api import open_run
        run = open_run(run, model=model)
    engine = Engine(run, data_path=data, locations=locations, amp=amp, tiles=tiles)
    if data is not None:
        engine.latest_series()  # a --data file that cannot be read or does not fit the run: refused at the start
    batcher = MicroBatcher(engine.forward, max_batch)

    @asynccontextmanager
    async def lifespan(app):
        import gc
        # the model, the series and the libraries are hundreds of thousands of long-lived objects: left in the
        # collector's generations, every full collection walks them all (tens of ms, triggered by the lists an
        # answer builds); frozen, a collection sees only the requests' objects
        gc.collect()
        gc.freeze()
        await batcher.start()
        yield
        await batcher.stop()

    assets = _swagger_assets()
    app = FastAPI(title="stgraph serve", version="1", lifespan=lifespan, docs_url=None if assets else "/docs",
                  description=f"Forecasts of the {run.config.model.name} run over {len(engine.ids)} sensors")
    app.state.engine, app.state.batcher = engine, batcher
    _guards(app, token, max_body)
    _routes(app, engine, batcher, max_body)
    if assets:
        _offline_docs(app, assets)  # before /static, which would shadow /static/docs
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _swagger_assets() -> str | None:
    """The folder of Swagger UI's files from the ``fastapi-offline`` package (the ``serve`` extra), or ``None``
    without it (then ``/docs`` is FastAPI's, which loads Swagger UI from a CDN: blank offline)."""
    try:
        import fastapi_offline
    except ImportError:
        log.info("/docs loads Swagger UI from its CDN (offline it stays blank; /openapi.json works): "
                 "pip install fastapi-offline, or 'stgraph[serve]', serves it from this machine")
        return None
    return str(Path(fastapi_offline.__file__).with_name("static"))


def _offline_docs(app: FastAPI, assets: str) -> None:
    """``/docs``: Swagger UI from this machine's files (``/static/docs/...``): nothing loaded from elsewhere."""
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/static/docs", StaticFiles(directory=assets), name="docs")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API",
                                   swagger_js_url="/static/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static/docs/swagger-ui.css",
                                   swagger_favicon_url="/static/docs/favicon.png")


def app_from_settings(settings: dict) -> FastAPI:
    """The app ``stgraph serve`` runs: ``settings`` holds ``run``, ``data``, ``locations``, ``model``,
    ``token_file``, ``threads`` and ``tiles`` (the command's flags)."""
    if settings.get("threads"):
        import torch
        torch.set_num_threads(int(settings["threads"]))
    token = None
    if settings.get("token_file"):
        token = Path(settings["token_file"]).read_text(encoding="utf-8").strip()
    return create_app(settings["run"], data=settings.get("data"), token=token, locations=settings.get("locations"),
                      model=settings.get("model"), tiles=settings.get("tiles"))


def app_from_env() -> FastAPI:
    """:func:`app_from_settings` of the JSON in ``$STGRAPH_SERVE`` (each uvicorn worker process of
    ``stgraph serve --workers N`` builds its app so)."""
    import os
    return app_from_settings(json.loads(os.environ["STGRAPH_SERVE"]))


def _guards(app: FastAPI, token: str | None, max_body: int) -> None:
    """Error handlers (JSON, never a traceback), the body size limit and the Bearer token."""

    @app.exception_handler(RequestError)
    async def request_error(request, e: RequestError):
        return _error(e.status, e.field, e.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        return JSONResponse({"detail": json.loads(json.dumps(e.errors(), default=str))}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request, e: Exception):
        log.exception(f"{request.method} {request.url.path} failed")
        return JSONResponse({"detail": [{"loc": [], "msg": f"internal error ({type(e).__name__}); see the server's "
                                                          f"log", "type": "internal"}]}, status_code=500)

    @app.middleware("http")
    async def limits(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return _error(413, "body", f"{length} bytes; the limit is {max_body} bytes", "too_large")
        path = request.url.path
        if token is not None and path not in OPEN_PATHS and not path.startswith("/static/"):
            given = request.headers.get("authorization", "")
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
                return JSONResponse({"detail": [{"loc": ["header", "Authorization"], "msg": "missing or wrong "
                                                 "token: send 'Authorization: Bearer <token>'", "type": "auth"}]},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)


def _routes(app: FastAPI, engine: Engine, batcher: MicroBatcher, max_body: int) -> None:
    @app.post("/forecast", response_model=ForecastAnswer, responses=ERRORS, openapi_extra=_body_doc())
    async def forecast(request: Request):
        body = bytearray()
        async for chunk in request.stream():  # a body without Content-Length is cut off at the limit too
            body += chunk
            if len(body) > max_body:
                raise RequestError("body", f"over {max_body} bytes (the limit)", 413)
        body = bytes(body)
        series, covariates = _parse(engine, request.headers.get("content-type", ""), body)
        x, cov, future, issued = engine.window(series, covariates=covariates)
        return _json(engine.answer(await batcher.submit(x, cov), future, issued))

    @app.get("/forecast/latest", response_model=ForecastAnswer, responses=ERRORS)
    async def latest(at: str | None = Query(None, description="last input step (default the newest)")):
        series = await _in_thread(batcher, engine.series_now)
        x, cov, future, issued = engine.window(series, at)
        answer = engine.answer(await batcher.submit(x, cov), future, issued)
        answer.update(engine.context(series, issued))
        return _json(answer)

    @app.get("/explain", responses=ERRORS)
    async def explain(sensor: str = Query(..., description="sensor id"),
                      step: int = Query(..., ge=1, description="horizon step, 1 .. horizon"),
                      at: str | None = Query(None, description="last input step (default the newest)"),
                      alphas: int = Query(32, ge=2, le=256, description="integrated-gradient steps")):
        from ..explain import explain as explain_one
        series = await _in_thread(batcher, engine.series_now)
        return _json(await _in_thread(batcher, explain_one, engine.run, series, sensor=sensor, step=step, at=at,
                                      alphas=alphas))

    @app.get("/sensors")
    async def sensors():
        from .facts import drift_flags
        table = await _in_thread(batcher, engine.sensors)
        flagged = set(drift_flags(engine.run))
        for row in table["sensors"]:
            row["drift"] = row["id"] in flagged
        return _json(table)

    @app.get("/model")
    async def model():
        return _json(await _in_thread(batcher, engine.model))

    @app.get("/health", response_model=Health)
    async def health():
        return {"status": "ok", "model": engine.run.config.model.name, "sensors": len(engine.ids)}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")


async def _in_thread(batcher: MicroBatcher, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the forward thread (one model, one thread at a time)."""
    import functools
    return await asyncio.get_running_loop().run_in_executor(batcher._pool, functools.partial(fn, *args, **kwargs))


def _parse(engine: Engine, content_type: str, body: bytes):
    """``(series, covariates)`` of the request: CSV (``text/csv``; no covariates: ``None``) or JSON
    (:class:`ForecastRequest`; ``covariates`` ``{name: {timestamps, columns, values}}`` or ``None``)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv", "text/plain"):
        return engine.series_from_csv(body), None
    if kind not in ("application/json", ""):
        raise RequestError("body", f"Content-Type {kind!r}; send application/json or text/csv", 415)
    constants: list[_Constant] = []

    def constant(name):
        constants.append(_Constant(name))
        return constants[-1]

    try:
        payload = json.loads(body or b"null", parse_constant=constant)
    except json.JSONDecodeError as e:
        raise RequestError("body", f"not JSON ({e})") from None
    if constants:
        _refuse_constants(payload, constants[0])
    try:
        req = ForecastRequest.model_validate(payload)
    except ValidationError as e:
        err = e.errors()[0]
        field = _field(err["loc"])
        raise RequestError(field, f"{err['msg']} ({len(e.errors())} problem(s) in all)") from None
    covariates = None if req.covariates is None else {k: t.model_dump() for k, t in req.covariates.items()}
    return engine.series_from_json(req.timestamps, req.sensors, req.values), covariates


class _Constant:
    """A NaN / Infinity / -Infinity literal of a JSON body (refused, naming where it stands)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _refuse_constants(payload, first: _Constant) -> None:
    """Refuse a body holding NaN or infinity: ``covariates.<name>.values[i][j]`` where one stands in a covariate
    table, else ``values`` (the readings)."""
    tables = payload.get("covariates") if isinstance(payload, dict) else None
    for name, table in (tables.items() if isinstance(tables, dict) else ()):
        found = _constant_in(table.get("values") if isinstance(table, dict) else None)
        if found is not None:
            raise RequestError(f"covariates.{name}.values{found[1]}", f"{found[0].name} is not allowed; send null "
                                                                      f"for a missing value")
    raise RequestError("values", f"{first.name} is not allowed; send null for a missing reading")


def _constant_in(obj, path: str = ""):
    """``(constant, '[i][j]')`` of the first :class:`_Constant` in nested lists ``obj``, or ``None``."""
    if isinstance(obj, _Constant):
        return obj, path
    for i, v in enumerate(obj if isinstance(obj, list) else ()):
        found = _constant_in(v, f"{path}[{i}]")
        if found is not None:
            return found
    return None


def _field(loc) -> str:
    """A pydantic error location as a field name: ``('values', 'list[list[...]]', 3, 1)`` -> ``values[3][1]``,
    ``('covariates', 'rain', 'values', 0, 0)`` -> ``covariates.rain.values[0][0]``."""
    parts = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "CovariateTable",
                                                                            "ReportList")))]  # union members
    if not parts:
        return "body"
    return str(parts[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])


def _json(obj) -> Response:
    return Response(dumps(obj), media_type="application/json")


def _body_doc() -> dict:
    schema = _inline(ForecastRequest.model_json_schema())  # the covariate table in place: no $defs in /docs
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "text/csv": {"schema": {"type": "string", "description": "a timestamp column, then one column per sensor "
                                                                 "(the layout stgraph reads)"}}}}}


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its ``$defs`` references replaced by the definitions."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            return walk(defs[ref.rsplit("/", 1)[-1]]) if ref.startswith("#/$defs/") else \
                {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node
    return walk(schema)
