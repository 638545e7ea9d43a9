"""The config's sections: every key in one, flat and nested files, flat and dotted keys, and the
detector section as the one source of ``DetectorSettings``."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from simclr_ad.cli import main
from simclr_ad.config import (
    SECTIONS,
    TrainConfig,
    build_config,
    dump_yaml,
    flat_keys,
    load_yaml,
)
from simclr_ad.detector import DetectorSettings
from simclr_ad.errors import UserError


def test_every_key_is_in_exactly_one_section() -> None:
    keys = [key for section in SECTIONS.values() for key in section]
    assert sorted(keys) == sorted(f.name for f in dataclasses.fields(TrainConfig))


def test_a_nested_file_gives_the_same_config_as_a_flat_one(tmp_path: Path) -> None:
    flat, nested = tmp_path / "flat.yaml", tmp_path / "nested.yaml"
    flat.write_text("epochs: 3\npatch_k: 2\nbackbone: efficientnet_lite0\ndata: /d\n")
    nested.write_text(
        "loop:\n  epochs: 3\ndetector:\n  patch_k: 2\nmodel:\n  backbone: efficientnet_lite0\n"
        "data:\n  data: /d\n"
    )
    config = build_config(load_yaml(flat))
    assert build_config(load_yaml(nested)) == config
    assert (config.epochs, config.patch_k, config.backbone, config.data) == (
        3,
        2,
        "efficientnet_lite0",
        "/d",
    )


def test_written_flat_and_read_back(tmp_path: Path) -> None:
    config = build_config(**{"loop.epochs": 4, "detector.bank_rotations": 2})
    written = yaml.safe_load(dump_yaml(config))
    assert "loop" not in written and (written["epochs"], written["bank_rotations"]) == (4, 2)
    assert build_config(written) == config


def test_flat_and_dotted_keys_are_the_same_key() -> None:
    assert build_config(epochs=3) == build_config(**{"loop.epochs": 3})
    assert flat_keys({"detector.patch_k": 3, "patch_k": 4}) == {"patch_k": 4}  # later wins


def test_a_key_under_the_wrong_section_names_its_own() -> None:
    with pytest.raises(UserError, match=r"detector\.epochs: epochs is in the loop section"):
        build_config(**{"detector.epochs": 3})
    with pytest.raises(UserError, match=r"unknown config key\(s\) patch_kk"):
        build_config(**{"detector.patch_kk": 3})


def test_set_takes_dotted_keys_and_a_nested_config_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "nested.yaml"
    path.write_text("detector:\n  map_sigma: 2.0\n  patch_k: 2\n")
    argv = ["config", "--weights", "none", "--config", str(path), "--set", "detector.patch_k=3"]
    assert main([*argv, "--set", "loop.epochs=2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["map_sigma"], printed["patch_k"], printed["epochs"]) == (2.0, 3, 2)
    assert main(["config", "--set", "loop.patch_k=3"]) == 2
    assert "patch_k is in the detector section" in capsys.readouterr().err


def test_detector_settings_are_the_detector_section() -> None:
    config = build_config(
        image_size=96, seed=7, eval_batch_size=5, patch_k=3, scorers="all", coreset_ratio=0.5
    )
    settings = DetectorSettings.from_config(config)
    section = config.section("detector")
    assert settings.batch_size == section.pop("eval_batch_size") == 5
    assert (settings.image_size, settings.seed) == (96, 7)
    assert {k: getattr(settings, k) for k in section} == section
    own = {f.name for f in dataclasses.fields(DetectorSettings)}
    assert own == set(section) | {"image_size", "seed", "batch_size"}  # nothing copied by hand


def test_an_old_flat_run_config_still_loads(tmp_path: Path) -> None:
    """A ``config.yaml`` as every run folder so far holds it: flat, every key."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(TrainConfig().to_dict(), sort_keys=False))
    assert build_config(load_yaml(path)) == TrainConfig()


def test_the_loop_settings_are_the_loop_section_and_the_seed() -> None:
    from simclr_ad.training import LoopSettings

    config = build_config(epochs=3, batch_size=16, lr=1e-3, seed=9, amp=False, checkpoint_every=2)
    loop = LoopSettings.from_config(config)
    assert (loop.epochs, loop.batch_size, loop.lr, loop.seed, loop.amp, loop.checkpoint_every) == (
        3,
        16,
        1e-3,
        9,
        False,
        2,
    )
    own = {f.name for f in dataclasses.fields(LoopSettings)}
    assert own - {"seed"} <= set(SECTIONS["loop"])


def test_the_model_spec_is_the_model_section_and_its_normalisation() -> None:
    from simclr_ad.detector_bundle import model_spec
    from simclr_ad.models.simclr import ModelSpec

    config = build_config(head_hidden=[64], head_out=32, head_dropout=[0.2], weights="none")
    spec = model_spec(config)
    assert (spec.backbone, spec.head_hidden, spec.head_out, spec.head_dropout) == (
        "resnet18",
        (64,),
        32,
        (0.2,),
    )
    own = {f.name for f in dataclasses.fields(ModelSpec)}
    assert own == set(SECTIONS["model"]) - {"weights"} | {"mean", "std"}
