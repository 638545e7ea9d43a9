"""Synthetic defects on good images, for judging detectors without real defects (``auto``).

Real defects are mostly small: a scratch a few pixels wide, a speck of dirt, a crack, a dent
that changes the local texture. CutPaste and scars (Li et al. 2021; ``data.cutpaste``) cover
2-15% of the image, far larger than most, and barely register on textured surfaces. The
families here add the small kinds, drawn with sizes relative to the image's shorter side S:

- ``speck``: a soft-edged disc of radius 0.4-2% of S, shifted in brightness by 0.15-0.45 (on
  the [0, 1] scale) away from the local level (darker on bright ground, brighter on dark);
- ``scratch``: a thin curved line 0.2-0.8% of S wide and 5-30% of S long, shifted likewise;
- ``patch``: a small square (side 2-6% of S) cut from elsewhere in the image, so the local
  texture is out of place while its colours are the part's own.

``synthetic_defects`` gives each image one defect, the families taking turns by row, from a
seeded generator: the same images and seed give the same defects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr_ad.data.cutpaste import cutpaste, pixel_grid, scar
from simclr_ad.preprocessing import Normalization

FAMILIES = ("cutpaste", "scar", "speck", "scratch", "patch")
SPECK_RADIUS = (0.004, 0.02)  # fractions of the shorter side
SCRATCH_WIDTH = (0.002, 0.008)
SCRATCH_LENGTH = (0.05, 0.30)
SCRATCH_BEND = 0.15  # largest sideways bend, as a fraction of the length
PATCH_SIDE = (0.02, 0.06)
PATCH_TRIES = 10  # source squares drawn for a patch, the first different enough kept
PATCH_DIFFERENCE = 0.05  # mean absolute difference, [0, 1] scale
BORDER = 0.04  # the background's colour: the median of this share of each side
PART_LEVEL = 0.1  # the part: neighbourhoods this far from the background colour (max channel)
SHIFT = (0.15, 0.45)  # brightness shift of specks and scratches, [0, 1] scale


def _uniform(generator: torch.Generator, bounds: tuple[float, float]) -> float:
    return bounds[0] + float(torch.rand((), generator=generator)) * (bounds[1] - bounds[0])


def _shifted(image: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """``image`` (3×H×W in [0, 1]) shifted in brightness under the soft ``mask`` (1×H×W in
    [0, 1]), away from the level of the pixels under it."""
    weight = mask.sum().clamp_min(1e-6)
    level = float((image.mean(dim=0) * mask).sum() / weight)
    sign = -1.0 if level > 0.5 else 1.0
    shift = sign * _uniform(generator, SHIFT)
    return (image + shift * mask).clamp(0.0, 1.0)


def part_mask(image: Tensor) -> Tensor:
    """Where the part is in ``image`` (3×H×W in [0, 1]), as H×W bools: the pixels whose
    neighbourhood differs from the background, the median colour of the image's border. On a
    texture that fills the image most pixels count; where few do (under 5%), all of them."""
    _, H, W = image.shape
    edge = max(1, round(BORDER * min(H, W)))
    border = torch.cat(
        [
            image[:, :edge].flatten(1),
            image[:, -edge:].flatten(1),
            image[:, :, :edge].flatten(1),
            image[:, :, -edge:].flatten(1),
        ],
        dim=1,
    )
    background = border.median(dim=1).values.view(3, 1, 1)
    distance = (image - background).abs().amax(dim=0, keepdim=True)
    window = 2 * edge + 1
    local = F.avg_pool2d(distance[None], window, 1, padding=edge, count_include_pad=False)[0, 0]
    mask = local > PART_LEVEL
    return mask if mask.float().mean() >= 0.05 else torch.ones(H, W, dtype=torch.bool)


def _centre(generator: torch.Generator, where: Tensor, margin: float) -> tuple[float, float]:
    """A random pixel of the H×W bools ``where`` at least ``margin`` from the image's edges
    (anywhere within the margins if none is)."""
    H, W = where.shape
    m = math.ceil(margin)
    inner = torch.zeros_like(where)
    inner[m : max(m, H - m), m : max(m, W - m)] = True
    allowed = torch.nonzero(where & inner) if bool((where & inner).any()) else torch.nonzero(inner)
    if allowed.numel() == 0:
        return H / 2, W / 2
    row, col = allowed[int(torch.randint(0, allowed.shape[0], (), generator=generator))].tolist()
    return float(row), float(col)


def speck(image: Tensor, generator: torch.Generator, where: Tensor) -> Tensor:
    """A soft disc of another brightness on the part (``where``) in ``image`` (3×H×W)."""
    _, H, W = image.shape
    radius = max(1.0, _uniform(generator, SPECK_RADIUS) * min(H, W))
    cy, cx = _centre(generator, where, radius)
    rows, cols = pixel_grid(H, W, image.device)  # 1×H×1, 1×1×W
    distance = torch.hypot(rows - cy, cols - cx)
    mask = (radius + 0.5 - distance).clamp(0.0, 1.0)
    return _shifted(image, mask, generator)


def scratch(image: Tensor, generator: torch.Generator, where: Tensor) -> Tensor:
    """A thin, slightly bent line of another brightness centred on the part (``where``)."""
    _, H, W = image.shape
    S = min(H, W)
    width = max(1.0, _uniform(generator, SCRATCH_WIDTH) * S)
    length = max(4.0, _uniform(generator, SCRATCH_LENGTH) * S)
    angle = _uniform(generator, (0.0, math.pi))
    bend = _uniform(generator, (-SCRATCH_BEND, SCRATCH_BEND)) * length
    cy, cx = _centre(generator, where, length / 2 + abs(bend) + width)
    rows, cols = pixel_grid(H, W, image.device)  # 1×H×1, 1×1×W
    cos, sin = math.cos(angle), math.sin(angle)
    along = cos * (cols - cx) + sin * (rows - cy)
    across = -sin * (cols - cx) + cos * (rows - cy)
    t = (along / (length / 2)).clamp(-1.0, 1.0)
    curve = bend * (1 - t**2)  # a parabola through both ends
    edge = (width / 2 + 0.5 - (across - curve).abs()).clamp(0.0, 1.0)
    mask = edge * (along.abs() <= length / 2).float()
    return _shifted(image, mask, generator)


def patch(image: Tensor, generator: torch.Generator, where: Tensor) -> Tensor:
    """A small square of ``image`` (3×H×W) copied over a place on the part (``where``): of up
    to ``PATCH_TRIES`` squares drawn from elsewhere, the first that differs from what it
    covers by ``PATCH_DIFFERENCE`` on average (else the most different one), so that a plain
    background copied onto plain background does not count as a defect."""
    _, H, W = image.shape
    side = max(2, round(_uniform(generator, PATCH_SIDE) * min(H, W)))
    side = min(side, H - 1, W - 1)
    cy, cx = _centre(generator, where, side / 2 + 1)
    top, left = (
        min(max(0, round(cy - side / 2)), H - side),
        min(max(0, round(cx - side / 2)), W - side),
    )
    covered = image[:, top : top + side, left : left + side]
    best, best_difference = covered, -1.0
    for _ in range(PATCH_TRIES):
        row, col = (
            int(torch.randint(0, limit - side + 1, (), generator=generator)) for limit in (H, W)
        )
        source = image[:, row : row + side, col : col + side]
        difference = float((source - covered).abs().mean())
        if difference > best_difference:
            best, best_difference = source, difference
        if difference >= PATCH_DIFFERENCE:
            break
    out = image.clone()
    out[:, top : top + side, left : left + side] = best
    return out


def synthetic_defects(pixels: Tensor, seed: int, families: Sequence[str] = FAMILIES) -> Tensor:
    """One defect in each uint8 N×3×H×W image, row i of family ``families[i % len]``.

    Raises:
        ValueError: for an unknown family or none.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be among {', '.join(FAMILIES)}, got {list(families)}")
    generator = torch.Generator().manual_seed(seed)
    images = pixels.float() / 255
    out = images.clone()
    kinds = [families[i % len(families)] for i in range(pixels.shape[0])]
    imagenet = Normalization()
    for name, paste in (("cutpaste", cutpaste), ("scar", scar)):
        rows = [i for i, kind in enumerate(kinds) if kind == name]
        if rows:
            pasted = paste(imagenet(pixels[rows]), generator).images
            out[rows] = imagenet.denormalize(pasted)
    local = {"speck": speck, "scratch": scratch, "patch": patch}
    for i, kind in enumerate(kinds):
        if kind in local:
            out[i] = local[kind](images[i], generator, part_mask(images[i]))
    return (out * 255).round().clamp(0, 255).to(torch.uint8)
