"""``--set KEY=VALUE``: any config key from the command line, between ``--config`` and the
flags; the research settings have no flag of their own and a removed flag names its ``--set``."""

from pathlib import Path

import pytest
import yaml

from simclr_ad.cli import main
from simclr_ad.config import (
    TrainConfig,
    build_config,
    load_yaml,
    parse_set,
    resolve_config_file,
    shipped_configs,
)
from simclr_ad.errors import UserError
from simclr_ad.train_flags import RESEARCH_FLAGS


def _config(capsys, *argv: str) -> dict:
    assert main(["config", "--weights", "none", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_values_read_as_yaml_scalars_and_lists() -> None:
    values = parse_set(["epochs=3", "lr=1e-3", "pooled=true", "patch_stages=[1, 2]", "data="])
    assert values == {
        "epochs": 3,
        "lr": "1e-3",
        "pooled": True,
        "patch_stages": [1, 2],
        "data": "",
    }
    config = build_config(**values)
    assert (config.epochs, config.lr, config.pooled, config.patch_stages) == (3, 1e-3, True, (1, 2))
    assert parse_set(["epochs=3", "epochs=4"]) == {"epochs": 4}  # the last one wins
    assert build_config(**parse_set(["categories=a,b"])).categories == ("a", "b")


def test_precedence_defaults_file_set_flags(capsys, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 0.001\nknn_k: 7\n")
    printed = _config(capsys, "--config", str(path), "--set", "epochs=4", "--set", "lr=0.002")
    assert (printed["epochs"], printed["lr"], printed["knn_k"]) == (4, 0.002, 7)
    printed = _config(capsys, "--config", str(path), "--set", "epochs=4", "--epochs", "5")
    assert printed["epochs"] == 5  # an explicit flag beats --set
    assert printed["bank_rotations"] == TrainConfig().bank_rotations


def test_a_research_setting_reaches_the_config(capsys) -> None:
    printed = _config(capsys, "--set", "bank_rotations=2", "--set", "patch_k=3")
    assert (printed["bank_rotations"], printed["patch_k"]) == (2, 3)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("epohcs=3", "unknown config key(s) epohcs (epohcs: did you mean epochs?)"),
        ("bank-rotations=2", "did you mean bank_rotations?"),
        ("bank_rotations=3", "invalid config value bank_rotations=3: expected 1, 2 or 4"),
        ("lr=inf", "invalid config value lr=inf: expected a finite number"),
        ("epochs", "--set 'epochs': expected KEY=VALUE"),
        ("patch_stages=[1, 2", "--set patch_stages=[1, 2: not a YAML value"),
    ],
)
def test_bad_set_is_one_line_and_exit_code_2(capsys, item: str, message: str) -> None:
    assert main(["config", "--set", item]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert message in captured.err


@pytest.mark.parametrize("flag", sorted(RESEARCH_FLAGS))
def test_a_removed_research_flag_names_its_set_form(capsys, flag: str) -> None:
    key = RESEARCH_FLAGS[flag]
    for argv in (["train", "--out", "r", flag, "2"], ["config", f"{flag}=2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag} is a research setting: --set {key}=2")
        assert err.count("\n") == 1
    assert key in {f for f in TrainConfig.__dataclass_fields__}  # still a config key


def test_a_removed_flag_points_at_its_experiment_file(capsys) -> None:
    assert main(["config", "--bank-rotations", "4"]) == 2
    assert "--config experiments/bank-rotations" in capsys.readouterr().err


EXPERIMENTS = sorted(name for name in shipped_configs() if name.startswith("experiments/"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_resolves_validates_and_links_its_result(name: str) -> None:
    path = resolve_config_file(name)
    values = load_yaml(path)
    config = build_config(values)
    text = path.read_text(encoding="utf-8")
    assert "docs/research-log.md#" in text  # where it was measured
    research = set(RESEARCH_FLAGS.values()) & set(values)
    assert research and all(getattr(config, k) != getattr(TrainConfig(), k) for k in research)


def test_the_experiments_cover_the_measured_research_flags() -> None:
    named = {name.removeprefix("experiments/") for name in EXPERIMENTS}
    measured = {flag[2:] for flag in RESEARCH_FLAGS} - {"msc-angular"}  # never measured alone
    assert measured <= named


def test_set_works_on_train_too(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["-q", "train", "--data", str(tiny_data), "--out", str(run), "--weights", "none"]
    argv += ["--categories", "fabric", "--image-size", "64", "--epochs", "0"]
    assert main([*argv, "--set", "patch_k=2", "--set", "coreset_ratio=0.5"]) == 0
    written = load_yaml(run / "config.yaml")
    assert (written["patch_k"], written["coreset_ratio"]) == (2, 0.5)


def test_parse_set_refuses_an_empty_key() -> None:
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_set(["=3"])
