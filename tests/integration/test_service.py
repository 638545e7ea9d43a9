"""The HTTP service: TestClient for the API and its limits, a real uvicorn process, the page."""

import base64
import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from simclr_ad.predictor import open_predictor
from simclr_ad.service.app import create_app
from simclr_ad.service.uploads import UploadLimits
from tests.browser import CHROMIUM_ARGS, require_chromium


@pytest.fixture(scope="module")
def client(tiny_model: Path) -> Iterator[TestClient]:
    import torch

    predictor = open_predictor(tiny_model, torch.device("cpu"))
    limits = UploadLimits(max_bytes=200_000, max_pixels=1_000_000)
    with TestClient(create_app(predictor, limits=limits, max_batch=4)) as test_client:
        yield test_client


def _png(path: Path) -> bytes:
    return path.read_bytes()


def _huge_declared_png(width: int, height: int) -> bytes:
    """A small valid-looking PNG whose header declares width × height pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 120, 120)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])  # size, depth, colour, ...
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_health_model_and_docs(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    model = client.get("/v1/model").json()
    assert model["categories"] == ["bolt", "fabric"]
    assert model["preprocessing"]["image_size"] == 32 and "thresholds" in model["detector"]
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="verdict"' in page.text


def test_openapi_lists_the_refusals_the_endpoints_give(tiny_model: Path) -> None:
    import torch

    predictor = open_predictor(tiny_model, torch.device("cpu"))
    limits = UploadLimits(max_bytes=200_000, max_pixels=1_000_000)
    for api_key, key in ((None, set()), ("k", {"401"})):
        paths = create_app(predictor, limits=limits, api_key=api_key).openapi()["paths"]
        predict = paths["/v1/predict"]["post"]["responses"]
        assert set(predict) == {"200", "400", "413", "415", "422", "503"} | key
        assert "200000 bytes" in predict["413"]["description"]
        assert "1000000 pixels" in predict["413"]["description"]
        assert set(paths["/v1/model"]["get"]["responses"]) == {"200"} | key
        assert set(paths["/health"]["get"]["responses"]) == {"200"}
        schemas = create_app(predictor, api_key=api_key).openapi()["components"]["schemas"]
        assert schemas["ErrorResponse"]["required"] == ["detail"]


def test_docs_page_is_drawn_here_without_other_hosts(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text and "<script" not in page.text
    for status in ("400", "413", "415", "422", "503"):
        assert f"<td>{status}</td>" in page.text
    assert "<code>/v1/predict</code>" in page.text and 'href="openapi.json"' in page.text
    assert client.get("/redoc").status_code == 404  # ReDoc, from a CDN too, is not served


def test_predict_gives_a_verdict_and_heatmap(client: TestClient, tiny_data: Path) -> None:
    image = _png(tiny_data / "fabric" / "test" / "hole" / "000.png")
    files = {"image": ("000.png", image, "image/png")}
    response = client.post("/v1/predict", files=files, data={"category": "fabric"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["category"] == "fabric" and "heatmap_png" not in body
    assert body["normalized_score"] == pytest.approx(body["score"] / body["threshold"])
    assert body["is_anomalous"] == (body["score"] >= body["threshold"])
    assert body["latency_ms"] > 0
    response = client.post(
        "/v1/predict", files=files, data={"category": "fabric"}, params={"heatmap": "true"}
    )
    overlay = Image.open(io.BytesIO(base64.b64decode(response.json()["heatmap_png"])))
    assert overlay.format == "PNG" and overlay.size == (32, 32)
    assert response.json()["score"] == body["score"]


def test_concurrent_requests_are_batched_and_agree(client: TestClient, tiny_data: Path) -> None:
    paths = sorted((tiny_data / "bolt" / "test").rglob("*.png"))[:8]

    def score(path: Path) -> float:
        files = {"image": (path.name, path.read_bytes(), "image/png")}
        response = client.post("/v1/predict", files=files, data={"category": "bolt"})
        assert response.status_code == 200, response.text
        return float(response.json()["score"])

    alone = [score(p) for p in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(score, paths))
    assert together == pytest.approx(alone, rel=1e-5)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"just some text, not an image", 415, "not an image"),
        ("truncated", 422, "not a readable image"),
        (_huge_declared_png(2_000, 2_000), 413, "2000×2000 pixels exceeds the limit"),
        (_huge_declared_png(50_000, 50_000), 413, "decompression bomb"),
        (b"\0" * 300_000, 413, "larger than"),
        ("gif", 415, "format GIF not accepted"),
    ],
    ids=[
        "empty",
        "text",
        "truncated-png",
        "declared-4M-pixels",
        "declared-2.5G-pixels",
        "oversize",
        "gif",
    ],
)
def test_bad_uploads_get_4xx_json(
    client: TestClient, tiny_data: Path, payload: bytes | str, status: int, message: str
) -> None:
    good = _png(tiny_data / "fabric" / "test" / "good" / "000.png")
    if payload == "truncated":
        payload = good[: len(good) // 2]
    elif payload == "gif":
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="GIF")
        payload = buffer.getvalue()
    files = {"image": ("upload.png", payload, "image/png")}
    response = client.post("/v1/predict", files=files, data={"category": "fabric"})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_bad_requests_get_4xx_json(client: TestClient, tiny_data: Path) -> None:
    good = _png(tiny_data / "fabric" / "test" / "good" / "000.png")
    files = {"image": ("a.png", good, "image/png")}
    response = client.post("/v1/predict", files=files)  # two categories: one must be named
    assert response.status_code == 422 and "bolt, fabric" in response.json()["detail"]
    response = client.post("/v1/predict", files=files, data={"category": "screw"})
    assert response.status_code == 422 and "unknown category" in response.json()["detail"]
    assert client.post("/v1/predict", data={"category": "fabric"}).status_code == 422
    broken = client.post(
        "/v1/predict",
        content=b"--x\r\nnot multipart",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert 400 <= broken.status_code < 500


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    """``simclr-ad serve`` as a real uvicorn process on a free loopback port."""
    port = _free_port()
    command = [sys.executable, "-m", "simclr_ad", "serve", "--model", str(tiny_model)]
    command += ["--port", str(port), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"simclr-ad serve exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("simclr-ad serve did not answer /health within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_uvicorn_process(server: str, tiny_data: Path) -> None:
    image = (tiny_data / "bolt" / "test" / "good" / "000.png").read_bytes()
    files = {"image": ("000.png", image, "image/png")}
    response = httpx.post(f"{server}/v1/predict", files=files, data={"category": "bolt"})
    assert response.status_code == 200 and response.json()["category"] == "bolt"
    bad = httpx.post(f"{server}/v1/predict", files={"image": ("x.png", b"text", "image/png")})
    assert bad.status_code in (415, 422) and "detail" in bad.json()


@pytest.mark.browser
def test_page_in_headless_chromium(server: str, tiny_data: Path) -> None:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    image = tiny_data / "fabric" / "test" / "hole" / "000.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_selector("#category option[value=fabric]", state="attached")
            page.select_option("#category", "fabric")
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('verdict').textContent !== ''")
            verdict = page.text_content("#verdict")
            assert verdict in ("GOOD", "ANOMALOUS")
            assert page.get_attribute("#verdict", "data-category") == "fabric"
            page.wait_for_function("document.getElementById('heatmap').complete")
            width = page.evaluate("document.getElementById('heatmap').naturalWidth")
            assert width == 32
            assert page.text_content("#error") == ""
        finally:
            browser.close()
