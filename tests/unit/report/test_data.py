"""The stored report data: gallery choice, thumbnails, nearest neighbours, save/load."""

from pathlib import Path

import numpy as np
import pytest
import torch

from simclr_ad.errors import UserError
from simclr_ad.report.data import (
    DEFECT_LOWEST,
    GOOD_HIGHEST,
    collect_category,
    load_category_data,
    nearest_neighbours,
    read_scores_csv,
    save_category,
    select_gallery,
    spread_subset,
    thumbnails,
)
from simclr_ad.report.projection import project


def test_spread_subset_keeps_ends_and_caps_the_count() -> None:
    assert spread_subset(3, 5) == [0, 1, 2]
    chosen = spread_subset(10, 3)
    assert len(chosen) == 3 and chosen[0] == 0 and chosen[-1] == 9
    assert len(spread_subset(1000, 200)) == 200


def test_gallery_spreads_examples_and_picks_the_worst_cases() -> None:
    scores = np.array([0.1, 0.9, 0.3, 0.5, 0.2, 0.8, 0.7, 0.6])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    defects = ["good", "good", "good", "hole", "hole", "hole", "hole", "crack"]
    g = select_gallery(scores, labels, defects, per_defect=2, worst=2)
    roles = list(g.role)
    assert (
        roles
        == ["defect:crack", "defect:hole", "defect:hole"] + [GOOD_HIGHEST] * 2 + [DEFECT_LOWEST] * 2
    )
    assert list(g.index[1:3]) == [4, 5]  # the lowest and the highest hole
    assert list(g.index[3:5]) == [1, 2]  # good parts, highest score first
    assert list(g.index[5:]) == [4, 3]  # defects, lowest score first


def test_thumbnails_shrink_large_images_and_keep_small_ones() -> None:
    big = torch.full((2, 3, 256, 256), 200, dtype=torch.uint8)
    out = thumbnails(big, size=64)
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8 and (out == 200).all()
    assert thumbnails(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), size=64).shape == (1, 32, 32, 3)


def test_nearest_neighbours_by_cosine() -> None:
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    query = torch.tensor([[5.0, 0.1], [-2.0, 0.3], [0.2, 2.0]])
    assert nearest_neighbours(query, reference).tolist() == [0, 2, 1]


def _collected(n: int = 6, size: int = 16):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 255, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = np.array([0, 0, 0, 1, 1, 1])
    gallery = select_gallery(np.arange(n, dtype=float), labels, ["good"] * 3 + ["hole"] * 3)
    return collect_category(
        paths=[f"/d/{i}.png" for i in range(n)],
        pixels=pixels,
        masks=torch.zeros(n, size, size, dtype=torch.bool),
        maps=torch.rand(n, size, size, generator=g),
        h_test=torch.randn(n, 4, generator=g),
        train_pixels=pixels[:3],
        h_train=torch.randn(3, 4, generator=g),
        gallery=gallery,
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    data = _collected()
    save_category(tmp_path / "c.npz", data)
    back = load_category_data(tmp_path / "c.npz")
    assert list(back.paths) == list(data.paths)
    assert back.maps is not None and data.maps is not None
    np.testing.assert_array_equal(back.maps, data.maps)
    np.testing.assert_array_equal(back.gallery.index, data.gallery.index)
    assert back.thumbnails.shape == (len(data.gallery.index), 16, 16, 3)
    assert back.h_test.dtype == np.float16


def test_damaged_report_data_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "c.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot read report data"):
        load_category_data(bad)


def test_scores_csv_is_grouped_by_category(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(
        "path,category,defect_type,label,patch,prediction\n"
        "a.png,x,good,0,0.1,0\nb.png,y,hole,1,0.9,1\nc.png,x,hole,1,0.7,1\n"
    )
    rows = read_scores_csv(path, ["patch"])
    assert list(rows) == ["x", "y"]
    assert rows["x"].paths == ["a.png", "c.png"] and list(rows["x"].scores["patch"]) == [0.1, 0.7]
    with pytest.raises(UserError, match="cannot read"):
        read_scores_csv(path, ["knn_h"])


def test_projections_have_two_columns_per_point() -> None:
    x = np.random.default_rng(0).normal(size=(20, 8))
    views = project(x)
    assert views.pca.shape == (20, 2) and views.tsne.shape == (20, 2)
    assert project(x[:2]).tsne.shape == (2, 2)
