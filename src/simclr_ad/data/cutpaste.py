"""CutPaste and scar synthetic defects (Li et al., CVPR 2021) as batched tensor operations.

``cutpaste``: a rectangle (2-15% of the image area, aspect ratio 0.3-3.3) is cut from one place
of the image, its brightness and contrast jittered (factors in 0.9-1.1), and pasted at another
place. ``scar``: the same with a thin, long rectangle (2-16 px by 10-25 px at 256 px, scaled with
the image) rotated by up to ±45°. Each is one gather over a per-sample index map, with no Python
loop over samples.

Randomness follows :mod:`simclr_ad.data.augment`: each call draws a ``total×K`` block of uniform
numbers on the CPU from the caller's generator and uses rows ``offset:offset + B``, so a global
batch and its shards on several ranks get the same defects.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from simclr_ad.preprocessing import Normalization

NORMAL, CUTPASTE, SCAR = 0, 1, 2  # the classes of the 3-way task
AREA = (0.02, 0.15)
RATIO = (0.3, 3.3)
JITTER = 0.1
SCAR_WIDTH = (2 / 256, 16 / 256)  # fractions of the image side
SCAR_LENGTH = (10 / 256, 25 / 256)
SCAR_DEGREES = 45.0


class Pasted(NamedTuple):
    """``images`` B×3×H×W with the defect pasted; ``masks`` B×H×W bool, True where pasted."""

    images: Tensor
    masks: Tensor


def _draw(generator: torch.Generator, total: int | None, offset: int, batch: int, k: int) -> Tensor:
    total = batch if total is None else total
    if offset < 0 or offset + batch > total:
        raise ValueError(f"rows {offset}:{offset + batch} are outside a batch of {total}")
    return torch.rand(total, k, generator=generator)[offset : offset + batch]


def _span(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + u * (bounds[1] - bounds[0])


def cutpaste(
    x: Tensor,
    generator: torch.Generator,
    *,
    total: int | None = None,
    offset: int = 0,
    normalization: Normalization | None = None,
) -> Pasted:
    """Paste a jittered rectangle cut from each image elsewhere in it.

    Args:
        x: B×3×H×W normalised float images (any device).
        generator: CPU generator of the random parameters.
        total: size of the global batch the parameters are drawn for (default B).
        offset: index of ``x[0]`` in the global batch.
        normalization: what ``x`` is normalised with (None: ImageNet's); the jitter acts on
            the [0, 1] scale.
    """
    B, _, H, W = x.shape
    u = _draw(generator, total, offset, B, 8)
    area = _span(u[:, 0], AREA) * H * W
    ratio = torch.exp(_span(u[:, 1], (math.log(RATIO[0]), math.log(RATIO[1]))))  # width / height
    h = (area / ratio).sqrt().round().clamp(1, H - 1)
    w = (area * ratio).sqrt().round().clamp(1, W - 1)
    src = torch.stack([u[:, 2] * (H - h), u[:, 3] * (W - w)], dim=1).floor()  # B×2 top, left
    dst = torch.stack([u[:, 4] * (H - h), u[:, 5] * (W - w)], dim=1).floor()
    rows, cols = pixel_grid(H, W, x.device)
    top, left = dst.to(x.device).view(B, 2, 1, 1).unbind(1)
    hh, ww = h.to(x.device).view(B, 1, 1), w.to(x.device).view(B, 1, 1)
    inside = (rows >= top) & (rows < top + hh) & (cols >= left) & (cols < left + ww)
    return _paste(x, inside, shift=dst - src, jitter=u[:, 6:8], normalization=normalization)


def scar(
    x: Tensor,
    generator: torch.Generator,
    *,
    total: int | None = None,
    offset: int = 0,
    normalization: Normalization | None = None,
) -> Pasted:
    """Paste a thin, long, rotated rectangle cut from each image elsewhere in it (see cutpaste;
    the scar's size scales with the shorter side S)."""
    B, _, H, W = x.shape
    S = min(H, W)
    u = _draw(generator, total, offset, B, 9)
    width = (_span(u[:, 0], SCAR_WIDTH) * S).clamp_min(1.0)
    length = (_span(u[:, 1], SCAR_LENGTH) * S).clamp_min(2.0)
    angle = torch.deg2rad(_span(u[:, 2], (-SCAR_DEGREES, SCAR_DEGREES)))
    margin = torch.ceil(torch.hypot(width, length) / 2) + 1  # keeps the rotated box in the image
    sides = torch.tensor([H, W], dtype=margin.dtype)
    span = (sides - 2 * margin.unsqueeze(1)).clamp_min(0)  # B×2
    src = margin.unsqueeze(1) + (u[:, 3:5] * span).floor()  # B×2 centre row, col
    dst = margin.unsqueeze(1) + (u[:, 5:7] * span).floor()
    rows, cols = pixel_grid(H, W, x.device)
    cy, cx = dst.to(x.device).view(B, 2, 1, 1).unbind(1)
    cos, sin = (t.to(x.device).view(B, 1, 1) for t in (angle.cos(), angle.sin()))
    along = cos * (cols - cx) + sin * (rows - cy)
    across = -sin * (cols - cx) + cos * (rows - cy)
    half_l, half_w = (t.to(x.device).view(B, 1, 1) / 2 for t in (length, width))
    inside = (along.abs() < half_l) & (across.abs() < half_w)
    return _paste(x, inside, shift=dst - src, jitter=u[:, 7:9], normalization=normalization)


class CutPasteBatch(NamedTuple):
    """The 3-way task: ``images`` 3B×3×S×S (normal, cutpaste, scar), ``labels`` 3B (0, 1, 2) and
    ``masks`` 3B×S×S bool, True where a defect was pasted (all False for the normal views)."""

    images: Tensor
    labels: Tensor
    masks: Tensor


def cutpaste_batch(
    x: Tensor,
    generator: torch.Generator,
    *,
    total: int | None = None,
    offset: int = 0,
    normalization: Normalization | None = None,
) -> CutPasteBatch:
    """The 3-way task's inputs, labels and defect masks for B normal views ``x`` (normalised
    with ``normalization``)."""
    B = x.shape[0]
    pasted = cutpaste(x, generator, total=total, offset=offset, normalization=normalization)
    scarred = scar(x, generator, total=total, offset=offset, normalization=normalization)
    labels = torch.tensor([NORMAL, CUTPASTE, SCAR], device=x.device).repeat_interleave(B)
    masks = torch.cat([torch.zeros_like(pasted.masks), pasted.masks, scarred.masks])
    return CutPasteBatch(torch.cat([x, pasted.images, scarred.images]), labels, masks)


def pixel_grid(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Row and column indices, 1×H×1 and 1×1×W (float)."""
    rows = torch.arange(height, device=device, dtype=torch.float32)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    return rows.view(1, height, 1), cols.view(1, 1, width)


def _paste(
    x: Tensor,
    inside: Tensor,
    shift: Tensor,
    jitter: Tensor,
    normalization: Normalization | None,
) -> Pasted:
    """Copy pixel ``p - shift`` to every pixel ``p`` inside the mask, brightness/contrast jittered.

    Args:
        x: B×3×H×W images normalised with ``normalization`` (None: ImageNet's).
        inside: B×H×W bool, the destination region.
        shift: B×2 (rows, cols) from source to destination (CPU).
        jitter: B×2 uniform numbers for the brightness and contrast factors (CPU).
    """
    B, C, H, W = x.shape
    rows, cols = pixel_grid(H, W, x.device)
    dy, dx = shift.to(x.device).view(B, 2, 1, 1).unbind(1)
    src_rows = (rows - dy).clamp(0, H - 1).expand(B, H, W)
    src_cols = (cols - dx).clamp(0, W - 1).expand(B, H, W)
    index = (src_rows * W + src_cols).long().view(B, 1, H * W).expand(B, C, H * W)
    source = x.flatten(2).gather(2, index).view(B, C, H, W)
    norm = normalization or Normalization()
    raw = norm.denormalize(source)
    brightness, contrast = (
        _span(t, (1 - JITTER, 1 + JITTER)).to(x.device, x.dtype).view(B, 1, 1, 1)
        for t in jitter.unbind(1)
    )
    level = raw.mean(dim=(1, 2, 3), keepdim=True)
    raw = (((raw - level) * contrast + level) * brightness).clamp(0.0, 1.0)
    jittered = norm.normalize_(raw)
    return Pasted(torch.where(inside.unsqueeze(1), jittered, x), inside)
