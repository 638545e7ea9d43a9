"""The train command end to end on tiny synthetic data: outputs, exact resume, refusals."""

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simclr_ad.cli import main
from simclr_ad.detector_bundle import load_detector
from tests.conftest import TINY_TRAIN


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "train_log.csv") as handle:
        return list(csv.DictReader(handle))


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["-q", "train", "--data", str(data), "--out", str(out), *TINY_TRAIN, *extra])


def test_train_writes_run_folder(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(tiny_data, run, "--epochs", "2", "--checkpoint-every", "1") == 0
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch_001.ckpt", "epoch_002.ckpt", "last.ckpt"]
    rows = _log(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["loss"]) > 0 and float(r["images_per_s"]) > 0 for r in rows)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["epochs"] == 2 and config["image_size"] == 32
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["categories"] == ["bolt", "fabric"]
    assert meta["model"]["backbone"] == "resnet18"
    assert (
        meta["training"]["n_train"] == 28 and meta["training"]["n_val"] == 0  # cross-fitted
    )  # 14 each


def test_train_names_the_good_images_behind_each_threshold(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The terminal says, per category, the threshold and the three good training images that
    score highest (each without itself): a user without a labelled test set sees them too."""
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="simclr_ad.pipeline"):
        assert _train(tiny_data, run, "--epochs", "0") == 0
    loaded = load_detector(run / "model")
    files = loaded.metadata["training"]["calibration_files"]
    lines = [r.getMessage() for r in caplog.records if "highest good training" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["bolt", "fabric"]
    for line in lines:
        category = line.split(":")[0]
        scorer_set = loaded.detector.scorer_set(category)
        scores = scorer_set.good_scores[loaded.detector.settings.primary]
        top = scores.argsort(descending=True)[:3]
        named = ", ".join(f"{files[category][i]} {float(scores[i]):.4g}" for i in top)
        threshold = scorer_set.calibrations[loaded.detector.settings.primary].threshold
        assert line.startswith(f"{category}: threshold {threshold:.4g} (")
        assert line.endswith(f"the highest good training images: {named}")


def test_exact_resume_and_extension(tiny_data: Path, tmp_path: Path) -> None:
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert _train(tiny_data, run_a, "--epochs", "4", "--checkpoint-every", "2") == 0
    resume = [
        "-q",
        "train",
        "--resume",
        str(run_a / "checkpoints" / "epoch_002.ckpt"),
        "--out",
        str(run_b),
    ]
    assert main(resume) == 0
    weights_a = (run_a / "model" / "model.safetensors").read_bytes()
    assert (run_b / "model" / "model.safetensors").read_bytes() == weights_a
    assert len(_log(run_b)) == 4
    # extending beyond the original total, as the write-up's second stage did
    run_c = tmp_path / "c"
    extend = [
        "-q",
        "train",
        "--resume",
        str(run_a / "checkpoints" / "last.ckpt"),
        "--out",
        str(run_c),
    ]
    assert main([*extend, "--epochs", "5"]) == 0
    assert [r["epoch"] for r in _log(run_c)] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    assert (run_c / "model" / "model.safetensors").read_bytes() != weights_a


def test_resume_refuses_changed_settings(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_data, run, "--epochs", "1") == 0
    code = main(
        [
            "train",
            "--resume",
            str(run / "checkpoints" / "last.ckpt"),
            "--out",
            str(tmp_path / "r"),
            "--lr",
            "0.1",
            "--epochs",
            "2",
        ]
    )
    assert code == 2 and "cannot change lr when resuming" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_data, run, "--epochs", "1") == 0
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    assert _train(tiny_data, run, "--epochs", "1", "--seed", "5") == 2
    assert "already holds checkpoints or a model" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before
    assert _train(tiny_data, run, "--epochs", "1", "--seed", "5", "--overwrite") == 0
    assert (run / "checkpoints" / "last.ckpt").read_bytes() != before


def test_epochs_zero_saves_initial_encoder(tiny_data: Path, tmp_path: Path, capsys) -> None:
    assert _train(tiny_data, tmp_path / "run", "--epochs", "0") == 0
    model = tmp_path / "run" / "model" / "model.safetensors"
    before = model.read_bytes()
    assert (
        _train(tiny_data, tmp_path / "run", "--epochs", "0", "--seed", "3") == 2
    )  # never silently
    assert "already holds checkpoints or a model" in capsys.readouterr().err
    assert model.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{tmp}/nowhere"], "data root {tmp}/nowhere does not exist"),
        (
            ["--data", "{data}", "--categories", "bottle"],
            "unknown category bottle in {data}; categories found: bolt, fabric",
        ),
        (["--data", "{data}", "--epochs", "-3"], "invalid config value epochs=-3"),
        (
            ["--data", "{data}", "--augment", "strong"],
            "argument --augment: invalid choice: 'strong'",
        ),
        (
            ["--data", "{data}", "--config", "{tmp}/bad.yaml"],
            "unknown config key(s) epoch (epoch: did you mean epochs?);",
        ),
        (
            ["--data", "{data}", "--weights", "{tmp}/w.safetensors"],
            "weights file {tmp}/w.safetensors does not exist",
        ),
        (["--data", "{data}", "--backbone", "resnet1800"], "unknown backbone 'resnet1800'"),
        (
            ["--data", "{data}", "--resume", "{tmp}/x.ckpt"],
            "checkpoint {tmp}/x.ckpt does not exist",
        ),
        ([], "--data is required"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tiny_data: Path, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    (tmp_path / "bad.yaml").write_text("epoch: 3\n")
    fill = {"tmp": str(tmp_path), "data": str(tiny_data)}
    argv = ["train", "--out", str(tmp_path / "run"), *TINY_TRAIN, "--epochs", "1"]
    argv += [a.format(**fill) for a in args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: a value outside a flag's choices
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[-1] == err[-1].strip() and message.format(**fill) in err[-1]
    assert not any("Traceback" in line for line in err)


def test_empty_train_good_and_unreadable_images(tmp_path: Path, capsys) -> None:
    from PIL import Image

    (tmp_path / "d" / "empty" / "train" / "good").mkdir(parents=True)
    assert (
        main(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), *TINY_TRAIN])
        == 2
    )
    assert "no training images in" in capsys.readouterr().err
    good = tmp_path / "e" / "part" / "train" / "good"
    good.mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (40, 40), (i * 20, 0, 0)).save(good / f"{i}.png")
    (good / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    argv = [
        "train",
        "--data",
        str(tmp_path / "e"),
        "--out",
        str(tmp_path / "r2"),
        "--val-fraction",
        "0",
    ]
    assert main([*argv, *TINY_TRAIN]) == 2
    assert "1 of 11 images are unreadable" in capsys.readouterr().err


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simclr_ad",
            "train",
            "--data",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: data root {tmp_path / 'missing'} does not exist or is not a folder"
    )


@pytest.mark.parametrize("objective", ["msc", "cutpaste"])
def test_objectives_train_and_resume_refuses_another(
    objective: str, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    extra = ("--epochs", "1", "--objective", objective, "--coreset-ratio", "0.5")
    assert _train(tiny_data, run, *extra) == 0
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["training"]["config"]["objective"] == objective
    assert float(_log(run)[0]["loss"]) > 0
    checkpoint = run / "checkpoints" / "last.ckpt"
    other = "cutpaste" if objective == "msc" else "msc"
    argv = ["train", "--resume", str(checkpoint), "--out", str(tmp_path / "r"), "--epochs", "2"]
    assert main([*argv, "--objective", other]) == 2
    assert "cannot change objective when resuming" in capsys.readouterr().err


def test_train_crop_trains_on_crops_and_fits_on_whole_images(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simclr_ad.pipeline as pipeline

    made = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(pipeline_create(*args, **kwargs))
        return made[-1]

    pipeline_create = pipeline.create_augment
    monkeypatch.setattr(pipeline, "create_augment", spy)
    run = tmp_path / "run"
    extra = ("--epochs", "1", "--objective", "cutpaste", "--image-size", "48")
    extra += ("--set", "train_crop=32")
    assert _train(tiny_data, run, *extra) == 0
    assert [(a.image_size, a.input_size) for a in made] == [(32, 48 + 32)]
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["training"]["config"]["train_crop"] == 32
    assert meta["training"]["config"]["image_size"] == 48  # the detector's size
    assert float(_log(run)[0]["loss"]) > 0
    assert _train(tiny_data, tmp_path / "bad", "--set", "train_crop=64") == 2


def test_dense_cutpaste_trains_and_checkpoints_its_head(tiny_data: Path, tmp_path: Path) -> None:
    from simclr_ad.checkpoint import load_checkpoint

    run = tmp_path / "run"
    extra = ("--epochs", "1", "--objective", "cutpaste", "--set", "cutpaste_dense=1")
    assert _train(tiny_data, run, *extra, "--patch-stages", "1,2") == 0
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["training"]["config"]["cutpaste_dense"] == 1.0
    assert float(_log(run)[0]["loss"]) > 0
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["objective"]
    assert state["segmenter.0.weight"].shape == (64, 64 + 128, 1, 1)  # resnet18 layer1 + layer2
    assert _train(tiny_data, tmp_path / "bad", "--set", "cutpaste_dense=-1") == 2
