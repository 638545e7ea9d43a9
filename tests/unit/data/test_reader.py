"""The data reader on a generated tree with grayscale, RGBA, palette, 16-bit and corrupt files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr_ad.data.images import UnreadableImageError, read_mask, read_rgb
from simclr_ad.data.mvtec import (
    find_categories,
    load_category,
    resolve_categories,
    split_validation,
)
from simclr_ad.data.store import decode_images
from simclr_ad.errors import UserError


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _varied_tree(root: Path, n_good: int = 20, corrupt: int = 0) -> Path:
    """A category 'part' whose train/good holds every image mode we must read."""
    rng = np.random.default_rng(0)
    good = root / "part" / "train" / "good"
    for i in range(n_good):
        pixels = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
        mode = i % 5
        if mode == 0:
            image = Image.fromarray(pixels)
        elif mode == 1:
            image = Image.fromarray(pixels[..., 0])  # grayscale, like MVTec screw
        elif mode == 2:
            image = Image.fromarray(np.dstack([pixels, np.full((40, 40), 255, np.uint8)]))  # RGBA
        elif mode == 3:
            image = Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE)
        else:
            image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)  # 16-bit
        _save(good / f"{i:03d}.png", image)
    for i in range(corrupt):
        (good / f"bad_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _save(root / "part" / "test" / "good" / "000.png", Image.fromarray(pixels))
    _save(root / "part" / "test" / "crack" / "000.png", Image.fromarray(pixels))
    mask = np.zeros((40, 40), np.uint8)
    mask[5:9, 5:9] = 255
    _save(root / "part" / "ground_truth" / "crack" / "000_mask.png", Image.fromarray(mask))
    return root


@pytest.mark.parametrize(
    ("make", "expected_gray"),
    [
        (lambda: Image.fromarray(np.full((8, 8), 200, np.uint8)), 200),
        (lambda: Image.fromarray(np.full((8, 8), 200 * 257, np.uint16)), 200),
        (lambda: Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).convert("P"), 200),
        (lambda: Image.new("RGBA", (8, 8), (200, 200, 200, 255)), 200),
        (lambda: Image.new("RGBA", (8, 8), (200, 200, 200, 0)), 0),  # transparent -> black
        (lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 55)), 200),
    ],
)
def test_every_mode_becomes_rgb_uint8(tmp_path: Path, make, expected_gray: int) -> None:
    path = tmp_path / "x.png" if make().mode != "CMYK" else tmp_path / "x.jpg"
    make().save(path)
    pixels = read_rgb(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3)
    assert abs(int(pixels.mean()) - expected_gray) <= 2


def test_resize_and_unreadable(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.new("L", (30, 20), 7))
    assert read_rgb(path, 16).shape == (16, 16, 3)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    for bad in (empty, text, tmp_path / "missing.png"):
        with pytest.raises(UnreadableImageError, match=bad.name):
            read_rgb(bad)


def test_masks_become_binary(tmp_path: Path) -> None:
    values = np.array([[0, 1], [128, 255]], np.uint8)
    path = _save(tmp_path / "m.png", Image.fromarray(values))
    mask = read_mask(path, 2)
    assert mask.dtype == bool and mask.tolist() == [[False, True], [True, True]]
    assert read_mask(None, 3).sum() == 0


def test_layout_and_labels(tmp_path: Path) -> None:
    root = _varied_tree(tmp_path)
    assert find_categories(root) == ["part"]
    split = load_category(root, "part")
    assert len(split.train) + len(split.val) == 20
    defect = [s for s in split.test if s.label == 1]
    assert [s.defect_type for s in defect] == ["crack"]
    assert defect[0].mask_path is not None and defect[0].mask_path.name == "000_mask.png"
    assert all(s.mask_path is None for s in split.test if s.label == 0)


def test_category_without_test_is_valid_for_training(tmp_path: Path) -> None:
    _save(tmp_path / "only" / "train" / "good" / "0.png", Image.new("RGB", (8, 8)))
    _save(tmp_path / "only" / "train" / "good" / "1.png", Image.new("RGB", (8, 8)))
    split = load_category(tmp_path, "only", val_fraction=0.0)
    assert len(split.train) == 2 and split.test == ()


def test_validation_split_is_deterministic_and_sized(tmp_path: Path) -> None:
    root = _varied_tree(tmp_path, n_good=30)
    first, second = load_category(root, "part"), load_category(root, "part")
    assert first.val == second.val
    assert len(first.val) == 5  # 10% of 30 is 3, raised to the minimum of 5
    assert not {s.path for s in first.val} & {s.path for s in first.train}


@pytest.mark.parametrize(("n", "expected"), [(10, 1), (19, 2), (20, 5), (100, 10), (320, 32)])
def test_validation_counts(tmp_path: Path, n: int, expected: int) -> None:
    from simclr_ad.data.mvtec import Sample

    samples = [Sample(tmp_path / f"{i}.png", "c", "good", 0) for i in range(n)]
    train, val = split_validation(samples, 0.1, 5)
    assert len(val) == expected and len(train) == n - expected


def test_unknown_and_missing(tmp_path: Path) -> None:
    root = _varied_tree(tmp_path)
    with pytest.raises(UserError, match=r"unknown category bottle .*categories found: part"):
        resolve_categories(root, ["bottle"])
    with pytest.raises(UserError, match="does not exist"):
        find_categories(tmp_path / "nowhere")
    (root / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(UserError, match="no training images"):
        load_category(root, "empty")


def test_decode_once_skips_few_unreadable(tmp_path: Path, caplog) -> None:
    root = _varied_tree(tmp_path, n_good=40, corrupt=1)
    split = load_category(root, "part", val_fraction=0.0)
    decoded = decode_images(split.train, 24)
    assert (
        decoded.pixels.shape == (40, 3, 24, 24) and decoded.pixels.dtype.is_floating_point is False
    )
    assert len(decoded.skipped) == 1 and "bad_0.png" in str(decoded.skipped[0][0].path)
    assert "skipped 1 of 41" in caplog.text


def test_decode_refuses_many_unreadable(tmp_path: Path) -> None:
    root = _varied_tree(tmp_path, n_good=20, corrupt=2)
    split = load_category(root, "part", val_fraction=0.0)
    with pytest.raises(UserError, match=r"2 of 22 images are unreadable .*bad_"):
        decode_images(split.train, 24)


def test_decode_memory_maps_large_sets(tmp_path: Path, monkeypatch) -> None:
    import simclr_ad.data.store as store

    monkeypatch.setattr(store, "MEMMAP_THRESHOLD_BYTES", 10)
    root = _varied_tree(tmp_path, n_good=5)
    split = load_category(root, "part", val_fraction=0.0)
    decoded = decode_images(split.train, 16, cache_dir=tmp_path)
    assert list(tmp_path.glob("pixels-*/pixels.npy"))
    assert decoded.pixels.shape == (5, 3, 16, 16)
    assert int(decoded.pixels[0].sum()) == int(np.asarray(read_rgb(split.train[0].path, 16)).sum())
