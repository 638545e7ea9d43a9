"""Issue 16, item 16: the pixel limit of the service's uploads applies to files too.

Before the fix the CLI decoded 81-megapixel PNGs whole (16 of them took ``predict`` to 2.8 GB);
now images above ``MAX_PIXELS`` (``--max-pixels`` for predict and serve) are refused from their
header, before their pixels are decoded.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageFile

from simclr_ad.cli import main
from simclr_ad.data.images import MAX_PIXELS, UnreadableImageError, read_rgb
from simclr_ad.service import server
from simclr_ad.service.uploads import UploadLimits


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9000×9000 (81 megapixels, 243 MB as RGB) in a PNG of a few kB."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (9000, 9000)).save(path)
    return path


def test_files_above_the_pixel_limit_are_refused_before_decoding(
    huge_png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert 9000 * 9000 > MAX_PIXELS == UploadLimits().max_pixels  # one limit everywhere

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UnreadableImageError, match="9000×9000 pixels, more than the limit"):
        read_rgb(huge_png, 32)  # the default: train and evaluate decode through read_rgb
    with pytest.raises(UnreadableImageError, match="more than the limit of 1000"):
        read_rgb(huge_png, 32, max_pixels=1000)


def test_predict_lists_a_huge_image_as_unreadable(
    huge_png: Path, tiny_fabric_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (40, 40)).save(folder / "small.png")
    (folder / "huge.png").write_bytes(huge_png.read_bytes())
    out = tmp_path / "p.csv"
    argv = ["-q", "predict", "--model", str(tiny_fabric_model), str(folder), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--max-pixels", "2000"]) == 0
    with open(out, newline="") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert "more than the limit of 2000" in rows["huge.png"]["error"]
    assert rows["small.png"]["error"] == "" and rows["small.png"]["score"]
    assert main([*argv, "--overwrite", "--max-pixels", "0"]) == 2


def test_serve_takes_the_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        server, "_serve_in_process", lambda *args: seen.setdefault("limits", args[5])
    )
    server.serve(tmp_path / "m", max_pixels=1234, max_upload_bytes=99)
    assert seen["limits"] == UploadLimits(max_bytes=99, max_pixels=1234)
    with pytest.raises(server.UserError, match="--max-pixels must be >= 1"):
        server.serve(tmp_path / "m", max_pixels=0)
