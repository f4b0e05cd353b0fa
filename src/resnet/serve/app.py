"""The HTTP service: routes (our JSON API and the Open Inference Protocol v2), the guard, the server.

Starlette + uvicorn rather than FastAPI: the service needs the raw ASGI receive channel (to count body
bytes as they stream and put a deadline on them) far more than request models or generated docs, and
FastAPI is Starlette plus pydantic; fewer layers, fewer dependencies, same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resnet import __version__, report
from resnet.errors import ResNetError
from resnet.serve.batcher import Batcher, Closed, QueueFull
from resnet.serve.engine import EngineOptions, ServedModel, load_served_model, warm_up
from resnet.serve.limits import (
    Limits,
    RequestError,
    body_too_large,
    check_content_length,
    is_loopback,
    key_matches,
    read_api_key,
    request_key,
)
from resnet.serve.metrics import Metrics

# Probes a load balancer or kubelet sends without credentials; they reveal nothing.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# Bodies that are clearly not an image (curl --data-binary sends form-urlencoded, so that one passes).
REFUSED_CONTENT_TYPES = ("text/", "application/json")


@dataclass
class ServeSettings:
    checkpoint: str | None
    pretrained: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    name: str | None = None
    device: str | None = None
    unsafe: bool = False
    engine: EngineOptions = field(default_factory=EngineOptions)
    max_wait_ms: float = 5.0
    limits: Limits = field(default_factory=Limits)
    api_key_file: str | None = None
    decode_threads: int = 4

    def check(self) -> None:
        self.limits.check()
        if self.engine.max_batch < 1:
            raise ResNetError(f"--max-batch must be at least 1, got {self.engine.max_batch}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ResNetError(f"--max-wait-ms must be between 0 and 10000, got {self.max_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise ResNetError(f"--port must be between 0 and 65535, got {self.port}")
        if self.decode_threads < 1:
            raise ResNetError(f"--decode-threads must be at least 1, got {self.decode_threads}")
        if not is_loopback(self.host) and not self.api_key_file:
            raise ResNetError(f"--host {self.host} is reachable from other machines; give --api-key-file so "
                              "requests must carry the key (or bind 127.0.0.1)")


@dataclass
class ServerState:
    model: ServedModel
    settings: ServeSettings
    api_key: bytes | None
    metrics: Metrics
    decode_pool: ThreadPoolExecutor
    batcher: Batcher | None = None
    failure: str | None = None
    stop: Callable[[], None] = lambda: None


def error_response(exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "kind": exc.kind}, status_code=exc.status, headers=exc.headers)


# ---------------------------------------------------------------- the guard: key, body bounds, metrics


def endpoint_label(path: str) -> str:
    """A bounded set of metric labels: the route, never a client-chosen path."""
    if path.startswith("/v2/models/"):
        tail = path.rsplit("/", 1)[-1]
        return f"/v2/models/{{name}}/{tail}" if tail in ("infer", "ready") else "/v2/models/{name}"
    return path if path in KNOWN_PATHS else "other"


class Guard:
    """Pure ASGI middleware: the API key, the body-size and body-time bounds, request metrics.

    The body bounds live in ``receive`` itself, so every way an endpoint reads the body (raw,
    multipart, JSON) is bounded: more than ``max_body_bytes`` raises 413 as soon as it is exceeded,
    a body not complete within ``read_timeout_s`` of the request raises 408.
    """

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics, limits = self.state.metrics, self.state.settings.limits
        label = endpoint_label(scope["path"])
        start = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_progress.inc()
        try:
            refusal = self._refusal(scope, limits)
            if refusal is not None:
                metrics.errors.labels(refusal.kind).inc()
                await error_response(refusal)(scope, receive, send_counted)
                return
            await self.app(scope, self._bounded(receive, limits, start), send_counted)
        finally:
            metrics.in_progress.dec()
            metrics.requests.labels(label, str(status)).inc()
            metrics.latency.labels(label).observe(time.perf_counter() - start)

    def _refusal(self, scope: Scope, limits: Limits) -> RequestError | None:
        headers = dict(scope["headers"])
        key = self.state.api_key
        if key is not None and scope["path"] not in OPEN_PATHS and not key_matches(request_key(scope["headers"]), key):
            return RequestError(401, "unauthorized", "missing or wrong API key (send Authorization: Bearer KEY)",
                                {"WWW-Authenticate": "Bearer"})
        try:
            check_content_length(headers.get(b"content-length", b"").decode("latin-1") or None, limits.max_body_bytes)
        except RequestError as exc:
            return exc
        return None

    @staticmethod
    def _bounded(receive: Receive, limits: Limits, start: float) -> Receive:
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            remaining = start + limits.read_timeout_s - time.perf_counter()
            try:
                async with asyncio.timeout(max(remaining, 0.001)):  # no extra task per chunk, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise RequestError(408, "read_timeout", f"the request body did not arrive within "
                                   f"{limits.read_timeout_s:g} s", {"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_body_bytes:
                    raise body_too_large(limits.max_body_bytes)
            return message

        return bounded_receive


# ---------------------------------------------------------------- reading images from a request


def top_k_of(request: Request, num_classes: int) -> int:
    raw = request.query_params.get("top_k", "5")
    try:
        k = int(raw)
    except ValueError:
        raise RequestError(400, "bad_request", f"top_k must be an integer, got {raw!r}") from None
    if k < 1:
        raise RequestError(400, "bad_request", f"top_k must be at least 1, got {k}")
    return min(k, num_classes)


async def request_images(request: Request, max_images: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image: the multipart files, or the raw body as one image."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=max_images, max_fields=max_images)
        files = [(value.filename or key, await value.read()) for key, value in form.multi_items()
                 if isinstance(value, UploadFile)]
        await form.close()
        if not files:
            raise RequestError(400, "no_image", "the multipart body holds no file part")
        return files
    if content_type.startswith(REFUSED_CONTENT_TYPES):
        raise RequestError(415, "unsupported_media_type", f"Content-Type {content_type} is not an image; send the "
                           "image bytes (image/*, application/octet-stream) or multipart/form-data")
    return [("body", await request.body())]


def top_classes(probs: torch.Tensor, names: list[str], k: int) -> list[dict[str, Any]]:
    """The same entries ``resnet predict --json`` prints: class, index, probability."""
    values, indices = probs.topk(k)
    return [{"class": names[i], "index": i, "probability": float(v)} for v, i in zip(values.tolist(), indices.tolist())]


def submit(state: ServerState, images: list[torch.Tensor]) -> list[asyncio.Future[torch.Tensor]]:
    model = state.model
    if not model.ready or state.batcher is None:
        raise RequestError(503, "not_ready", "the model is still warming up; retry shortly (see /readyz)",
                           {"Retry-After": "1"})
    try:
        return state.batcher.submit(images)
    except QueueFull as exc:
        raise RequestError(503, "queue_full", f"the queue is full ({state.batcher.max_queue} images, --max-queue); "
                           f"retry after {exc.retry_after_s} s", {"Retry-After": str(exc.retry_after_s)}) from None
    except Closed:
        raise RequestError(503, "shutting_down", "the server is shutting down", {"Connection": "close"}) from None


def incoming(state: ServerState, n: int) -> contextlib.AbstractContextManager[None]:
    """Tell the batcher ``n`` images are on their way, so a forming batch waits for them."""
    return state.batcher.incoming(n) if state.batcher is not None else contextlib.nullcontext()


async def decode(state: ServerState, data: bytes) -> torch.Tensor:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(state.decode_pool, state.model.preprocess, data,
                                      state.settings.limits.max_image_pixels)


# ---------------------------------------------------------------- endpoints


def state_of(request: Request) -> ServerState:
    return request.app.state.serve


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = state_of(request)
    if state.model.ready and state.failure is None:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False, "error": state.failure}, status_code=503)


async def model_info(request: Request) -> Response:
    state = state_of(request)
    settings = state.settings
    info = state.model.describe()
    info["batching"] = {"max_batch": settings.engine.max_batch, "max_wait_ms": settings.max_wait_ms,
                        "max_queue": settings.limits.max_queue}
    return JSONResponse(info)


async def predict(request: Request) -> Response:
    state = state_of(request)
    k = top_k_of(request, len(state.model.class_names))
    images = await request_images(request, 1)
    if len(images) != 1:
        raise RequestError(400, "too_many_images", f"/v1/predict takes one image, got {len(images)}; "
                           "use /v1/predict/batch")
    with incoming(state, 1):
        try:
            image = await decode(state, images[0][1])
        except RequestError as exc:
            state.metrics.errors.labels(exc.kind).inc()
            raise
        (future,) = submit(state, [image])
    probs = await future
    return JSONResponse({"model": state.model.name, "predictions": top_classes(probs, state.model.class_names, k)})


async def predict_batch(request: Request) -> Response:
    """Several images (multipart); one bad image fails only its own entry."""
    state = state_of(request)
    k = top_k_of(request, len(state.model.class_names))
    limit = state.settings.limits.max_images
    images = await request_images(request, limit)
    if len(images) > limit:
        raise RequestError(400, "too_many_images", f"{len(images)} images exceed --max-images ({limit})")
    with incoming(state, len(images)):
        decoded = await asyncio.gather(*(decode(state, data) for _, data in images), return_exceptions=True)
        good = [i for i, d in enumerate(decoded) if isinstance(d, torch.Tensor)]
        for d in decoded:
            if isinstance(d, BaseException) and not isinstance(d, RequestError):
                raise d
        futures = submit(state, [decoded[i] for i in good]) if good else []
    results: list[dict[str, Any]] = []
    scored = dict(zip(good, futures))
    for i, ((name, _), d) in enumerate(zip(images, decoded)):
        if i in scored:
            probs = await scored[i]
            results.append({"image": name, "predictions": top_classes(probs, state.model.class_names, k)})
        else:
            assert isinstance(d, RequestError)
            state.metrics.errors.labels(d.kind).inc()
            results.append({"image": name, "error": d.message, "kind": d.kind, "status": d.status})
    return JSONResponse({"model": state.model.name, "results": results})


async def metrics(request: Request) -> Response:
    state = state_of(request)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


# ---------------------------------------------------------------- Open Inference Protocol (KServe v2)

V2_DATATYPES = {"FP32": torch.float32, "FP64": torch.float64, "FP16": torch.float16, "UINT8": torch.uint8}


def v2_model(state: ServerState, request: Request) -> ServedModel:
    name = request.path_params["name"]
    if name != state.model.name:
        raise RequestError(404, "unknown_model", f"no model named {name!r}; this server serves {state.model.name!r}")
    return state.model


async def v2_server(request: Request) -> Response:
    return JSONResponse({"name": "resnet", "version": __version__, "extensions": []})


async def v2_live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def v2_ready(request: Request) -> Response:
    state = state_of(request)
    ready = state.model.ready and state.failure is None
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def v2_model_metadata(request: Request) -> Response:
    state = state_of(request)
    model = v2_model(state, request)
    return JSONResponse({
        "name": model.name, "versions": ["1"], "platform": "pytorch",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, model.in_chans, *model.image_size]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.class_names)]}],
        "parameters": {"classes": model.class_names, "mean": model.mean, "std": model.std,
                       "uint8_input": "UINT8 pixels (N, C, H, W) are normalized by the server"},
    })


async def v2_model_ready(request: Request) -> Response:
    state = state_of(request)
    model = v2_model(state, request)
    ready = model.ready and state.failure is None
    return JSONResponse({"name": model.name, "ready": ready}, status_code=200 if ready else 503)


def v2_input_tensor(body: Any, model: ServedModel, max_images: int) -> torch.Tensor:
    """The one input tensor of a v2 infer request as a model-ready float batch (N, C, H, W)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or len(body["inputs"]) != 1:
        raise RequestError(400, "bad_tensor", "the body must be a JSON object with exactly one entry in \"inputs\"")
    entry = body["inputs"][0]
    if not isinstance(entry, dict):
        raise RequestError(400, "bad_tensor", "inputs[0] must be an object with name, shape, datatype, data")
    datatype, shape, data = entry.get("datatype"), entry.get("shape"), entry.get("data")
    if datatype not in V2_DATATYPES:
        raise RequestError(400, "bad_tensor", f"inputs[0].datatype {datatype!r} is not one of {', '.join(V2_DATATYPES)}")
    expected = [model.in_chans, *model.image_size]
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(s, int) for s in shape)
            and shape[1:] == expected and 1 <= shape[0] <= max_images):
        raise RequestError(400, "bad_tensor", f"inputs[0].shape {shape} must be [N, {', '.join(map(str, expected))}] "
                           f"with 1 <= N <= {max_images}")
    try:
        tensor = torch.tensor(data, dtype=V2_DATATYPES[datatype])
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise RequestError(400, "bad_tensor", f"inputs[0].data is not a list of {datatype} numbers") from None
    if tensor.numel() != math.prod(shape):
        raise RequestError(400, "bad_tensor", f"inputs[0].data holds {tensor.numel()} values, shape {shape} needs "
                           f"{math.prod(shape)}")
    tensor = tensor.reshape(shape)
    if datatype == "UINT8":
        return model.normalizer(tensor)  # raw pixels: normalized exactly as a decoded image is
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise RequestError(400, "bad_tensor", "inputs[0].data holds NaN or infinite values")
    return tensor


async def v2_infer(request: Request) -> Response:
    state = state_of(request)
    model = v2_model(state, request)
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "bad_json", "the body is not valid JSON") from None
    batch = v2_input_tensor(body, model, state.settings.limits.max_images)
    futures = submit(state, list(batch.unbind(0)))
    probs = torch.stack([await f for f in futures])
    response: dict[str, Any] = {
        "model_name": model.name, "model_version": "1",
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape),
                     "data": probs.flatten().tolist()}],
    }
    if isinstance(body.get("id"), str):
        response["id"] = body["id"]
    return JSONResponse(response)


# ---------------------------------------------------------------- the application and the server

ROUTES = [
    Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
    Route("/v1/model", model_info), Route("/v1/predict", predict, methods=["POST"]),
    Route("/v1/predict/batch", predict_batch, methods=["POST"]),
    Route("/v2", v2_server), Route("/v2/health/live", v2_live), Route("/v2/health/ready", v2_ready),
    Route("/v2/models/{name}", v2_model_metadata), Route("/v2/models/{name}/ready", v2_model_ready),
    Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
]
KNOWN_PATHS = frozenset(r.path for r in ROUTES if "{" not in r.path)


async def on_request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    if exc.kind not in ("bad_image", "not_an_image", "decompression_bomb", "unsupported_format", "unsupported_mode"):
        state_of(request).metrics.errors.labels(exc.kind).inc()  # image errors are counted where they arise
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    state_of(request).metrics.errors.labels(kind).inc()
    return JSONResponse({"error": str(exc.detail), "kind": kind}, status_code=exc.status_code, headers=exc.headers)


def build_app(state: ServerState) -> Starlette:
    """The Starlette application serving ``state.model``; its lifespan runs the batcher and the warm-up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings = state.settings
        state.batcher = Batcher(state.model.score, max_batch=settings.engine.max_batch,
                                max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.limits.max_queue,
                                metrics=state.metrics)
        state.batcher.start()
        warming = asyncio.create_task(asyncio.to_thread(warm_up, state.model, settings.engine))
        warming.add_done_callback(lambda task: _warmed(state, task))
        try:
            yield
        finally:
            # uvicorn calls this after the requests in flight were answered (SIGTERM) or timed out.
            await state.batcher.close()
            state.decode_pool.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=ROUTES, lifespan=lifespan,
                    exception_handlers={RequestError: on_request_error, HTTPException: on_http_error})
    app.state.serve = state
    app.add_middleware(Guard, state=state)  # type: ignore[arg-type]
    return app


def _warmed(state: ServerState, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        report.info(f"serve: ready on http://{state.settings.host}:{state.settings.port}")
        return
    state.failure = str(exc) if isinstance(exc, ResNetError) else f"warm-up failed: {type(exc).__name__}: {exc}"
    report.warn(f"serve: {state.failure}; stopping")
    state.stop()


def serve(settings: ServeSettings) -> None:
    """Load the checkpoint, then serve it until SIGTERM/SIGINT (answering what is in flight first).

    Raises ``ResNetError`` for bad settings, an unusable checkpoint, or an engine that failed to warm up.
    """
    import uvicorn

    settings.check()
    api_key = read_api_key(settings.api_key_file) if settings.api_key_file else None
    # Pillow's decompression-bomb bound is process-wide; this process is the server.
    Image.MAX_IMAGE_PIXELS = settings.limits.max_image_pixels
    model = load_served_model(settings.checkpoint, pretrained=settings.pretrained, name=settings.name,
                              device=settings.device, unsafe=settings.unsafe)
    state = ServerState(model, settings, api_key, Metrics(settings.engine.max_batch),
                        ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="resnet-decode"))
    limits = settings.limits
    config = uvicorn.Config(
        build_app(state), host=settings.host, port=settings.port, log_level="warning", access_log=False,
        lifespan="on", http=_header_deadline_protocol(limits.read_timeout_s), timeout_keep_alive=5,
        timeout_graceful_shutdown=int(math.ceil(limits.shutdown_timeout_s)),
        # Connections beyond what the queue can use get uvicorn's own 503 instead of piling up.
        limit_concurrency=limits.max_queue + settings.engine.max_batch + 64,
        h11_max_incomplete_event_size=64 * 1024,
    )
    server = uvicorn.Server(config)
    state.stop = lambda: setattr(server, "should_exit", True)
    report.info(f"serve: {model.name} ({model.loaded.path}) on http://{settings.host}:{settings.port}, "
                f"warming up (GET /readyz says when ready)")
    # uvicorn re-raises the signal that stopped it once it has drained; a handler of ours turns that
    # into a normal return, so a SIGTERM'd server exits 0 after answering what was in flight.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; its log line said why
        raise ResNetError(f"cannot serve on {settings.host}:{settings.port} (address in use, or not allowed)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if state.failure:
        raise ResNetError(state.failure)
    report.info("serve: stopped")


def _header_deadline_protocol(timeout_s: float) -> type:
    """uvicorn's HTTP protocol (httptools where installed, as uvicorn's "auto" picks, else h11), plus a
    deadline for a new connection to send its request headers.

    uvicorn arms its keep-alive timer only after a response, so a client that connects and sends
    nothing (or trickles its headers) would hold the connection forever.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class HeaderDeadline(Base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.loop.call_later(timeout_s, self._drop_if_silent)

        def _drop_if_silent(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline

