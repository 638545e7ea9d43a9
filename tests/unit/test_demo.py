"""The demo's choice of encoder: a local weights file, else the hub's ImageNet weights, else
random init with the message it has always printed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
from safetensors.torch import save_file

from simclr_ad import demo
from simclr_ad.cli import main
from simclr_ad.errors import UserError


def _weights_file(tmp_path: Path, backbone: str) -> Path:
    """A small stand-in for ../shared's file: the same backbone and key names, random values."""
    path = tmp_path / f"{backbone}.safetensors"
    save_file(timm.create_model(backbone, pretrained=False).state_dict(), str(path))
    return path


def test_a_local_weights_file_is_used_as_it_is(tmp_path: Path) -> None:
    weights = _weights_file(tmp_path, "efficientnet_lite0")
    encoder = demo.choose_encoder("efficientnet_lite0", weights)
    assert encoder == demo.DemoEncoder(
        "efficientnet_lite0", str(weights), demo.PRETRAINED_DEMO_TRAIN
    )
    assert encoder.settings["epochs"] == 0  # pretrained features as they are


def test_a_weights_file_for_another_backbone_is_refused_before_any_work(tmp_path: Path) -> None:
    weights = _weights_file(tmp_path, "efficientnet_lite0")
    with pytest.raises(UserError, match="does not fit this backbone"):
        demo.choose_encoder("resnet18", weights)


def test_offline_without_a_file_falls_back_to_random_init(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def offline(name: str, weights: str = "none") -> None:
        raise UserError(f"cannot get ImageNet weights for {name} (the model hub is unreachable)")

    monkeypatch.setattr(demo, "create_backbone", offline)
    with caplog.at_level(logging.WARNING, logger="simclr_ad.demo"):
        encoder = demo.choose_encoder()
    assert encoder == demo.DemoEncoder("resnet18", "none", demo.DEMO_TRAIN)
    assert caplog.messages == [
        "cannot get ImageNet weights for resnet18 (the model hub is unreachable)\n"
        "-> the demo continues with random init (--weights none)"
    ]


def test_hub_weights_are_used_when_the_hub_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(
        demo, "create_backbone", lambda name, weights: asked.append((name, weights))
    )
    assert demo.choose_encoder() == demo.DemoEncoder("resnet18", "imagenet", demo.DEMO_TRAIN)
    assert asked == [("resnet18", "imagenet")]


def test_demo_with_a_missing_weights_file_is_one_line_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    missing = tmp_path / "nothing.safetensors"
    code = main(["demo", "--out", str(out), "--weights", str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == (
        f"error: weights file {missing} does not exist (use --weights imagenet|none|PATH)"
    )
    assert not out.exists()
