"""Elongated parts keep their aspect ratio from training to deployment."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr_ad.cli import main
from simclr_ad.data.synthetic import generate_dataset
from simclr_ad.predictor import open_predictor


@pytest.fixture(scope="module")
def tall_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic bolt at 40×100 px (W×H): 2.5 times as high as wide, like KolektorSDD."""
    square = tmp_path_factory.mktemp("square")
    generate_dataset(square, categories=("bolt",), image_size=64, n_train=12, n_test=2, seed=0)
    tall = tmp_path_factory.mktemp("tall")
    for path in square.rglob("*.png"):
        out = tall / path.relative_to(square)
        out.parent.mkdir(parents=True, exist_ok=True)
        resample = Image.Resampling.NEAREST if "mask" in path.name else Image.Resampling.BICUBIC
        Image.open(path).resize((40, 100), resample).save(out)
    return tall


def test_train_evaluate_predict_export_at_the_categorys_shape(
    tall_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    argv = ["-q", "train", "--data", str(tall_data), "--out", str(run), "--weights", "none"]
    assert main([*argv, "--epochs", "0", "--image-size", "32", "--device", "cpu"]) == 0
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["preprocessing"]["input_shapes"] == {"bolt": [96, 32]}  # 32 · 2.5 → 96 (×32)
    argv = ["evaluate", "--model", str(run / "model"), "--data", str(tall_data)]
    assert main([*argv, "--out", str(evaluation), "--device", "cpu"]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["scorers"]["patch"]["categories"]["bolt"]["pixel"]["auroc"] is not None
    assert metrics["run"]["input_shapes"] == {"bolt": [96, 32]}
    with np.load(evaluation / "report_data" / "bolt.npz") as stored:
        thumbs = next(stored[k] for k in stored.files if stored[k].ndim == 4)
        assert thumbs.shape[1] > thumbs.shape[2]  # thumbnails stay tall
    predictor = open_predictor(run / "model", device=__import__("torch").device("cpu"))
    assert predictor.input_shape("bolt") == (96, 32)
    capsys.readouterr()
    images = tall_data / "bolt" / "test"
    assert main(["predict", "--model", str(run / "model"), str(images), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 10 and all(r["error"] == "" for r in rows)
    onnx = tmp_path / "bolt.onnx"
    assert main(["export", "--model", str(run / "model"), "--out", str(onnx)]) == 0
    assert open_predictor(onnx, device=__import__("torch").device("cpu")).input_shape("bolt") == (
        96,
        32,
    )


def test_a_positional_detector_trains_evaluates_and_exports_with_its_statistics(
    tall_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    argv = ["-q", "train", "--data", str(tall_data), "--out", str(run), "--weights", "none"]
    extra = ["--epochs", "0", "--image-size", "32", "--set", "positional=true"]
    assert main([*argv, *extra, "--device", "cpu"]) == 0
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["detector"]["groups"]["bolt"]["scorers"]["patch"]["params"]["positional"]
    argv = ["evaluate", "--model", str(run / "model"), "--data", str(tall_data)]
    assert main([*argv, "--out", str(evaluation), "--device", "cpu"]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["scorers"]["patch"]["categories"]["bolt"]["image"]["auroc"] is not None
    onnx = tmp_path / "bolt.onnx"
    capsys.readouterr()
    assert main(["export", "--model", str(run / "model"), "--out", str(onnx)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")  # the graph standardises as torch does
