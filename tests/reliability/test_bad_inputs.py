"""The bad-input corpus through every entry point: train, evaluate, predict and the service.

Each entry point either uses a file (odd but valid images), skips it with a counted warning, or
refuses with one line on stderr and exit code 2, never a traceback or a 500.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from simclr_ad.cli import main
from simclr_ad.data.images import UnreadableImageError, display_path, read_rgb
from tests.conftest import TINY_TRAIN
from tests.reliability.corpus import IMAGE_CASES, UNREADABLE, Case, good_images, symlink_loops

CASE_IDS = [c.name for c in IMAGE_CASES]
N_GOOD_TRAIN = 100  # 5 unreadable of 111 files stays under the 5% that refuses a category


def _mask(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def build_corpus_dataset(root: Path) -> Path:
    """``part``: every corpus file among good ones, masks of the wrong size, non-binary and
    missing, symlink loops; ``notest``: a category without ``test/``."""
    train = root / "part" / "train" / "good"
    good_images(train, N_GOOD_TRAIN)
    for case in IMAGE_CASES:
        case.write(train)
    symlink_loops(train)
    test_good = root / "part" / "test" / "good"
    good_images(test_good, 4, seed=500)
    for case in IMAGE_CASES:
        if case.readable:
            case.write(test_good)
    crack = root / "part" / "test" / "crack"
    good_images(crack, 3, seed=900)
    wrong_size = np.zeros((17, 23), np.uint8)
    wrong_size[4:9, 5:12] = 255
    _mask(root / "part" / "ground_truth" / "crack" / "000_mask.png", wrong_size)
    gradient = np.tile(np.arange(40, dtype=np.uint8) * 6, (40, 1))  # 0..234, not binary
    _mask(root / "part" / "ground_truth" / "crack" / "001_mask.png", gradient)
    # 002 has no mask
    good_images(root / "notest" / "train" / "good", 20, seed=300)
    return root


def _run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m simclr_ad ...`` as a user would run it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "simclr_ad", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_corpus_dataset(tmp_path_factory.mktemp("corpus") / "data")


@pytest.fixture(scope="module")
def trained(
    corpus_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``simclr-ad train`` on the corpus: the run folder and the finished process."""
    run = tmp_path_factory.mktemp("corpus_run") / "run"
    argv = ["-q", "train", "--data", str(corpus_root), "--out", str(run), *TINY_TRAIN]
    proc = _run_cli(*argv, "--epochs", "0", "--scorers", "patch", "--coreset-ratio", "0.5")
    return run, proc


# --- the reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", IMAGE_CASES, ids=CASE_IDS)
def test_reader(case: Case, tmp_path: Path) -> None:
    path = case.write(tmp_path)
    if case.readable:
        pixels = read_rgb(path, 32)
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    else:
        with pytest.raises(UnreadableImageError) as info:
            read_rgb(path, 32)
        assert "\n" not in info.value.reason


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    case = next(c for c in IMAGE_CASES if c.name == "exif_rotated_jpeg")
    assert read_rgb(case.write(tmp_path)).shape == (48, 32, 3)  # stored 48 wide, shown 48 tall


# --- train ----------------------------------------------------------------------------------


def test_train_finishes_without_traceback(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    run, proc = trained
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["categories"] == ["notest", "part"]
    assert meta["training"]["n_skipped"] == len(UNREADABLE)
    n_part = N_GOOD_TRAIN + len(IMAGE_CASES)
    assert f"category part: skipped {len(UNREADABLE)} of {n_part} unreadable images" in proc.stderr


@pytest.mark.parametrize("case", IMAGE_CASES, ids=CASE_IDS)
def test_train_skips_or_uses(case: Case, trained: tuple[Path, subprocess.CompletedProcess]) -> None:
    _, proc = trained
    name = display_path(Path(os.fsdecode(case.filename)))
    warned = [line for line in proc.stderr.splitlines() if "skipping unreadable image" in line]
    assert any(name in line for line in warned) == (not case.readable)


def test_train_refuses_mostly_unreadable_category(tmp_path: Path, capsys) -> None:
    good = tmp_path / "d" / "part" / "train" / "good"
    good_images(good, 10)
    for case in UNREADABLE:
        case.write(good)
    argv = ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), *TINY_TRAIN]
    assert main([*argv, "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: category part: 5 of 15 images are unreadable")


# --- evaluate -------------------------------------------------------------------------------


def test_evaluate_corpus(
    trained: tuple[Path, subprocess.CompletedProcess], corpus_root: Path, tmp_path: Path
) -> None:
    run, _ = trained
    out = tmp_path / "eval"
    proc = _run_cli("-q", "evaluate", "--model", str(run / "model"), "--data", str(corpus_root),
                    "--out", str(out), "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "skipping category notest: no test images" in proc.stderr
    assert "part: 1 defective images have no mask (e.g. 002.png)" in proc.stderr
    with open(out / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = {Path(r["path"]).name for r in rows}
    for case in IMAGE_CASES:
        if case.readable:
            assert display_path(Path(os.fsdecode(case.filename))) in names
    metrics = json.loads((out / "metrics.json").read_text())
    pixel = metrics["scorers"]["patch"]["categories"]["part"]["pixel"]
    assert pixel["auroc"] is not None  # the wrong-size and non-binary masks were used


@pytest.mark.parametrize("case", UNREADABLE, ids=[c.name for c in UNREADABLE])
def test_evaluate_refuses_unreadable_test_image(
    case: Case, trained: tuple[Path, subprocess.CompletedProcess], tmp_path: Path, capsys
) -> None:
    run, _ = trained
    root = tmp_path / "d"
    good_images(root / "part" / "test" / "good", 3)
    path = case.write(root / "part" / "test" / "good")
    argv = ["evaluate", "--model", str(run / "model"), "--data", str(root), "--out",
            str(tmp_path / "e"), "--device", "cpu", "--categories", "part"]  # fmt: skip
    (root / "part" / "train" / "good").mkdir(parents=True)
    good_images(root / "part" / "train" / "good", 2)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: category part: 1 of 4 images are unreadable")
    assert str(path) in err[-1]


def test_evaluate_refuses_corrupt_mask_and_no_test_images(
    trained: tuple[Path, subprocess.CompletedProcess], corpus_root: Path, tmp_path: Path, capsys
) -> None:
    run, _ = trained
    root = tmp_path / "d"
    shutil.copytree(corpus_root / "part", root / "part", symlinks=True)
    (root / "part" / "ground_truth" / "crack" / "000_mask.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    base = ["evaluate", "--model", str(run / "model"), "--device", "cpu"]
    assert main([*base, "--data", str(root), "--out", str(tmp_path / "e1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ground-truth mask ") and "000_mask.png" in err[-1]
    only_train = tmp_path / "t"
    shutil.copytree(corpus_root / "notest", only_train / "notest")
    assert main([*base, "--data", str(only_train), "--out", str(tmp_path / "e2")]) == 2
    assert "error: no test images under" in capsys.readouterr().err


# --- predict --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predicted(
    tiny_fabric_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, str]]:
    """``simclr-ad predict`` over a folder of the whole corpus: rows by file name."""
    folder = tmp_path_factory.mktemp("predict_corpus")
    for case in IMAGE_CASES:
        case.write(folder / "in")
    symlink_loops(folder / "in")
    out = folder / "preds.csv"
    argv = ["-q", "predict", "--model", str(tiny_fabric_model), str(folder / "in")]
    assert (
        main([*argv, "--out", str(out), "--heatmaps", str(folder / "maps"), "--device", "cpu"]) == 0
    )
    with open(out, newline="", encoding="utf-8") as handle:
        return {Path(row["path"]).name: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize("case", IMAGE_CASES, ids=CASE_IDS)
def test_predict_row_per_file(case: Case, predicted: dict[str, dict[str, str]]) -> None:
    row = predicted[display_path(Path(os.fsdecode(case.filename)))]
    if case.readable:
        assert row["error"] == "" and float(row["score"]) >= 0
    else:
        assert row["error"] and row["score"] == "" and "\n" not in row["error"]


def test_predict_ignores_symlink_loops(predicted: dict[str, dict[str, str]]) -> None:
    assert len(predicted) == len(IMAGE_CASES)


def test_predict_single_unreadable_file_is_a_row(
    tiny_fabric_model: Path, tmp_path: Path, capsys
) -> None:
    path = UNREADABLE[0].write(tmp_path)
    assert main(["-q", "predict", "--model", str(tiny_fabric_model), str(path)]) == 2
    out = capsys.readouterr()
    assert "not a readable image" in out.out  # the row, on stdout
    assert out.err.strip() == (
        "error: none of the 1 images could be read; the reasons are in the error column"
    )


# --- the service ----------------------------------------------------------------------------

UPLOAD_STATUS = {
    "zero_byte": 400,
    "truncated_png": 422,
    "truncated_jpeg": 422,
    "text_as_png": 415,
    "decompression_bomb": 413,
}


@pytest.fixture(scope="module")
def client(tiny_fabric_model: Path) -> Iterator[TestClient]:
    import torch

    from simclr_ad.predictor import open_predictor
    from simclr_ad.service.app import create_app

    predictor = open_predictor(tiny_fabric_model, torch.device("cpu"))
    with TestClient(create_app(predictor, max_batch=4)) as test_client:
        yield test_client


@pytest.mark.parametrize("case", IMAGE_CASES, ids=CASE_IDS)
def test_service_answers(case: Case, client: TestClient, tmp_path: Path) -> None:
    data = case.write(tmp_path).read_bytes()
    filename = os.fsdecode(case.filename).encode("utf-8", "surrogateescape").decode("latin-1")
    response = client.post("/v1/predict", files={"image": (filename, data, "image/png")})
    expected = 200 if case.readable else UPLOAD_STATUS[case.name]
    assert response.status_code == expected, response.text
    body = response.json()
    assert ("score" in body) if case.readable else isinstance(body["detail"], str)
