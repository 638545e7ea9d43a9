"""The gallery: which pictures each shown image gets, their verdicts, small encodings, and the
anomaly maps coloured on the scale predict and the service use."""

import io
import re

import numpy as np
import torch
from PIL import Image

from simclr_ad.heatmap import colour_stops, overlay
from simclr_ad.report.data import (
    DEFECT_LOWEST,
    GOOD_HIGHEST,
    CategoryRows,
    collect_category,
    select_gallery,
)
from simclr_ad.report.gallery import (
    case_verdict,
    cases_html,
    colour_bar_html,
    gallery_cases,
    mask_png,
    webp_bytes,
)

SIZE = 32


def _category():  # type: ignore[no-untyped-def]
    """Six test images: good scores 0.1, 0.2, 0.9 and hole defects 0.3, 0.8, 1.2; threshold
    0.5, so the 0.9 good part is a false alarm and the 0.3 defect is missed."""
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 1.2])
    labels = np.array([0, 0, 0, 1, 1, 1])
    defects = ["good"] * 3 + ["hole"] * 3
    paths = [f"/d/{d}/{i:03d}.png" for i, d in enumerate(defects)]
    rows = CategoryRows(paths, defects, labels, {"patch": scores})
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    pixels = torch.from_numpy(np.stack([np.stack([x * 8, y * 8, x * 0 + 90])] * 6).astype(np.uint8))
    masks = torch.zeros(6, SIZE, SIZE, dtype=torch.bool)
    masks[3:, 8:16, 8:16] = True
    ramp = torch.linspace(0.0, 1.0, SIZE).expand(SIZE, SIZE)  # 0 left to 1 right
    data = collect_category(
        paths=paths,
        pixels=pixels,
        masks=masks,
        maps=ramp.expand(6, SIZE, SIZE).clone(),
        h_test=torch.eye(6, 4),
        train_pixels=pixels[:2],
        h_train=torch.eye(2, 4),
        gallery=select_gallery(scores, labels, defects, per_defect=2, worst=1),
    )
    return rows, data


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_cases_by_role_with_their_pictures_and_verdicts() -> None:
    rows, data = _category()
    groups = gallery_cases(rows, data, "patch", threshold=0.5, map_threshold=0.5)
    assert list(groups) == ["defect:hole", GOOD_HIGHEST, DEFECT_LOWEST]  # worst cases last
    hole = groups["defect:hole"]
    assert [(c.name, c.verdict) for c in hole] == [
        ("hole/003.png", "MISSED"),
        ("hole/005.png", "flagged"),
    ]
    assert [p.caption for p in hole[0].pictures] == ["image", "anomaly map", "ground truth"]
    (good,) = groups[GOOD_HIGHEST]
    assert (good.name, good.verdict) == ("good/002.png", "FALSE ALARM")
    assert [p.caption for p in good.pictures] == ["image", "anomaly map", "nearest good (train)"]
    names = [p.name for cases in groups.values() for c in cases for p in c.pictures]
    assert len(set(names)) == len(names) == 12
    assert names[:3] == [
        "00_defect_hole_image.webp",
        "00_defect_hole_map.webp",
        "00_defect_hole_truth.png",
    ]


def test_the_verdict_words() -> None:
    assert case_verdict(0.6, 0.5, 0) == "FALSE ALARM" and case_verdict(0.4, 0.5, 1) == "MISSED"
    assert case_verdict(0.5, 0.5, 1) == "flagged" and case_verdict(0.4, 0.5, 0) == "passed"


def test_maps_are_coloured_on_the_shared_scale() -> None:
    rows, data = _category()
    groups = gallery_cases(rows, data, "patch", threshold=0.5, map_threshold=0.5)
    picture = groups["defect:hole"][0].pictures[1]
    assert picture.media_type == "image/webp"
    expected = np.asarray(overlay(data.thumbnails[0], data.maps[0], 0.5)).astype(int)
    assert np.abs(_decode(picture.data) - expected).mean() < 4  # lossy WebP of the same overlay
    other = gallery_cases(rows, data, "patch", threshold=0.5, map_threshold=2.0)
    assert np.abs(_decode(other["defect:hole"][0].pictures[1].data) - expected).mean() > 20


def test_pictures_are_small_and_masks_one_bit() -> None:
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(128, 6, (128, 128, 3)), 0, 255).astype(np.uint8)
    encoded = webp_bytes(photo)
    assert Image.open(io.BytesIO(encoded)).format == "WEBP" and len(encoded) < 8_000
    mask = np.zeros((128, 128), dtype=bool)
    mask[10:40, 20:30] = True
    png = mask_png(mask)
    image = Image.open(io.BytesIO(png))
    assert image.mode == "1" and len(png) < 500
    np.testing.assert_array_equal(np.asarray(image), mask)


def test_html_captions_are_text_and_escaped() -> None:
    rows, data = _category()
    paths = [*rows.paths[:2], "/d/<b>/x&y.png", *rows.paths[3:]]  # the false alarm's name
    rows = CategoryRows(paths, rows.defects, rows.labels, rows.scores)
    data = type(data)(**{**data.__dict__, "paths": np.array(rows.paths)})
    groups = gallery_cases(rows, data, "patch", threshold=0.5, map_threshold=0.5)
    cases = groups[DEFECT_LOWEST] + groups[GOOD_HIGHEST]
    sources = {p.name: f"data:{p.media_type};base64,AA" for c in cases for p in c.pictures}
    page = cases_html(cases, sources)
    assert page.count('<div class="case">') == 2 and page.count("<img ") == 6
    assert '<span class="wrong">MISSED</span>' in page
    assert '<span class="wrong">FALSE ALARM</span>' in page
    assert "<figcaption>nearest good (train)</figcaption>" in page
    assert "&lt;b&gt;/x&amp;y.png<br>" in page and "<b>/" not in page


def test_colour_bar_uses_the_shared_stops() -> None:
    bar = colour_bar_html()
    assert re.findall(r"#[0-9a-f]{6}", bar) == [c for _, c in colour_stops()]
    assert "≤ 0.5 × threshold" in bar and "≥ 1.5 × threshold" in bar
