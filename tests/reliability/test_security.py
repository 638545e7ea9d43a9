"""Security: loopback by default, the optional API key, no pickle, no request data in file paths."""

from __future__ import annotations

import builtins
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from simclr_ad.bundle import load_bundle
from simclr_ad.checkpoint import load_checkpoint
from simclr_ad.cli import build_parser, main
from simclr_ad.errors import UserError
from simclr_ad.service.server import is_loopback

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def client(tiny_fabric_model: Path) -> Iterator[TestClient]:
    from simclr_ad.predictor import open_predictor
    from simclr_ad.service.app import create_app

    predictor = open_predictor(tiny_fabric_model, torch.device("cpu"))
    with TestClient(create_app(predictor, max_batch=2, api_key=KEY)) as test_client:
        yield test_client


def _image(tiny_data: Path) -> dict[str, tuple[str, bytes, str]]:
    data = (tiny_data / "fabric" / "test" / "good" / "000.png").read_bytes()
    return {"image": ("part.png", data, "image/png")}


def test_serve_binds_to_loopback_by_default() -> None:
    args = build_parser().parse_args(["serve", "--model", "m"])
    assert args.host == "127.0.0.1" and is_loopback(args.host)
    assert not is_loopback("0.0.0.0") and is_loopback("::1") and is_loopback("localhost")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": KEY[:-1]}, 401),
        ({"Authorization": f"Basic {KEY}"}, 401),
        ({"X-API-Key": KEY}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 200),
    ],
    ids=["none", "wrong", "prefix", "basic", "header", "bearer"],
)
def test_api_key_guards_v1(
    client: TestClient, tiny_data: Path, headers: dict[str, str], status: int
) -> None:
    model = client.get("/v1/model", headers=headers)
    predict = client.post("/v1/predict", files=_image(tiny_data), headers=headers)
    assert model.status_code == predict.status_code == status
    if status == 401:
        assert predict.json() == model.json() and "API key" in model.json()["detail"]
    else:
        assert predict.json()["category"] == "fabric"


def test_health_and_page_stay_open(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert 'id="apikey"' in client.get("/").text


def test_api_key_is_compared_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    seen: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert client.get("/v1/model", headers={"X-API-Key": "guess"}).status_code == 401
    assert seen == [(b"guess", KEY.encode())]


def test_empty_api_key_is_refused(tiny_fabric_model: Path, capsys) -> None:
    assert main(["serve", "--model", str(tiny_fabric_model), "--api-key", " "]) == 2
    assert capsys.readouterr().err.strip() == "error: --api-key must not be empty"


def test_request_data_never_reaches_a_file_path(
    client: TestClient, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    original = builtins.open

    def spy(file: object, *args: object, **kwargs: object) -> object:
        opened.append(file)
        return original(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", spy)
    headers = {"X-API-Key": KEY}
    for category in ("../../../etc/passwd", "/etc/passwd", "fabric"):
        files = _image(tiny_data)
        files["image"] = ("../../evil.png", files["image"][1], "image/png")
        response = client.post(
            "/v1/predict", files=files, data={"category": category}, headers=headers
        )
        assert response.status_code == (200 if category == "fabric" else 422)
    assert opened == []


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_checkpoints_are_read_without_unpickling_objects(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"format": 1, "payload": _Evil()}, path)
    with pytest.raises(UserError, match="unreadable or corrupt"):
        load_checkpoint(path)
    assert "unpickled!" not in capsys.readouterr().out


def test_bundles_are_never_unpickled(tiny_fabric_model: Path, monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bundle must not be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_bundle(tiny_fabric_model).tensors
    assert not any(
        p.suffix in {".pt", ".pth", ".pkl", ".ckpt"} for p in tiny_fabric_model.iterdir()
    )


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from simclr_ad.service import server

    given: dict[str, object] = {}
    monkeypatch.setattr(server, "serve", lambda model, **kwargs: given.update(kwargs))
    monkeypatch.setenv("SIMCLR_AD_API_KEY", "from-env")
    assert main(["serve", "--model", "m"]) == 0
    assert given["api_key"] == "from-env" and given["host"] == "127.0.0.1"
    assert main(["serve", "--model", "m", "--api-key", "flag"]) == 0
    assert given["api_key"] == "flag"
