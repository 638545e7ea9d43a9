"""The service's pages in headless Chromium: the inspection page (GET /) and /docs offline."""

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from simclr_ad.predictor import open_predictor
from simclr_ad.service.app import create_app
from tests.browser import CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def serve_model() -> Iterator[Callable[[Path], str]]:
    """Serve a model with uvicorn on a thread of this process; gives the URL."""
    import torch
    import uvicorn

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(model: Path) -> str:
        app = create_app(open_predictor(model, torch.device("cpu")), max_batch=4)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def parts(tiny_data: Path, tmp_path: Path) -> dict[str, Path]:
    """Images under names of their own, so the panel's file name tells them apart."""
    named = {
        "part-a.png": tiny_data / "fabric" / "test" / "hole" / "000.png",
        "part-b.png": tiny_data / "bolt" / "test" / "good" / "000.png",
    }
    for name, source in named.items():
        shutil.copyfile(source, tmp_path / name)
    (tmp_path / "notes.png").write_bytes(b"a text file, not an image")
    return {name.removesuffix(".png"): tmp_path / name for name in [*named, "notes.png"]}


class _Predicts:
    """Counts the page's POSTs to /v1/predict."""

    def __init__(self, page: Any) -> None:
        self.count = 0
        page.on("request", self._seen)

    def _seen(self, request: Any) -> None:
        if request.method == "POST" and request.url.split("?")[0].endswith("/v1/predict"):
            self.count += 1


def _scored(page: Any, action: Callable[[], None]) -> dict[str, str]:
    """Run ``action``, wait for the page's answer from /v1/predict, and read the result panel."""
    with page.expect_response(lambda r: "/v1/predict" in r.url):
        action()
    page.wait_for_selector("#result", state="visible")
    ids = ("result-file", "result-category", "verdict", "score")
    return {name: page.text_content(f"#{name}") or "" for name in ids}


def _api_score(url: str, image: Path, category: str) -> float:
    files = {"image": (image.name, image.read_bytes(), "image/png")}
    response = httpx.post(f"{url}/v1/predict", files=files, data={"category": category})
    assert response.status_code == 200, response.text
    return float(response.json()["score"])


def test_page_asks_for_the_category_and_rescores_every_change(
    serve_model: Callable[[Path], str], browser: Any, tiny_model: Path, parts: dict[str, Path]
) -> None:
    url = serve_model(tiny_model)
    page = browser.new_page()
    predicts = _Predicts(page)
    page.goto(url + "/")
    page.wait_for_selector("#category option[value=bolt]", state="attached")
    assert page.input_value("#category") == ""  # two categories: nothing chosen for the user

    page.set_input_files("#file", str(parts["part-a"]))
    page.wait_for_function("document.getElementById('status').textContent.includes('choose')")
    assert "choose a category to score part-a.png" in (page.text_content("#status") or "")
    assert predicts.count == 0 and page.is_hidden("#result")

    shown = _scored(page, lambda: page.select_option("#category", "fabric"))
    assert shown["result-file"] == "part-a.png" and shown["result-category"] == "fabric"
    assert float(shown["score"]) == pytest.approx(_api_score(url, parts["part-a"], "fabric"), 1e-4)

    shown = _scored(page, lambda: page.select_option("#category", "bolt"))
    assert shown["result-file"] == "part-a.png" and shown["result-category"] == "bolt"
    assert float(shown["score"]) == pytest.approx(_api_score(url, parts["part-a"], "bolt"), 1e-4)

    shown = _scored(page, lambda: page.set_input_files("#file", str(parts["part-b"])))
    assert shown["result-file"] == "part-b.png" and shown["result-category"] == "bolt"
    shown = _scored(page, lambda: page.set_input_files("#file", str(parts["part-b"])))
    assert shown["result-file"] == "part-b.png" and predicts.count == 4  # the same file again
    assert page.text_content("#error") == ""
    page.close()


def test_an_error_clears_the_previous_verdict(
    serve_model: Callable[[Path], str], browser: Any, tiny_model: Path, parts: dict[str, Path]
) -> None:
    page = browser.new_page()
    page.goto(serve_model(tiny_model) + "/")
    page.wait_for_selector("#category option[value=fabric]", state="attached")
    page.select_option("#category", "fabric")
    assert _scored(page, lambda: page.set_input_files("#file", str(parts["part-b"])))["verdict"]

    with page.expect_response(lambda r: "/v1/predict" in r.url) as answer:
        page.set_input_files("#file", str(parts["notes"]))
    assert answer.value.status == 415
    page.wait_for_function("document.getElementById('error').textContent !== ''")
    assert "notes.png" in (page.text_content("#error") or "")
    assert "not an image" in (page.text_content("#error") or "")
    assert page.is_hidden("#result")
    assert page.text_content("#verdict") == "" and page.text_content("#result-file") == ""
    page.close()


def test_page_preselects_the_only_category(
    serve_model: Callable[[Path], str],
    browser: Any,
    tiny_fabric_model: Path,
    parts: dict[str, Path],
) -> None:
    page = browser.new_page()
    page.goto(serve_model(tiny_fabric_model) + "/")
    page.wait_for_selector("#category option[value=fabric]", state="attached")
    assert page.input_value("#category") == "fabric"
    assert page.eval_on_selector_all("#category option", "options => options.length") == 1
    shown = _scored(page, lambda: page.set_input_files("#file", str(parts["part-a"])))
    assert shown["result-category"] == "fabric" and shown["result-file"] == "part-a.png"
    page.close()


def test_docs_read_with_other_hosts_blocked(
    serve_model: Callable[[Path], str], browser: Any, tiny_model: Path
) -> None:
    url = serve_model(tiny_model)
    page = browser.new_page()
    blocked: list[str] = []

    def only_this_host(route: Any) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(url).netloc:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_host)
    page.goto(url + "/docs", wait_until="networkidle")
    assert blocked == []
    text = page.inner_text("body")
    assert "simclr-ad inspection service" in text and "POST /v1/predict" in text
    for status in ("400", "413", "415", "422"):
        assert page.locator(f"#post-v1-predict td:text-is('{status}')").count() == 1
    assert page.locator("#schema-PredictResponse td:text-is('is_anomalous')").count() == 1
    with page.expect_response(lambda r: r.url.endswith("/openapi.json")) as schema:
        page.click("text=openapi.json")
    assert schema.value.status == 200
    page.close()
