"""The gallery of one category as pictures with HTML captions.

Each shown test image becomes a row of small pictures: the thumbnail, its anomaly map blended
over it on the colour scale shared with ``predict --heatmaps`` and the service
(``simclr_ad.heatmap``), and its ground truth or, for the worst cases, its nearest good training
image. Photos are WebP and masks 1-bit PNG (a few KB each, where a matplotlib grid of them was
a PNG of tens of KB), and captions are HTML text, so they stay readable on a phone.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from simclr_ad.heatmap import HIGH, LOW, colour_stops, overlay
from simclr_ad.report.data import DEFECT_LOWEST, GOOD_HIGHEST, CategoryReportData, CategoryRows

WEBP_QUALITY = 80
WORST_CASES = (GOOD_HIGHEST, DEFECT_LOWEST)
TITLES = {GOOD_HIGHEST: "Highest-scoring good parts", DEFECT_LOWEST: "Lowest-scoring defects"}


@dataclass(frozen=True)
class Picture:
    """One encoded image of the gallery: its file name, bytes, media type and caption."""

    name: str
    data: bytes
    media_type: str
    caption: str


@dataclass(frozen=True)
class Case:
    """One shown test image: its name, score and verdict, and its pictures."""

    name: str
    score: float
    verdict: str
    pictures: tuple[Picture, ...]


def webp_bytes(rgb: NDArray[np.uint8]) -> bytes:
    """uint8 H×W×3 as lossy WebP."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="WEBP", quality=WEBP_QUALITY, method=6)
    return buffer.getvalue()


def mask_png(mask: NDArray[np.bool_]) -> bytes:
    """bool H×W as a 1-bit PNG (white: defective pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(bool)).convert("1").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def case_verdict(score: float, threshold: float, label: int) -> str:
    """``flagged``/``passed``, or ``FALSE ALARM``/``MISSED`` where the verdict is wrong."""
    flagged = score >= threshold
    if flagged and label == 0:
        return "FALSE ALARM"
    if not flagged and label == 1:
        return "MISSED"
    return "flagged" if flagged else "passed"


def gallery_cases(
    rows: CategoryRows,
    data: CategoryReportData,
    primary: str,
    threshold: float,
    map_threshold: float,
) -> dict[str, list[Case]]:
    """The gallery's cases by role (``defect:<type>``, then the two worst-case roles).

    Args:
        rows: the category's ``scores.csv`` rows.
        data: its stored report data.
        primary: the scorer whose score and threshold give the verdicts.
        threshold: the primary scorer's threshold.
        map_threshold: the threshold of the scorer that made the maps (the colour scale's
            middle).
    """
    scores = rows.scores[primary]
    by_role: dict[str, list[Case]] = {}
    for g, (i, role) in enumerate(zip(data.gallery.index, data.gallery.role, strict=True)):
        role = str(role)
        stem = f"{g:02d}_{_slug(role)}"  # g: unique where two roles' slugs are alike
        thumbnail = data.thumbnails[g]
        pictures = [Picture(f"{stem}_image.webp", webp_bytes(thumbnail), "image/webp", "image")]
        if data.maps is not None:
            blended = np.asarray(overlay(thumbnail, data.maps[g], map_threshold))
            pictures.append(
                Picture(f"{stem}_map.webp", webp_bytes(blended), "image/webp", "anomaly map")
            )
        if role in WORST_CASES:
            nearest = webp_bytes(data.neighbours[g])
            pictures.append(
                Picture(f"{stem}_nearest.webp", nearest, "image/webp", "nearest good (train)")
            )
        else:
            truth = mask_png(data.masks[g])
            pictures.append(Picture(f"{stem}_truth.png", truth, "image/png", "ground truth"))
        s, y = float(scores[i]), int(rows.labels[i])
        name = "/".join(Path(rows.paths[i]).parts[-2:])
        case = Case(name, s, case_verdict(s, threshold, y), tuple(pictures))
        by_role.setdefault(role, []).append(case)
    return dict(sorted(by_role.items(), key=lambda kv: kv[0] in WORST_CASES))


def role_title(role: str) -> str:
    """The heading of a role's cases."""
    return TITLES.get(role, role.replace("defect:", "Defect type: ", 1))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def cases_html(cases: list[Case], sources: dict[str, str]) -> str:
    """The cases of one role as HTML; ``sources`` maps a picture's name to its ``src``."""
    items = []
    for case in cases:
        css = "wrong" if case.verdict in ("FALSE ALARM", "MISSED") else "right"
        figures = "".join(
            f'<figure><img src="{sources[p.name]}" alt="{html.escape(case.name)}: '
            f'{html.escape(p.caption)}"><figcaption>{html.escape(p.caption)}</figcaption></figure>'
            for p in case.pictures
        )
        items.append(
            f'<div class="case"><p class="case-title">{html.escape(case.name)}<br>score '
            f'{case.score:.3g}: <span class="{css}">{html.escape(case.verdict)}</span></p>'
            f'<div class="panels">{figures}</div></div>'
        )
    return f'<div class="gallery">{"".join(items)}</div>'


def colour_bar_html() -> str:
    """The anomaly maps' colour scale (shared with ``predict`` and the service) as a bar."""
    stops = ", ".join(
        f"{colour} {100 * (ratio - LOW) / (HIGH - LOW):.0f}%" for ratio, colour in colour_stops()
    )
    return (
        '<div class="colour-bar" role="img" aria-label="anomaly map colours: from '
        f'{LOW:g} times the threshold to {HIGH:g} times it">'
        f'<div class="bar" style="background: linear-gradient(to right, {stops})"></div>'
        f'<div class="ticks"><span>≤ {LOW:g} × threshold</span><span>threshold</span>'
        f"<span>≥ {HIGH:g} × threshold</span></div></div>"
    )
