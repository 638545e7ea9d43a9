"""Detector end to end on tiny synthetic data: fit, calibrate, save, load, evaluate."""

import csv
import json
from pathlib import Path

import pytest
import torch

import simclr_ad.data.store as store
from simclr_ad.calibration import calibrate_threshold
from simclr_ad.cli import main
from simclr_ad.detector import DetectorSettings, fit_detector
from simclr_ad.detector_bundle import load_detector
from simclr_ad.models.simclr import ModelSpec, build_model
from tests.conftest import TINY_TRAIN

DETECTOR = [
    "--image-size",
    "64",
    "--scorers",
    "patch,knn_h,mahalanobis_z,cosine_h",
    "--coreset-ratio",
    "0.5",
    "--patch-stages",
    "1,2",
    "--set",
    "patch_k=2",
    "--set",
    "detector.topk_fraction=0.02",
]


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector with the encoder as initialised (epochs 0), fitted and calibrated."""
    run = tmp_path_factory.mktemp("run") / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), *TINY_TRAIN, *DETECTOR]
    assert main([*argv, "--epochs", "0"]) == 0
    return run / "model"


def test_bundle_holds_a_complete_detector(trained: Path) -> None:
    meta = json.loads((trained / "model.json").read_text())
    assert set(meta["detector"]["thresholds"]) == {"bolt", "fabric"}
    thresholds = meta["detector"]["thresholds"]["bolt"]
    assert set(thresholds) == {"patch", "knn_h", "mahalanobis_z", "cosine_h"}
    assert all(t > 0 for t in thresholds.values())
    assert meta["detector"]["settings"]["target_fpr"] == 0.01
    patch = load_detector(trained).detector.scorer_set("bolt").patch
    assert patch is not None and (patch.k, patch.topk_fraction) == (2, 0.02)  # the --set values


def test_round_trip_gives_identical_scores(trained: Path, tiny_data: Path) -> None:
    from simclr_ad.data.mvtec import load_category
    from simclr_ad.data.store import decode_images

    split = load_category(tiny_data, "fabric")
    pixels = decode_images(split.test, 64).pixels
    first, second = load_detector(trained), load_detector(trained)
    cpu = torch.device("cpu")
    a = first.detector.detect(pixels, "fabric", device=cpu)
    b = second.detector.detect(pixels, "fabric", device=cpu)
    for name in a.scores:
        assert torch.equal(a.scores[name], b.scores[name]), name
    assert a.maps is not None and b.maps is not None and torch.equal(a.maps, b.maps)
    assert a.maps.shape == (len(split.test), 64, 64)


def test_evaluate_writes_metrics_and_scores(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--model",
        str(trained),
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Per-category performance" in printed and "Method comparison" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["primary"] == "patch"
    patch = metrics["scorers"]["patch"]
    for category in ("bolt", "fabric"):
        entry = patch["categories"][category]
        image = entry["image"]
        for key in (
            "auroc",
            "auroc_ci95",
            "ap",
            "f1",
            "precision",
            "recall",
            "accuracy",
            "threshold",
            "f1_max",
            "trivial_f1",
            "tpr_at_fpr",
            "auroc_vs_val_good",
            "auroc_vs_val_good_ci95",
        ):
            assert key in image, key
        # the control: the 14 cross-fitted good training scores vs the defects
        assert 0.0 <= image["auroc_vs_val_good"] <= 1.0
        calibration = image["calibration"]
        assert (calibration["source"], calibration["n"], calibration["folds"]) == (
            "cross-fitted",
            14,
            14,  # the patch scorer leaves one image out
        )
        assert calibration["threshold"] == image["threshold"]
        assert "14 leave-one-out good scores" in calibration["promise"]
        row = next(line.split() for line in printed.splitlines() if line.startswith(category))
        assert row[3] == f"{image['auroc_vs_val_good']:.3f}"  # the table's control column
        assert row[11] == f"{image['tpr_at_fpr']['0.01']:.3f}"  # recall at 1% beside F1
        assert set(image["tpr_at_fpr"]) == {"0.01", "0.05"}
        assert entry["pixel"]["auroc"] is not None and entry["pixel"]["aupro"] is not None
        assert entry["counts"] == {
            "train_good": 14,  # cross-fitted calibration: every good image is fitted on
            "val_good": 0,
            "test_good": 2,
            "test_defect": 8,
            "test_unreadable": 0,
        }
        assert set(entry["per_defect"]) == {"scratch", "hole", "stain", "deformation"}
    assert metrics["scorers"]["knn_h"]["categories"]["bolt"]["pixel"] == {
        "auroc": None,
        "aupro": None,
    }
    assert patch["mean"]["image_auroc"] > 0.8  # well above chance, even from random init
    assert patch["mean"]["pixel_auroc"] > 0.8
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and set(rows[0]) >= {
        "path",
        "category",
        "defect_type",
        "label",
        "patch",
        "prediction",
    }
    with open(out / "val_scores.csv") as handle:
        held_out = list(csv.DictReader(handle))
    # the 14 cross-fitted good scores per category that set the thresholds
    assert len(held_out) == 28
    for row in held_out:
        assert "/train/good/" in row["path"] and row["label"] == "0"
        assert row["defect_type"] == "good" and set(row) == set(rows[0])
    for category in ("bolt", "fabric"):
        # the control AUROC ranks the category's defects against exactly these scores
        good = [float(r["patch"]) for r in held_out if r["category"] == category]
        same = [r for r in rows if r["category"] == category]
        defects = [float(r["patch"]) for r in same if r["label"] == "1"]
        pairs = [(d > g) + 0.5 * (d == g) for d in defects for g in good]
        control = patch["categories"][category]["image"]["auroc_vs_val_good"]
        assert sum(pairs) / len(pairs) == pytest.approx(control)
        # and the threshold is their Student-t bound (14 < 99 scores: no conformal 1%)
        calibration = calibrate_threshold(good, 0.01, folds=14)
        threshold = patch["categories"][category]["image"]["threshold"]
        assert threshold == pytest.approx(calibration.threshold, rel=1e-5)
    # a second evaluation into the same folder is refused without --overwrite
    assert main(argv) == 2
    assert "already holds" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_evaluate_bad_input(trained: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    base = ["evaluate", "--data", str(tiny_data), "--out", str(tmp_path / "e"), "--device", "cpu"]
    assert main([*base, "--model", str(trained), "--categories", "pill"]) == 2
    assert "not trained on pill; it knows: bolt, fabric" in capsys.readouterr().err
    assert main([*base, "--model", str(tmp_path / "nothing")]) == 2
    assert "is not a model bundle" in capsys.readouterr().err
    missing = tmp_path / "no-data"
    argv = ["evaluate", "--data", str(missing), "--out", str(tmp_path / "e2"), "--model"]
    assert main([*argv, str(trained)]) == 2
    assert (
        capsys.readouterr().err == f"error: data root {missing} does not exist or is not a folder\n"
    )
    assert not (tmp_path / "e2").exists()


def test_calibration_never_reads_test_images(tiny_data: Path, tmp_path: Path, monkeypatch) -> None:
    read: list[Path] = []
    original = store.read_rgb

    def recording(path: Path, size: int | None = None):  # type: ignore[no-untyped-def]
        read.append(path)
        return original(path, size)

    monkeypatch.setattr(store, "read_rgb", recording)
    argv = [
        "-q",
        "train",
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path / "r"),
        *TINY_TRAIN,
        *DETECTOR,
    ]
    assert main([*argv, "--epochs", "1"]) == 0
    assert read, "the recorder saw no reads"
    assert not [p for p in read if "test" in p.relative_to(tiny_data).parts]
    assert {p.relative_to(tiny_data).parts[1] for p in read} == {"train"}


def test_pooled_fits_one_scorer_set_for_all_categories(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "pooled"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), *TINY_TRAIN, *DETECTOR]
    assert main([*argv, "--epochs", "0", "--pooled"]) == 0
    meta = json.loads((run / "model" / "model.json").read_text())["detector"]
    assert meta["category_group"] == {"bolt": "__pooled__", "fabric": "__pooled__"}
    assert list(meta["groups"]) == ["__pooled__"]
    assert meta["thresholds"]["bolt"] == meta["thresholds"]["fabric"]


@pytest.mark.parametrize("rotations", [1, 2, 4])
def test_bank_rotations_cover_turned_parts(rotations: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18"), "none").eval()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)  # no symmetry
    settings = DetectorSettings(
        image_size=64,
        scorers=("patch",),
        patch_stages=(1, 2),
        coreset_ratio=1.0,  # every candidate patch stays in the bank
        max_patch_candidates=10**6,
        bank_rotations=rotations,
        map_sigma=0.0,
        score_rule="max",
        photometric="none",
    )
    cpu = torch.device("cpu")
    detector = fit_detector(model, {"part": images}, {"part": images}, settings, device=cpu)

    def score(turns: int) -> float:
        turned = torch.rot90(images[:1], turns, dims=(2, 3))
        return float(detector.detect(turned, "part", device=cpu).scores["patch"][0])

    upright = score(0)  # a training image: every patch is in the bank
    seen = {1: {0}, 2: {0, 2}, 4: {0, 1, 2, 3}}[rotations]
    unseen_floor = min(score(t) for t in range(4) if t not in seen) if rotations < 4 else None
    for turns in seen:
        assert score(turns) <= upright + 1e-3
    if unseen_floor is not None:
        assert unseen_floor > 10 * (upright + 1e-3)
