"""``auto`` with pretrained weights: the recipe for unset keys, the test-free candidate choice."""

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from simclr_ad import config, selection
from simclr_ad.cli import main
from simclr_ad.data.defects import FAMILIES
from simclr_ad.detector_bundle import load_detector
from simclr_ad.selection import Candidate


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local resnet18 weights file: 'pretrained' for the pipeline, no download."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    torch.manual_seed(0)  # the same weights whichever tests ran before: the same auto choice
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_auto_chooses_among_candidates_on_synthetic_defects_and_records_why(
    tiny_data: Path, weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the recipe's 512 px and the 320 px candidate, scaled down to the tiny images
    recipe = {"epochs": 0, "image_size": 48, "positional": False}
    monkeypatch.setattr(config, "PRETRAINED_RECIPE", recipe)
    small = (
        Candidate("base", {}),
        Candidate("image size 32", {"image_size": 32}),
        Candidate("positional", {"positional": True}),
    )
    monkeypatch.setattr(selection, "CANDIDATES", small)
    run = tmp_path / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), "--categories", "bolt"]
    assert main([*argv, "--weights", str(weights), "--device", "cpu"]) == 0
    meta = json.loads((run / "model" / "model.json").read_text())
    training = meta["training"]
    assert training["pretrained_recipe"] == recipe
    assert training["epochs_trained"] == 0
    entry = training["auto_selection"]["bolt"]
    assert [row["candidate"] for row in entry["candidates"]] == [c.name for c in small]
    for row in entry["candidates"]:
        assert row["n_good"] == 14 and row["n_defects"] == 14
        assert 0.0 <= row["synthetic_recall"] <= 1.0 and 0.0 <= row["synthetic_auroc"] <= 1.0
        assert set(row["recall_by_family"]) == set(FAMILIES)
    size = 32 if entry["chosen"] == "image size 32" else 48
    assert meta["preprocessing"]["input_shapes"] == {"bolt": [size, size]}  # the chosen one
    patch = meta["detector"]["groups"]["bolt"]["scorers"]["patch"]
    assert patch["params"]["score_rule"] == "topk_mean"  # the default rule: not a candidate
    assert patch["params"]["positional"] == (entry["chosen"] == "positional")


def test_a_category_given_the_fine_candidate_scores_exports_and_reloads_with_its_stages(
    tiny_data: Path, weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bolt takes the stride-4 + 8 candidate, fabric keeps the base: one bundle, two sets of
    patch stages, each category scored, evaluated and exported with its own."""
    recipe = {**config.PRETRAINED_RECIPE, "image_size": 48}
    monkeypatch.setattr(config, "PRETRAINED_RECIPE", recipe)
    fine = Candidate("fine", {"positional": True, "score_rule": "max"}, selection.FINE_STRIDES)
    monkeypatch.setattr(selection, "CANDIDATES", (Candidate("base", {}), fine))
    # per category the base against itself, then the fine one: clearly more on bolt, fewer on fabric
    verdicts = iter([0, 1, 0, -1])
    monkeypatch.setattr(selection, "finds_more", lambda a, b: next(verdicts))
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), "--weights", str(weights)]
    assert main([*argv, "--device", "cpu"]) == 0
    meta = json.loads((run / "model" / "model.json").read_text())
    chosen = {c: e["chosen"] for c, e in meta["training"]["auto_selection"].items()}
    assert chosen == {"bolt": "fine", "fabric": "base"}
    groups = meta["detector"]["groups"]
    assert groups["bolt"]["patch_stages"] == [1, 2]  # resnet18: layer1 and layer2
    assert "patch_stages" not in groups["fabric"]
    assert groups["bolt"]["scorers"]["patch"]["params"]["score_rule"] == "max"
    loaded = load_detector(run / "model")
    detector = loaded.detector
    assert detector.embedder_for("bolt").stages == (1, 2)
    assert detector.embedder_for("fabric").stages == (2, 3)
    banks = {c: detector.scorer_set(c).patch.bank.shape[1] for c in ("bolt", "fabric")}
    assert banks == {"bolt": 64 + 128, "fabric": 128 + 256}
    assert (
        main(
            [
                "-q",
                "evaluate",
                "--model",
                str(run / "model"),
                "--data",
                str(tiny_data),
                "--out",
                str(evaluation),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert all(
        metrics["scorers"]["patch"]["categories"][c]["image"]["auroc"] is not None
        for c in ("bolt", "fabric")
    )
    onnx = tmp_path / "bolt.onnx"
    argv = ["export", "--model", str(run / "model"), "--category", "bolt", "--out", str(onnx)]
    assert main(argv) == 0  # the export's own parity check on the stride-4 graph


def test_keys_the_user_set_leave_auto_nothing_to_choose(
    tiny_data: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), "--categories", "bolt"]
    extra = ["--weights", str(weights), "--image-size", "48", "--set", "positional=false"]
    assert main([*argv, *extra, "--device", "cpu"]) == 0
    training = json.loads((run / "model" / "model.json").read_text())["training"]
    # score_rule and patch_stages keep their defaults: free, but the fine candidate also needs
    # positional, which the user set
    assert training["pretrained_recipe"] == {
        "epochs": 0,
        "score_rule": "topk_mean",
        "patch_stages": [],
    }
    assert training["auto_selection"] == {}
    assert training["config"]["image_size"] == 48
    assert training["config"]["pinned"] == ["image_size", "positional"]


def test_no_auto_keeps_the_defaults_and_chooses_nothing(
    tiny_data: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), "--categories", "bolt"]
    extra = ["--weights", str(weights), "--image-size", "32", "--epochs", "0", "--no-auto"]
    assert main([*argv, *extra, "--batch-size", "8", "--device", "cpu"]) == 0
    training = json.loads((run / "model" / "model.json").read_text())["training"]
    assert training["pretrained_recipe"] == {} and training["auto_selection"] == {}
    assert training["config"]["score_rule"] == "topk_mean"
