"""predict's output formats, and moving the operating point after training: ``--threshold``,
``--target-fpr`` (predict and serve) and ``simclr-ad calibrate`` (a new bundle from new good
images, the old one untouched)."""

import csv
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from simclr_ad.calibration import calibrate_threshold
from simclr_ad.cli import main
from simclr_ad.data.synthetic import generate_dataset
from simclr_ad.detector_bundle import load_detector
from simclr_ad.predict import COLUMNS
from simclr_ad.service import app as service_app
from simclr_ad.service import server
from tests.conftest import TINY_TRAIN


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """predict's standard output (rc 0 asserted)."""
    capsys.readouterr()
    assert main(["-q", "predict", "--device", "cpu", *argv]) == 0
    return capsys.readouterr().out


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture(scope="module")
def new_good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 good fabric images the tiny models never saw (another seed of the generator)."""
    root = tmp_path_factory.mktemp("new_good")
    generate_dataset(root, categories=("fabric",), image_size=64, n_train=14, n_test=1, seed=7)
    return root / "fabric" / "train" / "good"


@pytest.fixture(scope="module")
def holdout_model(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fabric bundle calibrated on a held-out split: it stores no good scores."""
    out = tmp_path_factory.mktemp("holdout") / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(out), *TINY_TRAIN]
    argv += ["--epochs", "0", "--coreset-ratio", "0.5", "--categories", "fabric"]
    assert main([*argv, "--calibration", "holdout"]) == 0
    return out / "model"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_predict_formats(
    tiny_fabric_model: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_data / "fabric" / "test", images)
    (images / "broken.png").write_bytes(b"not an image")
    model = ["--model", str(tiny_fabric_model), str(images)]
    rows = _csv(_predict(capsys, *model))  # not a terminal: CSV by default
    assert len(rows) == 11 and tuple(rows[0]) == COLUMNS
    scored = [r for r in rows if not r["error"]]
    assert {r["threshold_source"] for r in scored} == {"calibrated"}
    assert {r["target_fpr"] for r in scored} == {"0.01"}

    objects = json.loads(_predict(capsys, *model, "--format", "json"))
    assert [o["path"] for o in objects] == [r["path"] for r in rows]
    assert all(tuple(o) == COLUMNS for o in objects)
    broken = next(o for o in objects if o["path"].endswith("broken.png"))
    assert broken["error"] and broken["score"] is None and broken["is_anomalous"] is None
    for o, r in zip(objects, rows, strict=True):
        if r["error"]:
            continue
        assert o["score"] == pytest.approx(float(r["score"]), rel=1e-5)
        assert o["is_anomalous"] is (r["is_anomalous"] == "true")
        assert o["target_fpr"] == 0.01 and o["threshold_source"] == "calibrated"

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["-q", "predict", "--device", "cpu", *model]) == 0  # a terminal: the table
    lines = terminal.getvalue().splitlines()
    threshold = float(scored[0]["threshold"])
    assert lines[0].startswith(f"fabric: threshold {threshold:.6g} (calibrated: ")
    assert lines[1].split() == ["path", "score", "score/threshold", "verdict"]
    assert len(lines) == 2 + 11
    verdict_at = lines[1].index("verdict")  # aligned: every verdict starts under its header
    verdicts = {line[verdict_at:].split()[0] for line in lines[2:]}
    assert verdicts <= {"good", "ANOMALOUS", "unreadable:"} and "unreadable:" in verdicts
    for line, row in zip(lines[2:], rows, strict=True):
        assert line.startswith(row["path"])
        expected = "ANOMALOUS" if row["is_anomalous"] == "true" else "good"
        assert line[verdict_at:].startswith("unreadable" if row["error"] else expected)

    out = tmp_path / "preds.json"  # --out keeps working, in any format
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    argv = ["-q", "predict", "--device", "cpu", *model, "--format", "json", "--out", str(out)]
    assert main(argv) == 0
    assert [o["path"] for o in json.loads(out.read_text())] == [r["path"] for r in rows]


def test_threshold_moves_the_verdicts(
    tiny_model: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = str(tiny_data / "fabric" / "test")
    model = ["--model", str(tiny_model), "--category", "fabric", images]
    calibrated = _csv(_predict(capsys, *model))
    scores = sorted(float(r["score"]) for r in calibrated)
    above = _csv(_predict(capsys, *model, "--threshold", f"{scores[-1] * 2:.6g}"))
    assert {r["is_anomalous"] for r in above} == {"false"}
    below = _csv(_predict(capsys, *model, "--threshold", f"{scores[0] / 2:.6g}"))
    assert {r["is_anomalous"] for r in below} == {"true"}
    half = len(scores) // 2
    middle = (scores[half - 1] + scores[half]) / 2  # between two scores: no rounding question
    rows = _csv(_predict(capsys, *model, "--threshold", repr(middle)))
    assert {(r["threshold_source"], r["target_fpr"]) for r in rows} == {("fixed", "")}
    for row in rows:
        score = float(row["score"])
        assert float(row["threshold"]) == pytest.approx(middle, rel=1e-5)
        assert float(row["normalized_score"]) == pytest.approx(score / middle, rel=1e-5)
    flagged = sum(r["is_anomalous"] == "true" for r in rows)
    assert scores[half - 1] < middle < scores[half] and flagged == len(scores) - half


def test_target_fpr_rederives_the_threshold_from_stored_scores(
    tiny_model: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = str(tiny_data / "fabric" / "test")
    model = ["--model", str(tiny_model), "--category", "fabric", images]
    calibrated = _csv(_predict(capsys, *model))
    loose = _csv(_predict(capsys, *model, "--target-fpr", "0.5"))
    assert {(r["threshold_source"], r["target_fpr"]) for r in loose} == {("target-fpr", "0.5")}
    assert sum(r["is_anomalous"] == "true" for r in loose) > sum(
        r["is_anomalous"] == "true" for r in calibrated
    )
    scorer_set = load_detector(tiny_model).detector.scorer_set("fabric")
    good = scorer_set.good_scores["patch"].numpy()
    expected = calibrate_threshold(good, 0.5, folds=scorer_set.calibrations["patch"].folds)
    assert expected.method == "conformal" and expected.source == "cross-fitted"
    assert float(loose[0]["threshold"]) == pytest.approx(expected.threshold, rel=1e-5)
    assert (good >= expected.threshold).mean() == pytest.approx(0.5, abs=0.1)


def test_operating_point_refusals(
    tiny_fabric_model: Path,
    holdout_model: Path,
    tiny_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = str(tiny_data / "fabric" / "test")
    base = ["predict", "--device", "cpu", images]
    error = _one_line_error(capsys, [*base, "--model", str(holdout_model), "--target-fpr", "0.1"])
    assert "--threshold" in error and "simclr-ad calibrate" in error
    for flag, value in (("--threshold", "0"), ("--threshold", "nan"), ("--target-fpr", "1")):
        error = _one_line_error(capsys, [*base, "--model", str(tiny_fabric_model), flag, value])
        assert flag in error and value in error.lower()
    with pytest.raises(SystemExit) as exited:  # argparse: one or the other
        main([*base, "--model", str(tiny_fabric_model), "--threshold", "1", "--target-fpr", "0.1"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    rows = _csv(_predict(capsys, "--model", str(holdout_model), images, "--threshold", "1e9"))
    assert {r["is_anomalous"] for r in rows} == {"false"}  # a fixed threshold needs no scores


def test_calibrate_writes_a_new_bundle_and_keeps_the_old(
    tiny_model: Path,
    new_good: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _digests(tiny_model)
    out = tmp_path / "recalibrated"
    argv = ["calibrate", "--model", str(tiny_model), "--data", str(new_good), "--device", "cpu"]
    assert main([*argv, "--category", "fabric", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"model: {out}" in printed and "14 held-out good scores" in printed
    assert _digests(tiny_model) == before  # not a byte of the old bundle changed

    old, new = load_detector(tiny_model), load_detector(out)  # hashes verified on load
    fabric = new.detector.scorer_set("fabric")
    for name, calibration in fabric.calibrations.items():
        assert calibration.source == "held-out" and calibration.n == 14 and calibration.folds == 0
        assert calibration.target_fpr == 0.01
        expected = calibrate_threshold(fabric.good_scores[name].numpy(), 0.01)
        assert calibration.threshold == pytest.approx(expected.threshold)
    assert (
        new.detector.scorer_set("bolt").calibrations == old.detector.scorer_set("bolt").calibrations
    )
    old_weights, new_weights = old.model.state_dict(), new.model.state_dict()
    assert all(torch.equal(old_weights[k], new_weights[k]) for k in old_weights)
    assert len(new.metadata["recalibrations"]) == 1
    assert new.metadata["recalibrations"][0]["n"] == 14

    # the stored scores are those predict gives the same images, against the new threshold
    rows = _csv(_predict(capsys, "--model", str(out), "--category", "fabric", str(new_good)))
    stored = fabric.good_scores["patch"].numpy()
    np.testing.assert_allclose([float(r["score"]) for r in rows], stored, rtol=1e-4)
    assert float(rows[0]["threshold"]) == pytest.approx(fabric.calibrations["patch"].threshold)

    looser = tmp_path / "looser"
    assert main([*argv, "--category", "fabric", "--out", str(looser), "--target-fpr", "0.25"]) == 0
    calibration = load_detector(looser).detector.scorer_set("fabric").calibrations["patch"]
    assert calibration.target_fpr == 0.25 and calibration.method == "conformal"
    assert calibration.threshold < fabric.calibrations["patch"].threshold


def test_calibrate_refusals(
    tiny_fabric_model: Path,
    holdout_model: Path,
    new_good: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _digests(tiny_fabric_model)
    model = str(tiny_fabric_model)
    argv = ["calibrate", "--model", model, "--device", "cpu"]
    good = ["--data", str(new_good)]
    for out in (tiny_fabric_model, tiny_fabric_model.parent, tiny_fabric_model / "inner"):
        error = _one_line_error(capsys, [*argv, *good, "--out", str(out), "--overwrite"])
        assert "would write over the model" in error
    assert _digests(tiny_fabric_model) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    error = _one_line_error(capsys, [*argv, "--data", str(empty), "--out", str(tmp_path / "a")])
    assert "no image files" in error and str(empty) in error
    broken = tmp_path / "broken"
    shutil.copytree(new_good, broken)
    (broken / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    error = _one_line_error(capsys, [*argv, "--data", str(broken), "--out", str(tmp_path / "a")])
    assert "zz.png" in error and "1 of 15" in error
    missing = str(tmp_path / "missing")
    error = _one_line_error(capsys, [*argv, "--data", missing, "--out", str(tmp_path / "a")])
    assert "is not a folder" in error
    train = str(tiny_data / "fabric" / "train" / "good")
    error = _one_line_error(capsys, [*argv, "--data", train, "--out", str(tmp_path / "a")])
    assert "training images" in error
    error = _one_line_error(
        capsys, [*argv, *good, "--out", str(tmp_path / "a"), "--target-fpr", "1.5"]
    )
    assert "--target-fpr" in error
    assert not (tmp_path / "a").exists()

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    error = _one_line_error(capsys, [*argv, *good, "--out", str(notes)])
    assert "already exists" in error
    error = _one_line_error(capsys, [*argv, *good, "--out", str(notes), "--overwrite"])
    assert "not a model bundle" in error and (notes / "keep.txt").read_text() == "mine"

    out = tmp_path / "new"
    assert main([*argv, *good, "--out", str(out)]) == 0
    assert _one_line_error(capsys, [*argv, *good, "--out", str(out)]).endswith("--overwrite")
    assert main([*argv, *good, "--out", str(out), "--overwrite"]) == 0
    assert _digests(tiny_fabric_model) == before

    # a held-out-calibrated bundle stores no scores; recalibrated, it does
    recalibrated = tmp_path / "from_holdout"
    holdout = ["calibrate", "--model", str(holdout_model), "--device", "cpu", *good]
    assert main([*holdout, "--out", str(recalibrated)]) == 0
    capsys.readouterr()
    images = str(tiny_data / "fabric" / "test")
    rows = _csv(_predict(capsys, "--model", str(recalibrated), images, "--target-fpr", "0.5"))
    assert {r["threshold_source"] for r in rows} == {"target-fpr"}


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, dict[str, object]]]:
    import uvicorn

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setattr(server, "check_port_free", lambda host, port: None)
    names = [service_app.MODEL_ENV, service_app.DEVICE_ENV, "SIMCLR_AD_WORKERS"]
    for name in [*names, *service_app.OPERATING_POINT_ENV.values()]:
        monkeypatch.setenv(name, "")  # whatever serve sets is removed again after the test
        monkeypatch.delenv(name)
    return calls


def _first_good(tiny_data: Path) -> bytes:
    return next((tiny_data / "fabric" / "test" / "good").iterdir()).read_bytes()


def test_serve_takes_the_operating_point(
    tiny_fabric_model: Path,
    holdout_model: Path,
    tiny_data: Path,
    no_uvicorn: list[tuple[object, dict[str, object]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve = ["serve", "--model", str(tiny_fabric_model), "--device", "cpu"]
    assert main([*serve, "--threshold", "1e9"]) == 0
    [(app, _)] = no_uvicorn
    with TestClient(app) as client:  # type: ignore[arg-type]
        detector = client.get("/v1/model").json()["detector"]
        assert detector["thresholds"] == {"fabric": 1e9}
        assert detector["threshold_source"] == "fixed" and detector["target_fpr"] is None
        image = {"image": ("a.png", _first_good(tiny_data), "image/png")}
        verdict = client.post("/v1/predict", files=image).json()
        assert verdict["threshold"] == 1e9 and verdict["is_anomalous"] is False

    assert main([*serve, "--workers", "2", "--target-fpr", "0.5"]) == 0
    assert no_uvicorn[-1][0] == "simclr_ad.service.app:app_from_environment"
    threads = torch.get_num_threads()
    try:
        with TestClient(service_app.app_from_environment()) as client:  # what each worker runs
            detector = client.get("/v1/model").json()["detector"]
    finally:
        torch.set_num_threads(threads)
    assert detector["threshold_source"] == "target-fpr" and detector["target_fpr"] == 0.5

    holdout = ["serve", "--model", str(holdout_model), "--target-fpr", "0.5"]
    for workers in ("1", "2"):  # refused before the port opens, with one worker or several
        error = _one_line_error(capsys, [*holdout, "--workers", workers, "--device", "cpu"])
        assert "--threshold" in error
    assert len(no_uvicorn) == 2
