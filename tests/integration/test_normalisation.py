"""The backbone's own mean/std, end to end: recorded in the checkpoint and the bundle, used by
prediction and the ONNX graph; runs and bundles from before it was recorded keep ImageNet's."""

import json
from pathlib import Path

import pytest

from simclr_ad.bundle import Bundle, load_bundle, save_bundle
from simclr_ad.checkpoint import load_checkpoint, save_checkpoint
from simclr_ad.cli import main
from simclr_ad.detector_bundle import load_detector
from simclr_ad.errors import UserError
from simclr_ad.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Normalization
from tests.conftest import TINY_TRAIN

HALF = [0.5, 0.5, 0.5]
TF_LITE = ["--backbone", "tf_efficientnet_lite0", "--categories", "fabric"]


@pytest.fixture(scope="module")
def tf_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SimCLR epoch of timm's tf_efficientnet_lite0 (pretrained config: 0.5/0.5)."""
    run = tmp_path_factory.mktemp("tf_lite") / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), *TINY_TRAIN, *TF_LITE]
    assert main([*argv, "--epochs", "1", "--coreset-ratio", "0.5"]) == 0
    return run


def test_the_backbones_mean_and_std_are_recorded_and_used(tf_run: Path, tmp_path: Path) -> None:
    meta = json.loads((tf_run / "model" / "model.json").read_text())
    assert meta["model"]["mean"] == meta["model"]["std"] == HALF
    assert meta["preprocessing"]["mean"] == meta["preprocessing"]["std"] == HALF
    assert load_checkpoint(tf_run / "checkpoints" / "last.ckpt")["preprocessing"] == {
        "mean": HALF,
        "std": HALF,
    }
    loaded = load_detector(tf_run / "model")
    assert loaded.model.normalization == Normalization((0.5,) * 3, (0.5,) * 3)
    onnx_file = tmp_path / "fabric.onnx"  # the export's parity check runs both runtimes
    assert main(["-q", "export", "--model", str(tf_run / "model"), "--out", str(onnx_file)]) == 0


def test_a_bundle_without_recorded_statistics_loads_as_imagenet(
    tf_run: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(tf_run / "model")
    metadata = dict(bundle.metadata)
    metadata["model"] = {k: v for k, v in metadata["model"].items() if k not in ("mean", "std")}
    save_bundle(tmp_path / "old", Bundle(bundle.tensors, metadata))
    loaded = load_detector(tmp_path / "old")
    assert loaded.model.normalization == Normalization(IMAGENET_MEAN, IMAGENET_STD)
    metadata["model"] = {**metadata["model"], "mean": [0.5, 0.5]}
    save_bundle(tmp_path / "bad", Bundle(bundle.tensors, metadata))
    with pytest.raises(UserError, match="malformed model metadata"):
        load_detector(tmp_path / "bad")


def test_resuming_an_older_checkpoint_keeps_imagenet_statistics(
    tf_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(tf_run / "checkpoints" / "last.ckpt")
    del checkpoint["preprocessing"]
    del checkpoint["sha256"]
    old = tmp_path / "old" / "checkpoints" / "last.ckpt"
    save_checkpoint(old, checkpoint)
    out = tmp_path / "resumed"
    argv = ["-q", "train", "--resume", str(old), "--out", str(out), "--epochs", "1"]  # fit only
    assert main([*argv, "--data", str(tiny_data), "--device", "cpu"]) == 0
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["model"]["mean"] == list(IMAGENET_MEAN)
