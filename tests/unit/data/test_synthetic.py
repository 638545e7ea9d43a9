"""Tests for the synthetic MVTec-layout dataset generator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr_ad.data.synthetic import (
    CATEGORIES,
    MIN_IMAGE_SIZE,
    SynthSummary,
    generate_dataset,
)
from simclr_ad.errors import UserError

SIZE = 64
N_TRAIN = 3
N_TEST = 2
SEED = 7
DEFECTS = [(name, defect) for name, spec in CATEGORIES.items() for defect in spec.defect_types]


def _png_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _generate(
    out: Path,
    *,
    categories: Sequence[str] = ("fabric", "pill", "bolt"),
    image_size: int = SIZE,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    seed: int = SEED,
) -> SynthSummary:
    return generate_dataset(
        out, categories=categories, image_size=image_size, n_train=n_train, n_test=n_test, seed=seed
    )


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return _generate(tmp_path_factory.mktemp("synth"))


def test_registry_has_the_three_categories() -> None:
    assert {"fabric", "pill", "bolt"} <= set(CATEGORIES)
    assert CATEGORIES["bolt"].grayscale
    assert not CATEGORIES["fabric"].grayscale and not CATEGORIES["pill"].grayscale


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_registry_entries_are_consistent(name: str) -> None:
    spec = CATEGORIES[name]
    assert spec.name == name
    assert spec.description
    assert len(spec.defect_types) == len(set(spec.defect_types)) >= 4
    assert "good" not in spec.defect_types


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_layout_and_counts(dataset: SynthSummary, name: str) -> None:
    spec = CATEGORIES[name]
    folder = dataset.root / name
    names = [f"{i:03d}.png" for i in range(N_TEST)]
    assert sorted(p.name for p in (folder / "train" / "good").iterdir()) == [
        f"{i:03d}.png" for i in range(N_TRAIN)
    ]
    assert {p.name for p in (folder / "test").iterdir()} == {"good", *spec.defect_types}
    assert {p.name for p in (folder / "ground_truth").iterdir()} == set(spec.defect_types)
    for kind in ("good", *spec.defect_types):
        assert sorted(p.name for p in (folder / "test" / kind).iterdir()) == names
    for defect in spec.defect_types:
        masks = sorted(p.name for p in (folder / "ground_truth" / defect).iterdir())
        assert masks == [f"{i:03d}_mask.png" for i in range(N_TEST)]
    counts = dataset.counts[name]
    assert (counts.train_good, counts.test_good) == (N_TRAIN, N_TEST)
    assert dict(counts.test_defects) == dict.fromkeys(spec.defect_types, N_TEST)


def test_summary(dataset: SynthSummary) -> None:
    assert dataset.categories == ("fabric", "pill", "bolt")
    assert (dataset.image_size, dataset.seed) == (SIZE, SEED)
    expected = sum(N_TRAIN + N_TEST * (1 + len(CATEGORIES[n].defect_types)) for n in CATEGORIES)
    assert dataset.total == expected == len(list(dataset.root.rglob("[0-9][0-9][0-9].png")))


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_images_have_size_and_mode(dataset: SynthSummary, name: str) -> None:
    mode = "L" if CATEGORIES[name].grayscale else "RGB"
    for path in (dataset.root / name).glob("t*/*/*.png"):
        with Image.open(path) as image:
            assert (image.size, image.mode) == ((SIZE, SIZE), mode), path


@pytest.mark.parametrize(("name", "defect"), DEFECTS)
def test_masks_are_binary_nonempty_and_image_sized(
    dataset: SynthSummary, name: str, defect: str
) -> None:
    for path in (dataset.root / name / "ground_truth" / defect).iterdir():
        with Image.open(path) as image:
            assert (image.size, image.mode) == ((SIZE, SIZE), "L")
            mask = np.asarray(image)
        assert set(np.unique(mask).tolist()) == {0, 255}, path
        assert (mask == 255).mean() < 0.1, path


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    first = _png_bytes(_generate(tmp_path / "a", n_train=2, n_test=1).root)
    second = _png_bytes(_generate(tmp_path / "b", n_train=2, n_test=1).root)
    assert first == second
    assert len(first) == 3 * (2 + 1 + 4 + 4)


def test_another_seed_gives_other_images(tmp_path: Path) -> None:
    first = _png_bytes(_generate(tmp_path / "a", categories=["pill"], n_train=2, n_test=0).root)
    other = _generate(tmp_path / "b", categories=["pill"], n_train=2, n_test=0, seed=SEED + 1)
    second = _png_bytes(other.root)
    assert first.keys() == second.keys()
    assert all(first[k] != second[k] for k in first)


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_category_alone_matches_category_in_a_set(
    dataset: SynthSummary, tmp_path: Path, name: str
) -> None:
    alone = _generate(tmp_path, categories=[name])
    assert alone.categories == (name,)
    assert _png_bytes(tmp_path / name) == _png_bytes(dataset.root / name)


def test_good_images_vary(dataset: SynthSummary) -> None:
    for name in CATEGORIES:
        images = [np.asarray(Image.open(p)) for p in sorted((dataset.root / name).glob("*/good/*"))]
        assert len({image.tobytes() for image in images}) == len(images)


@pytest.mark.parametrize(("name", "defect"), DEFECTS)
def test_defect_changes_pixels_inside_its_mask_only(name: str, defect: str) -> None:
    """Same generator state with and without the defect: the difference lies in the mask."""
    spec = CATEGORIES[name]
    for seed in range(4):
        good = spec.sample(_rng(seed), image_size=SIZE).image.astype(float)
        sample = spec.sample(_rng(seed), image_size=SIZE, defect=defect)
        diff = np.abs(sample.image.astype(float) - good)
        diff = diff.max(axis=-1) if diff.ndim == 3 else diff
        mask = sample.mask
        assert mask.shape == (SIZE, SIZE) and 0.002 < mask.mean() < 0.05  # MVTec-like 0.2-5 %
        inside, outside = diff[mask].mean(), diff[~mask].mean()
        assert inside > 8.0, (seed, inside)  # visible: several grey levels on average
        assert inside > 10.0 * outside, (seed, inside, outside)
        assert (diff[~mask] > 10).mean() < 0.02, seed  # little change outside the mask


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_good_sample_has_empty_mask(name: str) -> None:
    sample = CATEGORIES[name].sample(_rng(0), image_size=SIZE)
    assert sample.mask.shape == (SIZE, SIZE) and not sample.mask.any()
    assert sample.image.shape == ((SIZE, SIZE) if CATEGORIES[name].grayscale else (SIZE, SIZE, 3))


def test_smallest_size_still_has_visible_defects(tmp_path: Path) -> None:
    summary = _generate(tmp_path, image_size=MIN_IMAGE_SIZE, n_train=1, n_test=4)
    for mask_path in summary.root.glob("*/ground_truth/*/*.png"):
        with Image.open(mask_path) as image:
            assert image.size == (MIN_IMAGE_SIZE, MIN_IMAGE_SIZE)
            assert np.asarray(image).max() == 255, mask_path


def test_no_test_images(tmp_path: Path) -> None:
    summary = _generate(tmp_path, categories=["bolt"], n_test=0)
    assert summary.counts["bolt"].total == N_TRAIN
    assert not list((tmp_path / "bolt" / "test").rglob("*.png"))


def test_unknown_category_names_it_and_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError) as excinfo:
        _generate(tmp_path, categories=["fabric", "carpet"])
    message = str(excinfo.value)
    assert "'carpet'" in message and "\n" not in message
    assert all(name in message for name in CATEGORIES)
    assert not list(tmp_path.iterdir())  # nothing written before the check


@pytest.mark.parametrize(
    ("image_size", "n_train", "n_test", "seed", "expected"),
    [
        (MIN_IMAGE_SIZE - 1, N_TRAIN, N_TEST, SEED, f"image_size.*{MIN_IMAGE_SIZE - 1}"),
        (SIZE, 0, N_TEST, SEED, "n_train.*0"),
        (SIZE, N_TRAIN, -1, SEED, "n_test.*-1"),
        (SIZE, N_TRAIN, N_TEST, -3, "seed.*-3"),
    ],
)
def test_out_of_range_arguments_are_user_errors(
    tmp_path: Path, image_size: int, n_train: int, n_test: int, seed: int, expected: str
) -> None:
    with pytest.raises(UserError, match=expected):
        _generate(tmp_path, image_size=image_size, n_train=n_train, n_test=n_test, seed=seed)


def test_unknown_defect_type_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"'dent'.*scratch"):
        CATEGORIES["fabric"].sample(_rng(0), image_size=SIZE, defect="dent")
