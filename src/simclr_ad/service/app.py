"""The inspection service: FastAPI around a Predictor and a MicroBatcher.

``POST /v1/predict`` (multipart ``image``, optional form ``category``, query ``heatmap``),
``GET /health``, ``GET /v1/model``, ``GET /`` (the page), the OpenAPI schema at ``/openapi.json``
and drawn as a page at ``/docs`` (no CDN, so it reads offline). Bad requests get a 4xx JSON
``{"detail": ...}`` (413 for a body over the limit, declared or chunked), a model that fails on an
image a 503 JSON, never a plain-text 500; the schema lists each of these answers. With an API
key, every ``/v1/*`` request must carry it (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``;
the UTF-8 bytes of the key are compared, in constant time); ``/health``, the page and the docs
stay open. Request data never becomes a file path.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simclr_ad import __version__
from simclr_ad.errors import UserError
from simclr_ad.heatmap import overlay, png_bytes
from simclr_ad.predictor import Prediction, Predictor
from simclr_ad.service.batching import MicroBatcher
from simclr_ad.service.description import describe_model
from simclr_ad.service.docs import render_docs
from simclr_ad.service.uploads import UploadError, UploadLimits, decode_upload

MULTIPART_OVERHEAD = 64 * 1024  # room for the multipart headers around the image

log = logging.getLogger(__name__)


class PredictResponse(BaseModel):
    """The verdict on one uploaded image."""

    category: str
    score: float
    normalized_score: float
    threshold: float
    is_anomalous: bool
    latency_ms: float
    heatmap_png: str | None = None  # base64 PNG overlay, when heatmap=true


class ErrorResponse(BaseModel):
    """A refused request: why, in one line."""

    detail: str


class InvalidRequestResponse(BaseModel):
    """A 422: one line, or FastAPI's list of field errors when a form field is missing."""

    detail: str | list[dict[str, Any]]


def refusals(statuses: tuple[int, ...], limits: UploadLimits) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` for the refusals an endpoint can give, worded as the app's."""
    when = {
        400: "the upload is empty, or the multipart body cannot be parsed",
        401: "the API key is missing or wrong (send X-API-Key: KEY or Authorization: Bearer KEY)",
        413: f"the upload is over {limits.max_bytes} bytes, or its image header declares more than "
        f"{limits.max_pixels} pixels",
        415: "not an image, or not one of " + ", ".join(sorted(limits.formats)),
        422: "a damaged image, an unknown category, no category for a model with several, "
        "or no image field",
        503: "the model failed on this image",
    }
    return {
        status: {
            "model": InvalidRequestResponse if status == 422 else ErrorResponse,
            "description": when[status],
        }
        for status in statuses
    }


class _BodyTooLargeError(Exception):
    """Raised into the app's body reader when the request passes the limit."""


class _BodyLimit:
    """413 for a request body larger than ``max_body``, declared or not (chunked uploads).

    A declared ``Content-Length`` over the limit is refused before anything is read. Otherwise
    the bytes are counted as they arrive and reading stops at the limit, before the multipart
    parser spools more to disk; whatever the app answers to the aborted read is replaced by the
    413.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await self._refuse(scope, receive, send)
            return
        received, exceeded, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not exceeded:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = {"detail": f"request body larger than {self.max_body} bytes"}
        await JSONResponse(detail, status_code=413)(scope, receive, send)


class _ApiKey(BaseHTTPMiddleware):
    """401 for a ``/v1/*`` request without the API key; the comparison takes constant time."""

    def __init__(self, app: Any, key: str) -> None:
        super().__init__(app)
        self.key = key.encode("utf-8", "surrogateescape")  # the bytes given on the command line

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path.startswith("/v1/") and not self._authorised(request):
            return JSONResponse(
                {"detail": "missing or wrong API key (send the header X-API-Key)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    def _authorised(self, request: Request) -> bool:
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        # header values arrive decoded as latin-1: encoding them back gives the bytes sent, the
        # UTF-8 of a non-ASCII key from curl or a browser
        return hmac.compare_digest(given.encode("latin-1"), self.key)


def create_app(
    predictor: Predictor,
    *,
    limits: UploadLimits | None = None,
    max_batch: int = 8,
    api_key: str | None = None,
) -> FastAPI:
    """The service around ``predictor``; concurrent requests are micro-batched.

    Args:
        predictor: the model.
        limits: what uploads may be.
        max_batch: most requests per forward pass.
        api_key: when given, required on every ``/v1/*`` request.
    """
    limits = limits or UploadLimits()
    batcher = MicroBatcher(predictor, max_batch=max_batch)
    app = FastAPI(
        title="simclr-ad inspection service",
        version=__version__,
        description="Anomaly scores, verdicts and heatmaps for images of known categories.",
        docs_url=None,  # Swagger UI and ReDoc come from a CDN; /docs is drawn here instead
        redoc_url=None,
    )
    app.add_middleware(_BodyLimit, max_body=limits.max_bytes + MULTIPART_OVERHEAD)
    if api_key:
        app.add_middleware(_ApiKey, key=api_key)  # added last, so it runs first
    app.state.batcher = batcher
    page = resources.files("simclr_ad.service").joinpath("static/index.html").read_text()

    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    key = (401,) if api_key else ()

    @app.get("/health")
    def health() -> dict[str, str]:
        """Answers while the process runs; needs no API key."""
        return {"status": "ok"}

    description = describe_model(predictor)

    @app.get("/v1/model", responses=refusals(key, limits))
    def model() -> dict[str, Any]:
        """Categories, image size, thresholds, target FPR, the model's identity and versions."""
        return description

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return render_docs(app.openapi())

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=refusals((400, *key, 413, 415, 422, 503), limits),
    )
    def predict(
        image: Annotated[UploadFile, File(description="the image (PNG, JPEG, BMP, TIFF, WebP)")],
        category: Annotated[
            str | None, Form(description="required when the model has several categories")
        ] = None,
        heatmap: Annotated[bool, Query(description="include a base64 PNG overlay")] = False,
    ) -> PredictResponse:
        """The verdict on one image of the category: score, threshold and, if asked, a heatmap."""
        started = time.perf_counter()
        try:
            name = predictor.resolve_category(category)
        except UserError as exc:
            detail = str(exc).replace("--category", "category")
            raise HTTPException(status_code=422, detail=detail) from None
        data = image.file.read(limits.max_bytes + 1)
        rgb = decode_upload(data, predictor.input_shape(name), limits)
        prediction, encoded = _verdict(batcher, rgb, name, heatmap=heatmap)
        return PredictResponse(
            category=name,
            score=prediction.score,
            normalized_score=prediction.normalized_score,
            threshold=prediction.threshold,
            is_anomalous=prediction.is_anomalous,
            latency_ms=round((time.perf_counter() - started) * 1000.0, 2),
            heatmap_png=encoded,
        )

    return app


def _verdict(
    batcher: MicroBatcher, rgb: np.ndarray, category: str, *, heatmap: bool
) -> tuple[Prediction, str | None]:
    """The prediction and, when asked, the base64 PNG overlay; a failure of the model is a 503
    with a JSON reason, logged once (the model thread logs its own failures)."""
    try:
        prediction = batcher.predict(rgb, category, maps=heatmap)
    except Exception as exc:
        raise _model_failure(exc) from None
    if not heatmap or prediction.anomaly_map is None:
        return prediction, None
    try:
        png = png_bytes(overlay(rgb, prediction.anomaly_map, prediction.threshold))
    except Exception as exc:
        log.exception("heatmap overlay failed")
        raise _model_failure(exc) from None
    return prediction, base64.b64encode(png).decode("ascii")


def _model_failure(exc: Exception) -> HTTPException:
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    detail = f"the model could not score this image ({type(exc).__name__}: {reason})"
    return HTTPException(status_code=503, detail=detail)


MODEL_ENV, DEVICE_ENV, BATCH_ENV = "SIMCLR_AD_MODEL", "SIMCLR_AD_DEVICE", "SIMCLR_AD_MAX_BATCH"
MAX_BYTES_ENV, API_KEY_ENV = "SIMCLR_AD_MAX_UPLOAD_BYTES", "SIMCLR_AD_API_KEY"
MAX_PIXELS_ENV = "SIMCLR_AD_MAX_PIXELS"
OPERATING_POINT_ENV = {"threshold": "SIMCLR_AD_THRESHOLD", "target_fpr": "SIMCLR_AD_TARGET_FPR"}


def app_from_environment() -> FastAPI:
    """The app for ``uvicorn --factory`` (one per worker process), configured by variables."""
    import torch

    from simclr_ad.devices import resolve_device
    from simclr_ad.predictor import OperatingPoint, open_predictor

    workers = max(1, int(os.environ.get("SIMCLR_AD_WORKERS", "1")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    device = resolve_device(os.environ.get(DEVICE_ENV, "auto"))
    point = {k: float(os.environ[v]) for k, v in OPERATING_POINT_ENV.items() if v in os.environ}
    predictor = open_predictor(Path(os.environ[MODEL_ENV]), device, OperatingPoint(**point))
    limits = UploadLimits(
        max_bytes=int(os.environ.get(MAX_BYTES_ENV, UploadLimits.max_bytes)),
        max_pixels=int(os.environ.get(MAX_PIXELS_ENV, UploadLimits.max_pixels)),
    )
    return create_app(
        predictor,
        limits=limits,
        max_batch=int(os.environ.get(BATCH_ENV, "8")),
        api_key=os.environ.get(API_KEY_ENV) or None,
    )
