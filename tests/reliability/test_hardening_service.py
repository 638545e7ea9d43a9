"""Issue 16, the service: chunked uploads, /v1/model, non-ASCII keys, model failures, workers.

Each test failed before its fix: a chunked upload without Content-Length was read whole before
the 413, /v1/model showed the data and run paths, a non-ASCII key never matched a UTF-8 client,
a model failure was a plain-text 500, and ``serve --workers 2`` loaded an idle model in the
parent process.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from torch import Tensor

from simclr_ad.errors import UserError
from simclr_ad.predictor import OperatingPoint, Prediction, Predictor
from simclr_ad.service import server
from simclr_ad.service.app import (
    API_KEY_ENV,
    BATCH_ENV,
    DEVICE_ENV,
    MAX_BYTES_ENV,
    MODEL_ENV,
    create_app,
)
from simclr_ad.service.uploads import UploadLimits

BOUNDARY = "x-boundary"


class _Stub(Predictor):
    """A one-category predictor at 16 px: scores 1.0 under threshold 2.0, or raises ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.image_size, self.categories, self.metadata = 16, ["part"], {}
        self.error = error

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        if self.error is not None:
            raise self.error
        return [Prediction(category, 1.0, 0.5, 2.0, False) for _ in range(pixels.shape[0])]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, format="PNG")
    return buffer.getvalue()


def _multipart(payload: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + payload + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post_chunked(app: FastAPI, chunks: Iterator[bytes]) -> tuple[int, dict[str, Any], int]:
    """POST /v1/predict as uvicorn passes a chunked body (no Content-Length) to the app.

    Returns the status, the JSON answer and how many chunks the app pulled.
    """
    pulled, answer = 0, {"status": 0, "body": b""}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")  # type: ignore[operator]

    asyncio.run(app(scope, receive, send))
    return int(answer["status"]), json.loads(answer["body"]), pulled  # type: ignore[arg-type]


def test_chunked_upload_without_length_stops_at_the_limit() -> None:
    app = create_app(_Stub(), limits=UploadLimits(max_bytes=1000))  # body limit 1000 + 64 KiB
    chunk = b"\x00" * 65536
    head = _multipart(b"").split(b"\r\n\r\n")[0] + b"\r\n\r\n"  # the part's headers
    chunks = iter([head, *([chunk] * 2000)])  # 125 MiB of image data if read to the end
    status, body, pulled = _post_chunked(app, chunks)
    assert status == 413 and "request body larger than" in body["detail"]
    assert pulled <= 3  # stopped at the limit, not after spooling 125 MiB to a temporary file


def test_chunked_upload_under_the_limit_is_scored() -> None:
    app = create_app(_Stub(), limits=UploadLimits(max_bytes=100_000))
    data = _multipart(_png())
    status, body, pulled = _post_chunked(app, iter([data[:50], data[50:200], data[200:]]))
    assert status == 200 and body["score"] == 1.0 and pulled == 3


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    app = create_app(_Stub(), limits=UploadLimits(max_bytes=1000))
    with TestClient(app) as client:
        response = client.post(
            "/v1/predict", files={"image": ("a.png", b"\x00" * 200_000, "image/png")}
        )
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_model_description_shows_no_server_paths(tiny_fabric_model: Path, tiny_data: Path) -> None:
    from simclr_ad.predictor import open_predictor

    predictor = open_predictor(tiny_fabric_model, torch.device("cpu"))
    with TestClient(create_app(predictor)) as client:
        model = client.get("/v1/model").json()
    texts = list(_strings(model))
    assert not [t for t in texts if "/" in t or str(tiny_data.name) in t], texts
    assert "training" not in model and "config" not in json.dumps(model)
    threshold = predictor.calibration("fabric").threshold  # type: ignore[attr-defined]
    assert model["categories"] == ["fabric"] and model["image_size"] == 32
    assert model["detector"]["thresholds"] == {"fabric": pytest.approx(threshold)}
    assert model["detector"]["target_fpr"] == predictor.metadata["decision"]["target_fpr"]
    assert model["model"]["tensors_sha256"] == predictor.metadata["tensors_sha256"]
    assert model["model"]["architecture"]["backbone"] == "resnet18"
    assert model["versions"]["simclr_ad"] and model["preprocessing"]["image_size"] == 32


def test_onnx_model_description_shows_its_one_threshold() -> None:
    from simclr_ad.service.description import describe_model

    stub = _Stub()
    stub.metadata = {
        "format": 1,
        "category": "part",
        "image_size": 16,
        "scorer": "patch",
        "threshold": 2.0,
        "calibration": {"threshold": 2.0, "target_fpr": 0.01},
        "bundle_tensors_sha256": "ab" * 32,
        "versions": {"simclr_ad": "0.1.0"},
    }
    described = describe_model(stub)
    assert described["kind"] == "onnx" and described["categories"] == ["part"]
    assert described["detector"] == {
        "primary_scorer": "patch",
        "target_fpr": 0.01,
        "thresholds": {"part": 2.0},
        "threshold_source": "calibrated",
    }
    assert described["model"]["bundle_tensors_sha256"] == "ab" * 32


NON_ASCII_KEY = "clé-ünïcødé-€"


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [
        ("X-API-Key", NON_ASCII_KEY.encode("utf-8"), 200),  # what curl and browsers send
        ("Authorization", b"Bearer " + NON_ASCII_KEY.encode("utf-8"), 200),
        ("X-API-Key", "clé".encode("latin-1"), 401),  # other bytes, other key
        ("X-API-Key", NON_ASCII_KEY.encode("utf-8")[:-1], 401),
    ],
    ids=["utf8-header", "utf8-bearer", "latin1-prefix", "truncated"],
)
def test_non_ascii_api_key_matches_its_utf8_bytes(header: str, value: bytes, status: int) -> None:
    with TestClient(create_app(_Stub(), api_key=NON_ASCII_KEY)) as client:
        response = client.get("/v1/model", headers={header: value})  # type: ignore[dict-item]
    assert response.status_code == status


def test_model_failure_is_a_json_503_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    failing = _Stub(ValueError("cannot normalise by a threshold <= 0"))
    files = {"image": ("a.png", _png(), "image/png")}
    with (
        TestClient(create_app(failing), raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR),
    ):
        response = client.post("/v1/predict", files=files)
        again = client.post("/v1/predict", files=files, params={"heatmap": "true"})
    assert response.status_code == again.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert "cannot normalise by a threshold <= 0" in response.json()["detail"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info for r in errors)  # one per failed request


def test_heatmap_failure_is_a_json_503(monkeypatch: pytest.MonkeyPatch) -> None:
    from simclr_ad.service import app as app_module

    class _WithMap(_Stub):
        def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
            return [Prediction(category, 1.0, 0.5, 2.0, False, np.zeros((16, 16), np.float32))]

    def broken(*args: object) -> None:
        raise RuntimeError("no colour map")

    monkeypatch.setattr(app_module, "overlay", broken)
    with TestClient(create_app(_WithMap()), raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/predict",
            files={"image": ("a.png", _png(), "image/png")},
            params={"heatmap": "true"},
        )
    assert response.status_code == 503 and "no colour map" in response.json()["detail"]


class _Uvicorn:
    def __init__(self) -> None:
        self.calls: list[tuple[object, dict[str, object]]] = []

    def run(self, app: object, **kwargs: object) -> None:
        self.calls.append((app, kwargs))


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> _Uvicorn:
    import uvicorn

    fake = _Uvicorn()
    monkeypatch.setattr(uvicorn, "run", fake.run)
    monkeypatch.setattr(server, "check_port_free", lambda host, port: None)
    names = (MODEL_ENV, DEVICE_ENV, BATCH_ENV, MAX_BYTES_ENV, API_KEY_ENV, "SIMCLR_AD_WORKERS")
    for name in names:  # whatever serve sets is removed again after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return fake


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    from simclr_ad import predictor as predictor_module

    loads: list[Path] = []
    real = predictor_module.open_predictor

    def counting(
        path: Path, device: torch.device, point: OperatingPoint | None = None
    ) -> Predictor:
        loads.append(path)
        return real(path, device, point)

    monkeypatch.setattr(predictor_module, "open_predictor", counting)
    return loads


def test_workers_leave_the_model_to_the_workers(
    tiny_fabric_model: Path, no_uvicorn: _Uvicorn, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _count_loads(monkeypatch)
    server.serve(tiny_fabric_model.parent, workers=2, device="cpu")  # the run folder works too
    assert loads == []
    [(app, kwargs)] = no_uvicorn.calls
    assert app == "simclr_ad.service.app:app_from_environment" and kwargs["workers"] == 2
    server.serve(tiny_fabric_model, workers=1, device="cpu")
    assert loads == [tiny_fabric_model]


def test_workers_still_refuse_a_tampered_bundle_first(
    tiny_fabric_model: Path, tmp_path: Path, no_uvicorn: _Uvicorn
) -> None:
    import shutil

    bundle = tmp_path / "model"
    shutil.copytree(tiny_fabric_model, bundle)
    meta = json.loads((bundle / "model.json").read_text())
    meta["categories"] = ["fabric", "other"]
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="does not match its recorded hash"):
        server.serve(bundle, workers=3)
    with pytest.raises(UserError, match="does not exist"):
        server.serve(tmp_path / "missing.onnx", workers=3)
    assert no_uvicorn.calls == []
