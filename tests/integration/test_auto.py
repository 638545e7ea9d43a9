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


def test_keys_the_user_set_leave_auto_nothing_to_choose(
    tiny_data: Path, weights: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), "--categories", "bolt"]
    extra = ["--weights", str(weights), "--image-size", "48", "--set", "positional=false"]
    assert main([*argv, *extra, "--device", "cpu"]) == 0
    training = json.loads((run / "model" / "model.json").read_text())["training"]
    assert training["pretrained_recipe"] == {"epochs": 0}
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
