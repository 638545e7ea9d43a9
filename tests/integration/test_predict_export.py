"""The deployable detector from the command line: bundle checks, batch predict, ONNX export."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from simclr_ad.cli import main
from simclr_ad.detector_bundle import load_detector
from simclr_ad.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_bundle_describes_the_detector(tiny_model: Path) -> None:
    meta = json.loads((tiny_model / "model.json").read_text())
    assert meta["format_version"] == 2 and len(meta["metadata_sha256"]) == 64
    assert meta["preprocessing"]["image_size"] == 32 and len(meta["preprocessing"]["mean"]) == 3
    assert meta["categories"] == ["bolt", "fabric"]
    assert meta["decision"]["target_fpr"] == 0.01 and meta["decision"]["primary_scorer"] == "patch"
    assert set(meta["detector"]["thresholds"]) == {"bolt", "fabric"}
    assert {"torch", "timm", "safetensors", "numpy", "simclr_ad"} <= set(meta["versions"])
    assert meta["training"]["train_files_hash"]


def test_edited_or_truncated_bundle_is_refused(
    tiny_model: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["detector"]["thresholds"]["fabric"]["patch"] = 1e9  # a quiet edit of a threshold
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"model\.json does not match its recorded hash"):
        load_detector(copy)
    shutil.copy(tiny_model / "model.json", copy / "model.json")
    tensors = copy / "model.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:1000])
    images = str(tiny_data / "fabric" / "test" / "good")
    assert main(["predict", "--model", str(copy), "--category", "fabric", images]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match its recorded hash" in err[0]


def test_predict_folder_with_a_corrupt_file(
    tiny_model: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_data / "fabric" / "test", images)
    (images / "hole" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "notes.txt").write_text("not an image: skipped by extension")
    out, heatmaps = tmp_path / "preds.csv", tmp_path / "heatmaps"
    argv = ["predict", "--model", str(tiny_model), str(images), "--out", str(out)]
    assert main([*argv, "--heatmaps", str(heatmaps), "--batch-size", "4"]) == 2
    assert "choose one with --category: bolt, fabric" in capsys.readouterr().err
    argv += ["--category", "fabric", "--batch-size", "4", "--device", "cpu"]
    assert main([*argv, "--heatmaps", str(heatmaps)]) == 0
    rows = _rows(out)
    assert list(rows[0]) == [
        "path", "category", "score", "normalized_score", "threshold", "threshold_source",
        "target_fpr", "is_anomalous", "error", "heatmap",
    ]  # fmt: skip
    assert len(rows) == 11  # 10 test images + the broken one, not the .txt
    broken = [r for r in rows if r["path"].endswith("broken.png")]
    assert len(broken) == 1 and broken[0]["error"] and broken[0]["score"] == ""
    scored = [r for r in rows if not r["error"]]
    for row in scored:
        score, threshold = float(row["score"]), float(row["threshold"])
        assert float(row["normalized_score"]) == pytest.approx(score / threshold, rel=1e-5)
        assert row["is_anomalous"] == str(score >= threshold).lower()
    overlays = sorted(heatmaps.rglob("*.png"))
    assert len(overlays) == 10 and (heatmaps / "hole" / "000.png.png") in overlays
    assert {r["heatmap"] for r in scored} == {str(p) for p in overlays}
    assert Image.open(overlays[0]).size == (32, 32)
    assert main(argv) == 2  # the CSV exists: not replaced without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_onnx_export_matches_pytorch(
    tiny_fabric_model: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    onnx_file = tmp_path / "fabric.onnx"
    assert main(["export", "--model", str(tiny_fabric_model), "--out", str(onnx_file)]) == 0
    printed = capsys.readouterr().out
    assert "max relative difference" in printed and printed.strip().endswith("ok")
    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    meta = json.loads((tiny_fabric_model / "model.json").read_text())
    assert float(props["threshold"]) == meta["detector"]["thresholds"]["fabric"]["patch"]
    assert props["category"] == "fabric" and props["image_size"] == "32"
    folder = tiny_data / "fabric" / "test"
    for model, name in ((tiny_fabric_model, "torch.csv"), (onnx_file, "onnx.csv")):
        out = tmp_path / name
        argv = ["-q", "predict", "--model", str(model), str(folder), "--out", str(out)]
        assert main([*argv, "--batch-size", "3"]) == 0  # a batch size not traced
    reference, exported = _rows(tmp_path / "torch.csv"), _rows(tmp_path / "onnx.csv")
    assert [r["path"] for r in reference] == [r["path"] for r in exported]
    a = np.array([float(r["score"]) for r in reference])
    b = np.array([float(r["score"]) for r in exported])
    np.testing.assert_allclose(b, a, rtol=1e-4)
    assert [r["is_anomalous"] for r in reference] == [r["is_anomalous"] for r in exported]
    assert main(["export", "--model", str(tiny_fabric_model), "--out", str(onnx_file)]) == 2
    capsys.readouterr()
    argv = ["-q", "predict", "--model", str(onnx_file), str(folder)]
    assert main([*argv, "--target-fpr", "0.1"]) == 2  # the export holds no good scores
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threshold" in err[0] and "calibrate" in err[0]
    assert main([*argv, "--threshold", "1e-9", "--out", str(tmp_path / "all.csv")]) == 0
    fixed = _rows(tmp_path / "all.csv")
    assert {(r["is_anomalous"], r["threshold_source"]) for r in fixed} == {("true", "fixed")}
