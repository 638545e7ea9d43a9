import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import simclr_ad
from simclr_ad.config import (
    SHIPPED_CONFIGS,
    TrainConfig,
    build_config,
    dump_yaml,
    load_yaml,
    resolve_config_file,
    shipped_configs,
)
from simclr_ad.errors import UserError


def test_defaults_follow_the_write_up() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.image_size, cfg.temperature) == (
        3e-4,
        1e-6,
        256,
        224,
        0.07,
    )
    assert cfg.backbone == "resnet18"
    assert (cfg.head_hidden, cfg.head_out, cfg.head_dropout) == ((512, 256), 128, (0.1, 0.05))


def test_yaml_then_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 0.001\ncategories: [a, b]\n")
    cfg = build_config(load_yaml(path), epochs=5, lr=None)
    assert cfg.epochs == 5 and cfg.lr == 0.001 and cfg.categories == ("a", "b")


def test_round_trip_through_yaml(tmp_path) -> None:
    cfg = build_config(epochs=7, categories=["x"], head_hidden=[64], head_dropout=[0.0])
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert build_config(load_yaml(path)) == cfg


def test_unknown_key_lists_valid_ones() -> None:
    expected = r"unknown config key\(s\) epohcs \(epohcs: did you mean epochs\?\); valid keys: .*"
    with pytest.raises(UserError, match=expected):
        build_config({"epohcs": 3})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", -1, "epochs=-1"),
        ("batch_size", 1, "batch_size=1"),
        ("temperature", 0, "temperature=0"),
        ("augment", "fancy", "seed, default"),
        ("objective", "byol", "simclr, msc, cutpaste"),
        ("frozen_stages", -2, "frozen_stages=-2"),
        ("msc_temperature", 0, "msc_temperature=0"),
        ("device", "gpu", "auto, cpu"),
        ("image_size", 8, "image_size=8"),
        ("epochs", "ten", "an integer"),
        ("lr", True, "a number"),
        ("head_dropout", [0.1], "one probability"),
        ("val_fraction", 1.0, "val_fraction"),
        ("train_crop", 300, r"train_crop=300: expected 0 \(whole images\) or .*image_size=224"),
        ("train_crop", 16, "train_crop=16"),
        ("cutpaste_dense", 1.0, "0 unless objective is cutpaste"),
    ],
)
def test_invalid_values_are_named(key: str, value: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_config({key: value})


def test_config_file_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="cannot read config file"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(UserError, match="mapping"):
        load_yaml(scalar)


CONFIGS = SHIPPED_CONFIGS


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_files_are_valid_and_taken_as_written(path: Path) -> None:
    values = load_yaml(path)
    taken = build_config(values).to_dict()
    assert values and {k: taken[k] for k in values} == values


def test_default_yaml_lists_every_key_at_its_default() -> None:
    assert load_yaml(CONFIGS / "default.yaml") == TrainConfig().to_dict()


# recipe keys whose value is the default's: free for auto's candidates unless the user sets them
AT_DEFAULT = {"score_rule": "topk_mean", "patch_stages": ()}


def test_pretrained_recipe_fills_only_the_keys_left_at_their_defaults() -> None:
    from simclr_ad.config import apply_pretrained_recipe

    config, changed = apply_pretrained_recipe(build_config(weights="imagenet"))
    assert changed == {"epochs": 0, "image_size": 512, "positional": False} | AT_DEFAULT
    assert (config.epochs, config.image_size, config.score_rule) == (0, 512, "topk_mean")
    config, changed = apply_pretrained_recipe(build_config(weights="imagenet", image_size=384))
    assert config.image_size == 384 and "image_size" not in changed
    for unchanged in (build_config(weights="none"), build_config(weights="x.pt", auto=False)):
        assert apply_pretrained_recipe(unchanged) == (unchanged, {})


def test_keys_given_at_their_default_values_are_kept_as_given(tmp_path: Path) -> None:
    from simclr_ad.config import apply_pretrained_recipe

    # a flag or --set at the default's value: the user asked for it
    config = build_config(weights="x.pt", image_size=224)
    assert config.pinned == ("image_size",)
    config, changed = apply_pretrained_recipe(config)
    assert changed == {"epochs": 0, "positional": False} | AT_DEFAULT
    assert config.image_size == 224
    # a config file that gives them (mvtec5.yaml: image_size 224, epochs 50)
    mvtec5 = build_config(load_yaml(CONFIGS / "mvtec5.yaml"), weights="x.pt")
    config, changed = apply_pretrained_recipe(mvtec5)
    assert (config.image_size, config.epochs) == (224, 50)
    assert changed == {"positional": False} | AT_DEFAULT
    # a file that states what it pins (default.yaml, a written config.yaml): just those
    config, changed = apply_pretrained_recipe(
        build_config(load_yaml(CONFIGS / "default.yaml"), weights="x.pt")
    )
    assert changed == {"epochs": 0, "image_size": 512, "positional": False} | AT_DEFAULT
    path = tmp_path / "c.yaml"
    path.write_text("pinned: [epochs]\nimage_size: 224\n")
    assert build_config(load_yaml(path)).pinned == ("epochs",)
    assert build_config(load_yaml(path), image_size=224).pinned == ("epochs", "image_size")
    with pytest.raises(UserError, match="pinned"):
        build_config(pinned=["lr"])
    config, changed = apply_pretrained_recipe(build_config(weights="x.pt", positional=True))
    assert config.positional and config.pinned == ("positional",) and "positional" not in changed


@pytest.mark.parametrize("other", [{"calibration": "holdout"}, {"pooled": True}])
def test_positional_maps_need_one_categorys_cross_fitted_maps(other: dict[str, Any]) -> None:
    with pytest.raises(UserError, match="positional"):
        build_config(positional=True, **other)


def test_calibration_and_aspect_are_validated() -> None:
    with pytest.raises(UserError, match="calibration="):
        build_config(calibration="test-set")
    with pytest.raises(UserError, match="calibration_folds"):
        build_config(calibration_folds=1)
    with pytest.raises(UserError, match="aspect"):
        build_config(aspect="wide")


def test_the_documented_configs_ship_inside_the_package_and_only_there() -> None:
    assert SHIPPED_CONFIGS.parent == Path(simclr_ad.__file__).resolve().parent
    names = set(shipped_configs())
    assert {"default", "mvtec5", "pretrained-512", "writeup"} < names
    assert {"experiments/bank-rotations", "experiments/train-crop"} < names
    assert not (Path(__file__).resolve().parents[2] / "configs").exists()  # no copy to drift


def test_a_config_is_found_by_name_and_a_path_still_wins(tmp_path, monkeypatch) -> None:
    assert resolve_config_file("pretrained-512") == CONFIGS / "pretrained-512.yaml"
    assert load_yaml(resolve_config_file("writeup"))["primary"] == "mahalanobis_z"
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 3\n")
    assert resolve_config_file(str(own)) == own
    monkeypatch.chdir(tmp_path)
    (tmp_path / "writeup").write_text("epochs: 4\n")  # a local file named like a shipped one
    assert resolve_config_file("writeup") == Path("writeup")


def test_an_unknown_config_name_lists_the_shipped_ones(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as raised:
        resolve_config_file("pretrained-521")
    message = str(raised.value)
    assert "\n" not in message and "pretrained-521" in message
    assert "default, mvtec5, pretrained-512, writeup" in message
    # the clone-relative path of old instructions names the shipped file to use instead
    with pytest.raises(UserError, match=r"the shipped writeup\.yaml is --config writeup"):
        resolve_config_file("configs/writeup.yaml")
    other = resolve_config_file("elsewhere/mine.yaml")  # any other path: load_yaml reports it
    with pytest.raises(UserError, match=r"cannot read config file elsewhere/mine\.yaml"):
        load_yaml(other)


def test_the_wheel_holds_the_config_files(tmp_path) -> None:
    """Built from a copy of the project (the checkout stays clean) as a user's pip builds it."""
    root = Path(__file__).resolve().parents[2]
    project = tmp_path / "project"
    project.mkdir()
    for path in root.iterdir():  # pyproject.toml, README.md, LICENSE...
        if path.is_file():
            shutil.copy2(path, project / path.name)
    shutil.copytree(
        root / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "-q", "-w", str(tmp_path / "dist")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("simclr_ad-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"simclr_ad/configs/{name}.yaml" for name in shipped_configs()}
    assert shipped and shipped <= names
    installed = tmp_path / "site"  # a pure-Python wheel unpacked is the package installed
    zipfile.ZipFile(wheel).extractall(installed)
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from simclr_ad.config import *; "
            "print(load_yaml(resolve_config_file('pretrained-512'))['image_size'], "
            "resolve_config_file('pretrained-512'))",
        ],
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    size, path = found.stdout.split()
    assert size == "512" and Path(path).is_relative_to(installed)
