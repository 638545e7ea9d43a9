"""Issue 16, outputs: overlay names, the exit code of a prediction with nothing readable, and the
``lr`` column of ``train_log.csv``.

Each test failed before its fix: with ``a.png``, ``a.jpg`` and ``a-2.png`` in one folder the
overlay named ``a.png`` showed ``a.jpg``, ``predict`` exited 0 when no input could be read, and
the logged ``lr`` was the rate of the step after the epoch.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr_ad.cli import main
from simclr_ad.data.augment import create_augment
from simclr_ad.distributed import DistInfo
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.predict import collect_images
from simclr_ad.training import LoopSettings, Trainer


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24, 3), value, np.uint8)).save(path)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {Path(row["path"]).name: row for row in csv.DictReader(handle)}


def test_overlay_names_keep_the_file_name_and_never_collide(tmp_path: Path) -> None:
    folder, other = tmp_path / "in", tmp_path / "other"
    for name in ("a.png", "a.jpg", "a-2.png", "a.png.png", "sub/a.png"):
        _image(folder / name, 1)
    _image(other / "a.png", 2)
    files = collect_images([folder, other, folder / "a.jpg"])
    names = {f.path.relative_to(tmp_path).as_posix(): f.heatmap_name.as_posix() for f in files[:6]}
    assert names["in/a.png"] == "a.png.png" and names["in/a.jpg"] == "a.jpg.png"
    assert names["in/a-2.png"] == "a-2.png.png" and names["in/sub/a.png"] == "sub/a.png.png"
    assert names["in/a.png.png"] == "a.png.png.png"
    assert names["other/a.png"] not in {"a.png.png", "a.png.png.png"}
    assert files[6].path == folder / "a.jpg" and files[6].heatmap_name == Path("a.jpg-2.png")
    heatmaps = [f.heatmap_name for f in files]
    assert len(set(heatmaps)) == len(heatmaps) == 7  # a.jpg given twice: two distinct overlays


def test_predict_overlays_match_their_images_and_are_in_the_csv(
    tiny_fabric_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    for name, value in (("a.png", 0), ("a.jpg", 255), ("a-2.png", 128)):
        _image(folder / name, value)
    (folder / "b.png").write_bytes(b"not an image")
    out, maps = tmp_path / "preds.csv", tmp_path / "maps"
    argv = ["-q", "predict", "--model", str(tiny_fabric_model), str(folder), "--out", str(out)]
    assert main([*argv, "--heatmaps", str(maps), "--device", "cpu"]) == 0
    rows = _rows(out)
    for name in ("a.png", "a.jpg", "a-2.png"):
        assert rows[name]["heatmap"] == str(maps / f"{name}.png")
    assert rows["b.png"]["heatmap"] == ""  # unreadable: no overlay
    dark = np.asarray(Image.open(maps / "a.png.png")).mean()
    bright = np.asarray(Image.open(maps / "a.jpg.png")).mean()
    assert bright > dark + 40  # each overlay is blended over its own image
    assert sorted(p.name for p in maps.iterdir()) == ["a-2.png.png", "a.jpg.png", "a.png.png"]
    assert main([*argv, "--overwrite", "--device", "cpu"]) == 0
    assert {row["heatmap"] for row in _rows(out).values()} == {""}  # no --heatmaps


def test_predict_with_nothing_readable_exits_non_zero(
    tiny_fabric_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "preds.csv"
    argv = ["-q", "predict", "--model", str(tiny_fabric_model), str(folder), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: none of the 2 images could be read; the reasons are in {out}"]
    assert all(row["error"] for row in _rows(out).values())  # the rows are still written
    _image(folder / "c.png", 9)
    assert main([*argv, "--overwrite", "--device", "cpu"]) == 0  # one readable image is enough


def test_logged_lr_is_the_rate_the_epoch_used() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18", head_hidden=(16,), head_out=8, head_dropout=(0.0,)))
    settings = LoopSettings(
        epochs=3,
        batch_size=4,
        lr=1e-2,
        weight_decay=0.0,
        temperature=0.5,
        seed=0,
        checkpoint_every=1,
        amp=False,
    )
    trainer = Trainer(model, create_augment("seed", 16), settings, torch.device("cpu"), DistInfo())
    seen: list[float] = []
    real_step = trainer.train_step

    def recording_step(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return real_step(*args, **kwargs)  # type: ignore[arg-type]

    trainer.train_step = recording_step  # type: ignore[method-assign]
    history = trainer.fit(torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8), None)
    steps = len(seen) // 3
    used = [seen[(epoch + 1) * steps - 1] for epoch in range(3)]  # each epoch's last step
    assert [row["lr"] for row in history] == pytest.approx(used, rel=1e-12)
    assert history[-1]["lr"] == pytest.approx(1e-2 / 25 / 1e4)  # OneCycle's last rate, used
