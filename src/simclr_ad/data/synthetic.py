"""Deterministic synthetic datasets in the MVTec AD layout, for the demo and the tests.

Each category draws a "good" image from a few random nuisance parameters (pose, colour, lighting,
noise) and, on request, adds one small defect together with its ground-truth mask. Every image
depends only on ``(seed, category, split, defect type, index)``: the same arguments give
byte-identical files, and a category generated alone matches the same category within a set.

Layout written by :func:`generate_dataset`::

    out/<category>/train/good/000.png
    out/<category>/test/good/000.png
    out/<category>/test/<defect>/000.png
    out/<category>/ground_truth/<defect>/000_mask.png   (mode "L", 0 or 255)

Images are rendered in normalised coordinates (``x, y`` in ``[-0.5, 0.5)``), so a category looks
the same at every image size.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from simclr_ad.errors import UserError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
UInt8Array = npt.NDArray[np.uint8]

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 4096
_MAX_DEFECT_TRIES = 16  # redraws of a defect whose mask came out empty (tiny images only)


# -------------------------------- public containers


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered image and its ground truth.

    Attributes:
        image: ``HxW`` (grayscale) or ``HxWx3`` (RGB) uint8 pixels.
        mask: ``HxW`` defect mask; all False for a good image.
    """

    image: UInt8Array
    mask: BoolArray


RenderFn = Callable[[np.random.Generator, int, "str | None"], SyntheticSample]


@dataclass(frozen=True)
class CategorySpec:
    """A synthetic category: what it looks like, its defect types and its renderer.

    Attributes:
        name: Folder name of the category.
        description: One line for humans.
        grayscale: Whether images are saved as single-channel (mode "L") PNGs.
        defect_types: Names of the defect folders under ``test/`` and ``ground_truth/``.
        render: ``render(rng, image_size, defect)``; ``defect=None`` renders a good image. The
            defect is drawn after the good image, so the same generator state gives the same
            image with and without it.
    """

    name: str
    description: str
    grayscale: bool
    defect_types: tuple[str, ...]
    render: RenderFn

    def sample(
        self, rng: np.random.Generator, *, image_size: int, defect: str | None = None
    ) -> SyntheticSample:
        """Render one image, good (``defect=None``) or with one defect of the given type."""
        if defect is not None and defect not in self.defect_types:
            valid = ", ".join(self.defect_types)
            raise UserError(f"unknown defect type {defect!r} for {self.name!r}; valid: {valid}")
        return self.render(rng, image_size, defect)


@dataclass(frozen=True)
class CategoryCounts:
    """Number of images written for one category."""

    train_good: int
    test_good: int
    test_defects: Mapping[str, int]

    @property
    def total(self) -> int:
        """All images of the category (masks not counted)."""
        return self.train_good + self.test_good + sum(self.test_defects.values())


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    root: Path
    image_size: int
    seed: int
    categories: tuple[str, ...]
    counts: Mapping[str, CategoryCounts]

    @property
    def total(self) -> int:
        """All images written (masks not counted)."""
        return sum(c.total for c in self.counts.values())


# -------------------------------- shared rendering helpers


@dataclass(frozen=True)
class _Scene:
    """Nuisance parameters every category shares: size, lighting gain and pixel noise."""

    size: int
    light: FloatArray  # HxW multiplicative gain
    noise: FloatArray  # HxWxC additive noise


@dataclass(frozen=True)
class _Layers:
    """An object over a background: ``image = alpha * fg + (1 - alpha) * bg``."""

    fg: FloatArray  # HxWxC
    bg: FloatArray  # HxWxC
    alpha: FloatArray  # HxW

    def compose(self) -> FloatArray:
        a = self.alpha[..., None]
        return a * self.fg + (1.0 - a) * self.bg


class _Defected(NamedTuple):
    layers: _Layers
    mask: BoolArray


def _grid(size: int) -> tuple[FloatArray, FloatArray]:
    """Pixel-centre coordinates ``(x, y)``, each HxW, in ``[-0.5, 0.5)``; x runs along columns."""
    c = (np.arange(size) + 0.5) / size - 0.5
    x, y = np.meshgrid(c, c)
    return x, y


def _rotate(x: FloatArray, y: FloatArray, angle: float) -> tuple[FloatArray, FloatArray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _smoothstep(t: FloatArray) -> FloatArray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> FloatArray:
    """HxW low-frequency noise: a ``cells x cells`` normal grid upsampled with cubic splines."""
    coarse = rng.standard_normal((cells, cells))
    return ndimage.zoom(coarse, size / cells, order=3, mode="reflect", grid_mode=True)[:size, :size]


def _draw_light(rng: np.random.Generator, size: int) -> FloatArray:
    """HxW lighting gain: global brightness within ±4 % times a gentle linear gradient."""
    x, y = _grid(size)
    gain = rng.uniform(0.96, 1.04)
    gx, gy = rng.uniform(-0.04, 0.04, size=2)
    return gain * (1.0 + gx * x + gy * y)


def _mix(image: FloatArray, colour: FloatArray, weight: FloatArray) -> FloatArray:
    """Blend ``colour`` into the HxWxC ``image`` with the HxW ``weight``."""
    w = weight[..., None]
    return (1.0 - w) * image + w * colour


def _pick_point(rng: np.random.Generator, region: BoolArray) -> FloatArray:
    """A random pixel centre inside ``region`` (HxW), as normalised ``(x, y)``."""
    rows, cols = np.nonzero(region)
    k = rng.integers(rows.size)
    return (np.array([cols[k], rows[k]]) + 0.5) / region.shape[0] - 0.5


def _blob_alpha(
    rng: np.random.Generator, centre: FloatArray, *, radius: float, softness: float, size: int
) -> FloatArray:
    """HxW soft blob with a wobbly outline: 0.5 on the outline, ramping over ``softness``."""
    x, y = _grid(size)
    dx, dy = x - centre[0], y - centre[1]
    k = np.arange(2, 5)
    amplitude, phase = rng.uniform(0.0, 0.12, size=3), rng.uniform(0.0, 2 * np.pi, size=3)
    wobble = np.cos(k * np.arctan2(dy, dx)[..., None] + phase) @ amplitude
    return _smoothstep((radius * (1.0 + wobble) - np.hypot(dx, dy)) / softness + 0.5)


def _random_polyline(
    rng: np.random.Generator, centre: FloatArray, *, length: float, n_segments: int, wiggle: float
) -> FloatArray:
    """(N+1)x2 vertices of a random walk whose middle vertex lies at ``centre``."""
    angles = rng.uniform(0.0, 2 * np.pi) + np.cumsum(rng.normal(0.0, wiggle, size=n_segments))
    steps = (length / n_segments) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = np.vstack([np.zeros(2), np.cumsum(steps, axis=0)])
    return points - points[n_segments // 2] + centre


def _segment_distance(x: FloatArray, y: FloatArray, p: FloatArray, q: FloatArray) -> FloatArray:
    d = q - p
    t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return np.hypot(x - p[0] - t * d[0], y - p[1] - t * d[1])


def _line_alpha(points: FloatArray, *, half_width: float, size: int) -> FloatArray:
    """HxW anti-aliased polyline through ``points``: 0.5 at ``half_width`` from the line."""
    x, y = _grid(size)
    dist = np.minimum.reduce([_segment_distance(x, y, p, q) for p, q in itertools.pairwise(points)])
    return np.clip((half_width - dist) * size + 0.5, 0.0, 1.0)


def _paint(layers: _Layers, alpha: FloatArray, colour: FloatArray, strength: float) -> _Defected:
    """Blend ``colour`` into the object's surface; the mask is where it shows on the object."""
    fg = _mix(layers.fg, colour, strength * alpha)
    return _Defected(replace(layers, fg=fg), (alpha > 0.5) & (layers.alpha > 0.5))


def _cut(layers: _Layers, new_alpha: FloatArray) -> _Defected:
    """Replace the object's coverage; the mask is where the object gave way to background."""
    return _Defected(replace(layers, alpha=new_alpha), (layers.alpha > 0.5) & (new_alpha <= 0.5))


def _silhouette_change(before: _Layers, after: _Layers) -> BoolArray:
    return (before.alpha > 0.5) != (after.alpha > 0.5)


S = TypeVar("S", bound=_Scene)
DefectFn = Callable[[S, np.random.Generator], _Defected]


def _finish(scene: _Scene, layers: _Layers, mask: BoolArray) -> SyntheticSample:
    """Light, add noise, quantise; drop the channel axis of grayscale images."""
    image = layers.compose() * scene.light[..., None] + scene.noise
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return SyntheticSample(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, mask)


def _render(
    scene: S,
    rng: np.random.Generator,
    defect: str | None,
    good: Callable[[S], _Layers],
    defects: Mapping[str, DefectFn[S]],
) -> SyntheticSample:
    """Render ``scene`` as it is, or with one defect drawn from ``rng`` after the scene."""
    if defect is None:
        return _finish(scene, good(scene), np.zeros((scene.size, scene.size), dtype=bool))
    for _ in range(_MAX_DEFECT_TRIES):
        layers, mask = defects[defect](scene, rng)
        if mask.any():
            return _finish(scene, layers, mask)
    raise RuntimeError(f"could not place a visible {defect!r} defect at size {scene.size}")


# -------------------------------- fabric: woven texture (RGB)

_FABRIC_BACKING = np.array([0.16, 0.16, 0.2])
_FABRIC_SCRATCH = (np.array([0.92, 0.92, 0.9]), np.array([0.05, 0.05, 0.08]))
_FABRIC_STAIN = np.array([0.45, 0.3, 0.15])


@dataclass(frozen=True)
class _FabricScene(_Scene):
    angle: float
    period: float  # thread spacing
    phase: FloatArray  # (2,) weave offset, in threads
    warp: FloatArray  # (3,) colour of the threads along y
    weft: FloatArray  # (3,) colour of the threads along x
    slub: FloatArray  # (2, 64) brightness of each warp / weft thread (uneven yarn)
    mottle: FloatArray  # HxW low-frequency tone variation


def _draw_fabric(rng: np.random.Generator, size: int) -> _FabricScene:
    tint = rng.normal(0.0, 0.01, size=3)
    return _FabricScene(
        size=size,
        light=_draw_light(rng, size),
        noise=rng.normal(0.0, 0.008, size=(size, size, 3)),
        angle=rng.uniform(-0.02, 0.02),
        period=max(1.0 / 20.0, 3.0 / size),
        phase=rng.uniform(0.0, 3.0, size=2),
        warp=np.array([0.24, 0.32, 0.52]) + tint,
        weft=np.array([0.66, 0.66, 0.63]) + tint,
        slub=rng.normal(1.0, 0.03, size=(2, 64)),
        mottle=_smooth_noise(rng, size, cells=6),
    )


def _fabric_layers(scene: _FabricScene, shift: FloatArray | None = None) -> _Layers:
    """A 2/1 twill: each warp thread floats over two weft threads, under one, shifted per row.

    ``shift`` (2xHxW) displaces the weave locally.
    """
    x, y = _grid(scene.size)
    if shift is not None:
        x, y = x - shift[0], y - shift[1]
    u, v = _rotate(x, y, scene.angle)
    a, b = u / scene.period + scene.phase[0], v / scene.period + scene.phase[1]
    ia, ib = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    across_warp, across_weft = np.sin(np.pi * (a - ia)), np.sin(np.pi * (b - ib))
    warp = scene.slub[0][ia % 64] * (0.55 + 0.45 * across_warp**0.5) * (0.85 + 0.15 * across_weft)
    weft = scene.slub[1][ib % 64] * (0.55 + 0.45 * across_weft**0.5) * (0.85 + 0.15 * across_warp)
    over = ((ia - ib) % 3 != 2)[..., None]
    fg = np.where(over, scene.warp * warp[..., None], scene.weft * weft[..., None])
    fg = fg * (1.0 + 0.02 * scene.mottle)[..., None]
    return _Layers(fg, np.broadcast_to(_FABRIC_BACKING, fg.shape), np.ones_like(x))


def _fabric_spot(scene: _FabricScene, rng: np.random.Generator) -> FloatArray:
    x, y = _grid(scene.size)
    return _pick_point(rng, (np.abs(x) < 0.38) & (np.abs(y) < 0.38))


def _fabric_scratch(scene: _FabricScene, rng: np.random.Generator) -> _Defected:
    centre = _fabric_spot(scene, rng)
    line = _random_polyline(rng, centre, length=rng.uniform(0.25, 0.4), n_segments=2, wiggle=0.15)
    alpha = _line_alpha(line, half_width=max(1.0 / scene.size, 0.014), size=scene.size)
    colour = _FABRIC_SCRATCH[rng.integers(2)]
    return _paint(_fabric_layers(scene), alpha, colour, strength=rng.uniform(0.55, 0.7))


def _fabric_hole(scene: _FabricScene, rng: np.random.Generator) -> _Defected:
    centre = _fabric_spot(scene, rng)
    radius = rng.uniform(0.045, 0.06)
    hole = _blob_alpha(rng, centre, radius=radius, softness=1.5 / scene.size, size=scene.size)
    return _cut(_fabric_layers(scene), 1.0 - hole)


def _fabric_stain(scene: _FabricScene, rng: np.random.Generator) -> _Defected:
    centre = _fabric_spot(scene, rng)
    radius = rng.uniform(0.065, 0.09)
    blob = _blob_alpha(rng, centre, radius=radius, softness=0.3 * radius, size=scene.size)
    return _paint(_fabric_layers(scene), blob, _FABRIC_STAIN, strength=rng.uniform(0.45, 0.6))


def _fabric_deformation(scene: _FabricScene, rng: np.random.Generator) -> _Defected:
    """A twisted patch: the weave turns by 35-50 degrees within a disc, with a short transition."""
    centre = _fabric_spot(scene, rng)
    twist = rng.uniform(0.8, 1.1) * rng.choice([-1.0, 1.0])
    sigma = max(rng.uniform(0.05, 0.065), 0.6 * scene.period)
    x, y = _grid(scene.size)
    dx, dy = x - centre[0], y - centre[1]
    weight = np.exp(-(((dx**2 + dy**2) / sigma**2) ** 2) / 2)
    tx, ty = _rotate(dx, dy, twist * weight)
    shift = np.stack([dx - tx, dy - ty])
    moved = np.hypot(shift[0], shift[1]) > 0.25 * scene.period
    return _Defected(_fabric_layers(scene, shift), moved | (weight > 0.5))


_FABRIC_DEFECTS: dict[str, DefectFn[_FabricScene]] = {
    "scratch": _fabric_scratch,
    "hole": _fabric_hole,
    "stain": _fabric_stain,
    "deformation": _fabric_deformation,
}


def _render_fabric(rng: np.random.Generator, size: int, defect: str | None) -> SyntheticSample:
    return _render(_draw_fabric(rng, size), rng, defect, _fabric_layers, _FABRIC_DEFECTS)


# -------------------------------- pill: capsule on a plain background (RGB)

_PILL_PRINT = np.array([0.55, 0.16, 0.14])
_PILL_SPECKLE = np.array([0.72, 0.38, 0.32])
_PILL_CRACK = np.array([0.32, 0.27, 0.22])
_PILL_STAIN = np.array([0.78, 0.6, 0.3])


@dataclass(frozen=True)
class _PillScene(_Scene):
    centre: FloatArray  # (2,)
    angle: float
    half_length: float  # of the capsule's axis
    radius: float
    body: FloatArray  # (3,)
    background: FloatArray  # (3,)
    speckle: FloatArray  # HxW in [0, 1]


def _draw_pill(rng: np.random.Generator, size: int) -> _PillScene:
    scale = rng.uniform(0.98, 1.02)
    speckle = _smooth_noise(rng, size, cells=max(min(40, size // 3), 2))
    return _PillScene(
        size=size,
        light=_draw_light(rng, size),
        noise=rng.normal(0.0, 0.006, size=(size, size, 3)),
        centre=rng.uniform(-0.015, 0.015, size=2),
        angle=rng.uniform(-0.04, 0.04),
        half_length=0.24 * scale,
        radius=0.155 * scale,
        body=np.array([0.86, 0.84, 0.78]) + rng.normal(0.0, 0.008, size=3),
        background=np.array([0.13, 0.14, 0.16]) + rng.normal(0.0, 0.005, size=3),
        speckle=_smoothstep((speckle - 1.6) / 0.5),
    )


def _pill_frame(scene: _PillScene) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Capsule coordinates ``(u, v)`` (u along the axis) and the distance to its axis segment."""
    x, y = _grid(scene.size)
    u, v = _rotate(x - scene.centre[0], y - scene.centre[1], scene.angle)
    axis = np.clip(u, -scene.half_length, scene.half_length)
    return u, v, np.hypot(u - axis, v)


def _pill_print(scene: _PillScene, u: FloatArray, v: FloatArray) -> FloatArray:
    """HxW coverage of the printed mark: a ring on one half, a bar on the other."""
    width = max(0.6 / scene.size, 0.008)
    ring = np.abs(np.hypot(u + 0.5 * scene.half_length, v) - 0.35 * scene.radius)
    bar_u, bar_v = 0.5 * scene.half_length, 0.3 * scene.radius
    bar = _segment_distance(u, v, np.array([bar_u, -bar_v]), np.array([bar_u, bar_v]))
    return np.clip((width - np.minimum(ring, bar)) * scene.size + 0.5, 0.0, 1.0)


def _pill_layers(scene: _PillScene, dent: FloatArray | None = None) -> _Layers:
    """Shaded capsule; ``dent`` (HxW) pushes the outline outwards (>0) or inwards (<0)."""
    u, v, dist = _pill_frame(scene)
    sdf = dist - scene.radius - (0.0 if dent is None else dent)
    alpha = np.clip(0.5 - sdf * scene.size, 0.0, 1.0)
    z = np.sqrt(np.clip(1.0 - (dist / scene.radius) ** 2, 0.0, 1.0))
    shade = 0.72 + 0.28 * z + 0.1 * np.exp(-((((v / scene.radius) + 0.4) / 0.25) ** 2))
    fg = _mix(scene.body * shade[..., None], _PILL_SPECKLE, 0.5 * scene.speckle)
    fg = _mix(fg, _PILL_PRINT, 0.8 * _pill_print(scene, u, v))
    return _Layers(fg, np.broadcast_to(scene.background, fg.shape), alpha)


def _pill_region(scene: _PillScene, *, inner: float, outer: float) -> BoolArray:
    """Pixels whose distance to the axis lies in ``[inner, outer] * radius``."""
    dist = _pill_frame(scene)[2] / scene.radius
    return (dist >= inner) & (dist <= outer)


def _pill_outline(scene: _PillScene) -> BoolArray:
    return _pill_region(scene, inner=1.0 - 0.7 / (scene.size * scene.radius), outer=1.0)


def _pill_crack(scene: _PillScene, rng: np.random.Generator) -> _Defected:
    centre = _pick_point(rng, _pill_region(scene, inner=0.0, outer=0.6))
    line = _random_polyline(rng, centre, length=rng.uniform(0.22, 0.3), n_segments=4, wiggle=0.6)
    alpha = _line_alpha(line, half_width=max(1.0 / scene.size, 0.015), size=scene.size)
    return _paint(_pill_layers(scene), alpha, _PILL_CRACK, strength=rng.uniform(0.8, 0.9))


def _pill_missing(scene: _PillScene, rng: np.random.Generator) -> _Defected:
    """A bite out of the capsule's outline, showing the background."""
    centre = _pick_point(rng, _pill_outline(scene))
    radius = rng.uniform(0.05, 0.065)
    bite = _blob_alpha(rng, centre, radius=radius, softness=1.0 / scene.size, size=scene.size)
    clean = _pill_layers(scene)
    return _cut(clean, clean.alpha * (1.0 - bite))


def _pill_stain(scene: _PillScene, rng: np.random.Generator) -> _Defected:
    centre = _pick_point(rng, _pill_region(scene, inner=0.0, outer=0.7))
    radius = rng.uniform(0.055, 0.075)
    blob = _blob_alpha(rng, centre, radius=radius, softness=0.3 * radius, size=scene.size)
    return _paint(_pill_layers(scene), blob, _PILL_STAIN, strength=rng.uniform(0.55, 0.7))


def _pill_deformation(scene: _PillScene, rng: np.random.Generator) -> _Defected:
    """A bulge (or dent) of the outline; the mask is where the silhouette changed."""
    centre = _pick_point(rng, _pill_outline(scene))
    amplitude = max(rng.uniform(0.07, 0.09), 1.5 / scene.size) * rng.choice([-1.0, 1.0])
    sigma = rng.uniform(0.045, 0.055)
    x, y = _grid(scene.size)
    dent = amplitude * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    deformed = _pill_layers(scene, dent)
    return _Defected(deformed, _silhouette_change(_pill_layers(scene), deformed))


_PILL_DEFECTS: dict[str, DefectFn[_PillScene]] = {
    "crack": _pill_crack,
    "missing": _pill_missing,
    "stain": _pill_stain,
    "deformation": _pill_deformation,
}


def _render_pill(rng: np.random.Generator, size: int, defect: str | None) -> SyntheticSample:
    return _render(_draw_pill(rng, size), rng, defect, _pill_layers, _PILL_DEFECTS)


# -------------------------------- bolt: threaded part (grayscale)

# Along the bolt's axis u: head, plain shank, thread, tapered tip. Half widths across it (v).
_HEAD_START, _HEAD_END, _THREAD_START, _TIP_START, _TIP_END = -0.43, -0.3, -0.12, 0.31, 0.43
_HEAD_HALF_WIDTH, _SHANK_HALF_WIDTH, _THREAD_DEPTH = 0.155, 0.066, 0.0145


@dataclass(frozen=True)
class _BoltScene(_Scene):
    centre: FloatArray  # (2,)
    angle: float
    pitch: float  # thread spacing along the axis
    thread_phase: float
    metal: float  # grey level of the part
    background: float
    mottle: FloatArray  # HxW low-frequency tone variation


class _Bend(NamedTuple):
    start: float  # u where the axis starts to bend
    curvature: float  # signed; v offset = curvature * (u - start)**2


class _Notch(NamedTuple):
    centre: float  # u of the missing chunk
    half_length: float
    depth: float
    side: float  # +1 or -1: which flank of the thread


def _draw_bolt(rng: np.random.Generator, size: int) -> _BoltScene:
    return _BoltScene(
        size=size,
        light=_draw_light(rng, size),
        noise=rng.normal(0.0, 0.006, size=(size, size, 1)),
        centre=rng.uniform(-0.015, 0.015, size=2),
        angle=rng.uniform(-0.04, 0.04),
        pitch=max(0.036, 3.0 / size),
        thread_phase=rng.uniform(0.0, 1.0),
        metal=rng.uniform(0.52, 0.54),
        background=rng.uniform(0.81, 0.83),
        mottle=_smooth_noise(rng, size, cells=5),
    )


def _bolt_frame(
    scene: _BoltScene, bend: _Bend | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bolt coordinates ``(u, v)`` (u along the axis) and the half width of the part at u."""
    x, y = _grid(scene.size)
    u, v = _rotate(x - scene.centre[0], y - scene.centre[1], scene.angle)
    if bend is not None:
        v = v - bend.curvature * np.maximum(u - bend.start, 0.0) ** 2
    tooth = np.abs(2.0 * np.mod(u / scene.pitch + scene.thread_phase, 1.0) - 1.0)  # 0..1
    thread = _SHANK_HALF_WIDTH + _THREAD_DEPTH * tooth
    taper = thread * np.clip((_TIP_END - u) / (_TIP_END - _TIP_START), 0.15, 1.0)
    half_width = np.select(
        [u < _HEAD_END, u < _THREAD_START, u < _TIP_START],
        [np.full_like(u, _HEAD_HALF_WIDTH), np.full_like(u, _SHANK_HALF_WIDTH), thread],
        default=taper,
    )
    return u, v, half_width


def _bolt_shade(scene: _BoltScene, u: FloatArray, v: FloatArray, hw: FloatArray) -> FloatArray:
    """HxW metal shading: a lit cylinder with slanted thread stripes and a faceted head."""
    t = np.clip(v / np.maximum(hw, 1e-3), -1.0, 1.0)
    shade = 0.5 + 0.4 * np.sqrt(1.0 - t**2) + 0.25 * np.exp(-(((t + 0.35) / 0.2) ** 2))
    stripes = 0.78 + 0.22 * np.cos(2 * np.pi * ((u + 0.35 * v) / scene.pitch + scene.thread_phase))
    shade = np.where(u > _THREAD_START, shade * stripes, shade)
    facets = np.where(np.abs(v) < _HEAD_HALF_WIDTH / 3, 0.95, 0.7)
    return np.where(u < _HEAD_END, facets, shade)


def _bolt_layers(
    scene: _BoltScene, bend: _Bend | None = None, notch: _Notch | None = None
) -> _Layers:
    """The part over a bright background; ``bend`` bends the tip, ``notch`` cuts a flank."""
    u, v, hw = _bolt_frame(scene, bend)
    cover_hw = hw
    if notch is not None:
        plateau = _smoothstep(3.0 * (1.0 - np.abs(u - notch.centre) / notch.half_length))
        cover_hw = hw - notch.depth * plateau * (notch.side * v > 0)
    s = scene.size
    alpha = np.clip(0.5 - (np.abs(v) - cover_hw) * s, 0.0, 1.0)
    alpha *= np.clip((u - _HEAD_START) * s + 0.5, 0.0, 1.0)
    alpha *= np.clip((_TIP_END - u) * s + 0.5, 0.0, 1.0)
    tone = 1.0 + 0.008 * scene.mottle
    fg = (scene.metal * _bolt_shade(scene, u, v, hw) * tone)[..., None]
    return _Layers(fg, (scene.background * tone)[..., None], alpha)


def _bolt_inside(scene: _BoltScene) -> BoolArray:
    """Pixels well inside the part, away from its outline and the tip."""
    u, v, hw = _bolt_frame(scene)
    margin = max(1.5 / scene.size, 0.015)
    return (np.abs(v) < hw - margin) & (u > _HEAD_START + margin) & (u < _TIP_START)


def _bolt_scratch(scene: _BoltScene, rng: np.random.Generator) -> _Defected:
    centre = _pick_point(rng, _bolt_inside(scene))
    line = _random_polyline(rng, centre, length=rng.uniform(0.12, 0.18), n_segments=2, wiggle=0.2)
    alpha = _line_alpha(line, half_width=max(1.0 / scene.size, 0.013), size=scene.size)
    return _paint(_bolt_layers(scene), alpha, np.array([0.95]), strength=rng.uniform(0.65, 0.8))


def _bolt_hole(scene: _BoltScene, rng: np.random.Generator) -> _Defected:
    """A chunk of thread missing from one flank."""
    notch = _Notch(
        centre=rng.uniform(_THREAD_START + 0.04, _TIP_START - 0.04),
        half_length=rng.uniform(0.04, 0.06),
        depth=max(rng.uniform(0.045, 0.06), 2.0 / scene.size),
        side=float(rng.choice([-1.0, 1.0])),
    )
    return _cut(_bolt_layers(scene), _bolt_layers(scene, notch=notch).alpha)


def _bolt_stain(scene: _BoltScene, rng: np.random.Generator) -> _Defected:
    centre = _pick_point(rng, _bolt_inside(scene))
    radius = rng.uniform(0.045, 0.06)
    blob = _blob_alpha(rng, centre, radius=radius, softness=0.3 * radius, size=scene.size)
    return _paint(_bolt_layers(scene), blob, np.array([0.1]), strength=rng.uniform(0.65, 0.8))


def _bolt_deformation(scene: _BoltScene, rng: np.random.Generator) -> _Defected:
    """A bent tip; the mask is the part of the bolt that moved by more than a pixel."""
    start = rng.uniform(0.1, 0.22)
    deflection = max(rng.uniform(0.06, 0.09), 2.0 / scene.size) * rng.choice([-1.0, 1.0])
    bend = _Bend(start=start, curvature=deflection / (_TIP_END - start) ** 2)
    clean, bent = _bolt_layers(scene), _bolt_layers(scene, bend=bend)
    u = _bolt_frame(scene)[0]
    moved = np.abs(bend.curvature) * np.maximum(u - start, 0.0) ** 2 > 1.0 / scene.size
    return _Defected(bent, moved & ((clean.alpha > 0.5) | (bent.alpha > 0.5)))


_BOLT_DEFECTS: dict[str, DefectFn[_BoltScene]] = {
    "scratch": _bolt_scratch,
    "hole": _bolt_hole,
    "stain": _bolt_stain,
    "deformation": _bolt_deformation,
}


def _render_bolt(rng: np.random.Generator, size: int, defect: str | None) -> SyntheticSample:
    return _render(_draw_bolt(rng, size), rng, defect, _bolt_layers, _BOLT_DEFECTS)


# -------------------------------- registry and writer

CATEGORIES: dict[str, CategorySpec] = {
    "fabric": CategorySpec(
        name="fabric",
        description="woven two-colour textile filling the frame (RGB)",
        grayscale=False,
        defect_types=tuple(_FABRIC_DEFECTS),
        render=_render_fabric,
    ),
    "pill": CategorySpec(
        name="pill",
        description="speckled capsule with a printed mark on a dark background (RGB)",
        grayscale=False,
        defect_types=tuple(_PILL_DEFECTS),
        render=_render_pill,
    ),
    "bolt": CategorySpec(
        name="bolt",
        description="threaded bolt with a hex head on a bright background (grayscale)",
        grayscale=True,
        defect_types=tuple(_BOLT_DEFECTS),
        render=_render_bolt,
    ),
}


def _resolve_categories(categories: Sequence[str]) -> tuple[str, ...]:
    """Validated category names, duplicates dropped, order kept."""
    names = (categories,) if isinstance(categories, str) else tuple(categories)
    if not names:
        raise UserError(f"no categories given; valid: {', '.join(CATEGORIES)}")
    for name in names:
        if name not in CATEGORIES:
            raise UserError(f"unknown category {name!r}; valid: {', '.join(CATEGORIES)}")
    return tuple(dict.fromkeys(names))


def _check_arguments(*, image_size: int, n_train: int, n_test: int, seed: int) -> None:
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise UserError(
            f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, got {image_size}"
        )
    if n_train < 1:
        raise UserError(f"n_train must be at least 1, got {n_train}")
    if n_test < 0:
        raise UserError(f"n_test must be at least 0, got {n_test}")
    if seed < 0:
        raise UserError(f"seed must be non-negative, got {seed}")


def _sample_rng(seed: int, category: str, folder: str, index: int) -> np.random.Generator:
    """The generator of one image: a function of its seed, category, folder and index only."""
    key = [seed, zlib.crc32(category.encode()), zlib.crc32(folder.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _write_folder(
    root: Path,
    spec: CategorySpec,
    *,
    split: str,
    defect: str | None,
    count: int,
    image_size: int,
    seed: int,
) -> int:
    """Write ``count`` images (and masks, for a defect) of one folder; returns ``count``."""
    kind = defect or "good"
    image_dir = root / spec.name / split / kind
    mask_dir = root / spec.name / "ground_truth" / kind
    image_dir.mkdir(parents=True, exist_ok=True)
    if defect is not None:
        mask_dir.mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(count - 1)))
    for i in range(count):
        rng = _sample_rng(seed, spec.name, f"{split}/{kind}", i)
        sample = spec.sample(rng, image_size=image_size, defect=defect)
        Image.fromarray(sample.image).save(image_dir / f"{i:0{digits}d}.png")
        if defect is not None:
            mask = sample.mask.astype(np.uint8) * 255
            Image.fromarray(mask).save(mask_dir / f"{i:0{digits}d}_mask.png")
    return count


def _write_category(
    root: Path, spec: CategorySpec, *, image_size: int, n_train: int, n_test: int, seed: int
) -> CategoryCounts:
    def write(split: str, defect: str | None, count: int) -> int:
        return _write_folder(
            root, spec, split=split, defect=defect, count=count, image_size=image_size, seed=seed
        )

    return CategoryCounts(
        train_good=write("train", None, n_train),
        test_good=write("test", None, n_test),
        test_defects={d: write("test", d, n_test) for d in spec.defect_types},
    )


def generate_dataset(
    out: Path,
    *,
    categories: Sequence[str] = ("fabric", "pill", "bolt"),
    image_size: int = 128,
    n_train: int = 60,
    n_test: int = 8,
    seed: int = 0,
) -> SynthSummary:
    """Write a synthetic dataset in the MVTec AD layout.

    Args:
        out: Root folder; ``out/<category>/...`` is created as needed, existing files with the
            same names are overwritten.
        categories: Names from :data:`CATEGORIES`.
        image_size: Side of the square images, in pixels.
        n_train: Good training images per category.
        n_test: Good test images, and test images per defect type, per category.
        seed: Base seed; each image's generator is derived from it, the category, the folder and
            the image's index.

    Returns:
        Where the dataset went and how many images each folder holds.

    Raises:
        UserError: An unknown category or an out-of-range size, count or seed.
    """
    names = _resolve_categories(categories)
    _check_arguments(image_size=image_size, n_train=n_train, n_test=n_test, seed=seed)
    root = Path(out)
    counts = {
        name: _write_category(
            root, CATEGORIES[name], image_size=image_size, n_train=n_train, n_test=n_test, seed=seed
        )
        for name in names
    }
    summary = SynthSummary(root, image_size, seed, names, counts)
    logger.info("wrote %d synthetic images (%s) under %s", summary.total, ", ".join(names), root)
    return summary
