"""Property tests (hypothesis): config values and CLI arguments are valid or a clear UserError;
the upload endpoint answers random bytes and random multipart shapes without a 500."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from simclr_ad.cli import build_parser, main
from simclr_ad.config import TrainConfig, build_config
from simclr_ad.errors import UserError

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(-5, 300), st.floats(-1, 2), st.text(max_size=8)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _one_line_user_error(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(FIELDS), "epoch", "lr_"]), ANY_VALUE, max_size=4))
def test_config_values_are_valid_or_a_user_error(values: dict[str, object]) -> None:
    _one_line_user_error(lambda: build_config(values))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(k for k in FIELDS if k not in ("data", "out", "categories"))),
    st.text(max_size=12),
)
def test_config_text_from_a_flag_is_valid_or_a_user_error(key: str, text: str) -> None:
    """Any string a user may put in a YAML file for any key."""
    _one_line_user_error(lambda: build_config({key: text}))


FLAGS = ["--epochs", "--batch-size", "--image-size", "--lr", "--temperature", "--val-fraction",
         "--device", "--seed", "--checkpoint-every", "--augment", "--scorers", "--primary",
         "--target-fpr", "--coreset-ratio", "--knn-k", "--photometric", "--patch-stages",
         "--score-rule", "--backbone"]  # fmt: skip


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flags=st.lists(st.tuples(st.sampled_from(FLAGS), st.text(max_size=10)), max_size=3))
def test_train_arguments_give_a_config_or_one_line(
    flags: list[tuple[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parse and build the config exactly as ``train`` does, without training."""
    from simclr_ad.train_flags import config_overrides

    argv = ["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path)]
    argv += [part for flag, value in flags for part in (flag, value)]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: usage line, exit code 2
        assert exit_.code == 2
        assert "Traceback" not in capsys.readouterr().err
        return
    _one_line_user_error(lambda: build_config(**config_overrides(args)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(["evaluate", "predict", "export", "report", "serve", "train"]),
    extra=st.lists(st.text(alphabet="abc-_./:0123456789 ", max_size=12), max_size=4),
)
def test_cli_commands_end_with_an_exit_code(
    command: str, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random arguments to any command: an exit code (argparse or ours), never a traceback."""
    missing = str(tmp_path / "missing")
    required = {
        "evaluate": ["--model", missing, "--data", missing, "--out", missing],
        "predict": ["--model", missing, missing],
        "export": ["--model", missing, "--out", missing],
        "report": ["--eval", missing],
        "serve": ["--model", missing, "--port", "1"],
        "train": ["--out", missing, "--data", missing],
    }[command]
    try:
        code = main([command, *required, *extra])
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


# --- the upload endpoint --------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_fabric_model: Path) -> Iterator[TestClient]:
    from simclr_ad.predictor import open_predictor
    from simclr_ad.service.app import create_app
    from simclr_ad.service.uploads import UploadLimits

    predictor = open_predictor(tiny_fabric_model, torch.device("cpu"))
    limits = UploadLimits(max_bytes=100_000, max_pixels=1_000_000)
    with TestClient(create_app(predictor, limits=limits, max_batch=4)) as test_client:
        yield test_client


def _png_prefix(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 20, 200)).save(buffer, format="PNG")
    valid = buffer.getvalue()
    return valid[: len(data) % len(valid)] + data  # a real header followed by noise


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(st.binary(max_size=2_000), st.binary(max_size=300).map(_png_prefix)),
    field=st.sampled_from(["image", "file", "", "image[]"]),
    filename=st.text(max_size=30),
    content_type=st.sampled_from(["image/png", "application/octet-stream", "", "text/plain"]),
    category=st.one_of(st.none(), st.text(max_size=20), st.just("fabric")),
    heatmap=st.sampled_from([None, "true", "false", "maybe", ""]),
)
def test_upload_fuzz_never_500(
    client: TestClient,
    payload: bytes,
    field: str,
    filename: str,
    content_type: str,
    category: str | None,
    heatmap: str | None,
) -> None:
    files = {field: (filename, payload, content_type)}
    data = {} if category is None else {"category": category}
    params = {} if heatmap is None else {"heatmap": heatmap}
    response = client.post("/v1/predict", files=files, data=data, params=params)
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=1_000),
    content_type=st.sampled_from(
        [
            "multipart/form-data",
            "multipart/form-data; boundary=xyz",
            "application/json",
            "multipart/form-data; boundary=",
            "text/plain",
            "",
        ]
    ),
)
def test_raw_bodies_never_500(client: TestClient, body: bytes, content_type: str) -> None:
    """Broken multipart framing: missing or wrong boundaries, no parts, garbage."""
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code < 500, response.text
