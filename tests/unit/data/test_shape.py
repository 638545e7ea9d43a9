"""Input shapes that follow the training images' aspect ratio."""

from pathlib import Path

import pytest
from PIL import Image

from simclr_ad.data.mvtec import Sample
from simclr_ad.data.shape import choose_shape


def _images(folder: Path, size: tuple[int, int], n: int = 3) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("L", size).save(path)  # PIL size: (width, height)
        samples.append(Sample(path, "c", "good", 0))
    return samples


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((500, 1250), (1280, 512)),  # KolektorSDD-like: tall, the shorter side at 512
        ((1250, 500), (512, 1280)),  # wide
        ((512, 600), (512, 512)),  # within 1.25: square
        ((100, 1000), (2048, 512)),  # capped at 4:1
    ],
)
def test_auto_keeps_the_aspect_ratio(
    tmp_path: Path, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert choose_shape(_images(tmp_path, size), 512, "auto") == expected


def test_square_squashes_and_unreadable_files_are_ignored(tmp_path: Path) -> None:
    samples = _images(tmp_path, (500, 1250))
    assert choose_shape(samples, 256, "square") == (256, 256)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert choose_shape([Sample(bad, "c", "good", 0)], 256, "auto") == (256, 256)
    assert choose_shape([*samples, Sample(bad, "c", "good", 0)], 256, "auto") == (640, 256)
