"""The prediction service: `kiln serve` (or `python -m serve`), a FastAPI app for the champion.

    POST /predict   a batch of instances (one instance = a batch of one) -> predictions
    GET  /health    liveness + the version being served
    GET  /model     version, data version, metrics, label set, input size, limits
    GET  /docs      OpenAPI (the schemas of serve/schemas.py) in Swagger UI; /redoc in ReDoc;
                    both work offline (their scripts come with the fastapi-offline package)

Safety: the app loads only registry files whose sha256 matches the recorded one (never pickle);
no request field is a path (`model` is `champion` or a version name, by pattern); bodies over
`serve.max_body_bytes` get 413 whether or not they declare a Content-Length (BodyLimit counts
the bytes as they arrive); every bad input is a 4xx whose `detail[].loc` is the field's path.

Reload: a background task stats registry/registry.json every `serve.reload_interval_s`; when the
champion changes it loads the new version in a worker thread and swaps one reference, so requests
in flight finish on the model they started with and none is dropped. A new champion that fails
its checks is not swapped in; the old one keeps serving and /health shows the error.
No torch import on the ONNX backend (the default).
"""

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.backends import LoadedModel, load_champion, load_version
from serve.inputs import InputError
from serve.schemas import task_spec
from tasks.core import registry
from tasks.core.params import ServeParams

logger = logging.getLogger("kiln.serve")
# OpenAPI for a raw-bytes body (FastAPI documents JSON bodies only by itself).
_PNG_BODY = {
    "requestBody": {
        "required": True,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class BodyLimit:
    """ASGI middleware: read at most `limit` body bytes, then replay them to the app, or 413."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _error(send, 400, "invalid Content-Length", "header")
            if int(declared) > self.limit:
                return await _error(send, 413, f"body over {self.limit} bytes", "body")
        chunks, size = [], 0
        while True:  # chunked bodies have no Content-Length: count what arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await _error(send, 413, f"body over {self.limit} bytes", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _error(send: Any, status: int, msg: str, where: str) -> None:
    body = json.dumps({"detail": [{"loc": [where], "msg": msg, "type": "request"}]}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ModelState:
    """The served champion and a few other versions asked for by name; swaps on promotion."""

    def __init__(self, root: Path, settings: ServeParams) -> None:
        self.root, self.settings = root, settings
        self.current = load_champion(root, settings.backend, settings.onnx_threads)
        self.others: dict[str, LoadedModel] = {}  # versions named in requests, at most 4
        self._others_lock = threading.Lock()
        self.reload_error: str | None = None
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.root / registry.REGISTRY_FILE)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> None:
        """Swap in a new champion if the registry names one (runs in a worker thread)."""
        signature = self._signature()
        if signature == self._seen:
            return
        self._seen = signature
        try:
            current = registry.champion(self.root)
            if current is None or current[0] == self.current.version:
                self.reload_error = None  # a registry repaired back to what is served
                return
            new = load_version(
                self.root, current[0], self.settings.backend, self.settings.onnx_threads
            )
            if new.task != self.current.task:
                raise registry.RegistryError(
                    f"{new.version} is a {new.task} model; this server "
                    f"serves {self.current.task}: restart it"
                )
        except registry.RegistryError as exc:
            self.reload_error = str(exc)
            logger.error("new champion not loaded, still serving %s: %s", self.current.version, exc)
            return
        old, self.current, self.reload_error = self.current, new, None  # one atomic swap
        logger.info("now serving %s (was %s)", new.version, old.version)

    def pick(self, name: str) -> LoadedModel:
        current = self.current  # read once: a concurrent swap cannot split a request
        if name in ("champion", current.version):
            return current
        with self._others_lock:  # requests run in a thread pool
            return self.others.get(name) or self._load_other(name, current.task)

    def _load_other(self, name: str, task: str) -> LoadedModel:
        try:
            loaded = load_version(
                self.root, name, self.settings.backend, self.settings.onnx_threads
            )
        except registry.RegistryError as exc:  # the reason names server paths: logged, not sent
            logger.warning("request for model %r: %s", name, exc)
            raise ModelNotFound(f"no servable version {name!r} in the registry") from None
        if loaded.task != task:
            raise ModelNotFound(f"{name} is a {loaded.task} model, not {task}")
        while len(self.others) >= 4:  # oldest first: dicts keep insertion order
            self.others.pop(next(iter(self.others)))
        self.others[name] = loaded
        return loaded


class ModelNotFound(LookupError):
    """The `model` field names a version that is not in the registry or cannot be served."""


def _json_body(request: Request) -> None:
    """415, not 422, for a /predict body that is not JSON (checked before the body is read)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        detail = [{"loc": ["header", "content-type"], "type": "value_error",
                   "msg": f"expected application/json, got {media_type or 'nothing'!r}"}]
        raise HTTPException(status_code=415, detail=detail)


def _detail(errors: list[dict]) -> list[dict]:
    """Validation errors without the echoed input (a body can be a megabyte), at most 20."""
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:20]]


def create_app(
    root: Path | str = registry.REGISTRY_DIR, settings: ServeParams | None = None
) -> FastAPI:
    """The app for the registry at `root`; raises RegistryError if no champion loads."""
    settings = settings or ServeParams()
    state = ModelState(Path(root), settings)
    spec = task_spec(state.current.task)
    request_model = spec.request(settings.max_batch)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def watch() -> None:
            while True:
                await asyncio.sleep(settings.reload_interval_s)
                try:
                    await asyncio.to_thread(state.refresh)
                except Exception as exc:  # noqa: BLE001 (the watcher must outlive any one fault)
                    state.reload_error = f"{type(exc).__name__}: {exc}"
                    logger.exception("reload failed, still serving %s", state.current.version)

        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()

    # /docs and /redoc from Swagger UI and ReDoc files that fastapi-offline ships in its wheel
    # (served under /static-offline-docs): FastAPI's own pages load them from a CDN
    app = FastAPIOffline(
        title="Kiln model server",
        version="1",
        lifespan=lifespan,
        description="Predictions from the Kiln registry's champion.",
    )
    app.state.models = state

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _detail(list(exc.errors()))}, status_code=422)

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        detail = [{"loc": list(exc.loc), "msg": exc.msg, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's answer to a body json cannot read (nested too deep, an integer of thousands of
        # digits, bytes that are not UTF-8) is a bare string; give it the shape of every 4xx here
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            msg = ("the body is not JSON this server can read (too deeply nested, a number too "
                   "long, or not UTF-8)")
            return JSONResponse({"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]},
                                status_code=400)
        return await http_exception_handler(request, exc)

    @app.exception_handler(ModelNotFound)
    async def no_model(_request: Request, exc: ModelNotFound) -> JSONResponse:
        detail = [{"loc": ["body", "model"], "msg": str(exc), "type": "not_found"}]
        return JSONResponse({"detail": detail}, status_code=404)

    @app.post("/predict", response_model=spec.response, dependencies=[Depends(_json_body)])
    def predict(body: request_model) -> Any:  # type: ignore[valid-type]  # sync: a worker thread
        loaded = state.pick(body.model)
        result = spec.predict(body, loaded)
        # Built by our own schema already: a Response skips FastAPI's second validation of it
        # (~0.25 ms per batch of 64), response_model still documents it in OpenAPI.
        return Response(result.model_dump_json(), media_type="application/json")

    if spec.predict_png is not None:

        @app.post("/predict/image", response_model=spec.response, openapi_extra=_PNG_BODY)
        async def predict_image(request: Request) -> Any:
            """One image sent as the raw PNG body (`Content-Type: image/png`), for the champion."""
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "image/png":
                detail = [
                    {
                        "loc": ["header", "content-type"],
                        "type": "value_error",
                        "msg": f"expected image/png, got {media_type or 'nothing'!r}",
                    }
                ]
                return JSONResponse({"detail": detail}, status_code=415)
            raw = await request.body()  # BodyLimit has already bounded its size
            result = await asyncio.to_thread(spec.predict_png, raw, state.current)
            return Response(result.model_dump_json(), media_type="application/json")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_version": state.current.version,
            "reload_error": state.reload_error,
        }

    @app.get("/model")
    def model() -> dict[str, Any]:
        current = state.current
        entry = current.entry
        return {
            "version": current.version,
            "task": current.task,
            "backend": current.backend,
            "data_version": entry.get("data_version"),
            "metrics": entry.get("metrics"),
            "labels": current.labels,
            "created_at": entry.get("created_at"),
            "git_rev": entry.get("git_rev"),
            "forced": entry.get("forced", False),
            "input": {
                **current.input_spec,
                "max_batch": settings.max_batch,
                "max_body_bytes": settings.max_body_bytes,
            },
        }

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
