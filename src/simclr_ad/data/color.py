"""Per-sample colour operations on float RGB batches in ``[0, 1]``, with torchvision's semantics.

torchvision's ``ColorJitter`` applies brightness, contrast, saturation and hue, each followed by
a clamp to ``[0, 1]``. The first three are affine maps of a pixel's RGB vector ``x``:
``clamp(M x + o, 0, 1)`` with a 3×3 matrix ``M`` and an offset ``o`` per sample:

- brightness ``f``: ``M = f I``, ``o = 0`` (a blend with black);
- contrast ``f``: ``M = f I``, ``o = (1 - f) m`` with ``m`` the mean of the sample's gray image;
- saturation ``f``: ``M = f I + (1 - f) 1 wᵀ``, ``o = 0`` (a blend with the gray image
  ``wᵀx``, ``w`` the luma weights).

So one step of a batch in which every sample applies a different op (or none: ``M = I``) is
one batched matrix product and one clamp (:func:`blend`), exact up to float rounding.

Hue is not affine in RGB: :func:`shift_hue` rotates the HSV hue exactly as torchvision's
``adjust_hue`` does, with branch-free arithmetic (min/max/abs and a few adds per pixel, no
comparisons, ``where`` or ``remainder``, which are slow on the CPU). It does not substitute a
rotation about the gray axis or in YIQ space (one matrix, as some fast pipelines do): on
saturated images those differ from torchvision's hue by 0.07 (gray axis) to 0.35 (YIQ) mean
absolute error at a shift of 0.2 turns.
"""

from __future__ import annotations

import torch
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2  # op codes of blend(); -1 leaves a sample as it is
HUE_ANCHORS = (3.0, 5.0, 1.0)  # per channel: the hue (in sixths) at the centre of its low plateau


def grayscale(x: Tensor) -> Tensor:
    """Luma with torchvision's weights.

    Args:
        x: N×3×H×W RGB.

    Returns:
        N×1×H×W.
    """
    r, g, b = x.unbind(1)
    gray = torch.mul(r, GRAY_WEIGHTS[0])
    gray.add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2])
    return gray.unsqueeze(1)


def blend_maps(op: Tensor, factor: Tensor) -> tuple[Tensor, Tensor]:
    """The affine colour map of each sample's op (see the module docstring), on the CPU.

    Args:
        op: N op codes: ``BRIGHTNESS``, ``CONTRAST``, ``SATURATION``, or -1 for the identity.
        factor: N blend factors; ignored where ``op`` is -1.

    Returns:
        N×3×3 float64 matrices, and N float64 weights of the sample's mean gray in the offset
        (``1 - f`` for contrast, 0 otherwise).
    """
    n = len(op)
    f = torch.where(op >= 0, factor.double(), 1.0)
    rest = 1.0 - f
    weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64).expand(3, 3)  # every row is w
    matrix = f.view(n, 1, 1) * torch.eye(3, dtype=torch.float64)
    matrix += (rest * (op == SATURATION)).view(n, 1, 1) * weights
    return matrix, rest * (op == CONTRAST)


def blend(x: Tensor, op: Tensor, factor: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Brightness, contrast or saturation per sample, clamped to ``[0, 1]`` as torchvision does.

    Args:
        x: N×3×H×W in ``[0, 1]``.
        op: N op codes on the CPU: ``BRIGHTNESS``, ``CONTRAST``, ``SATURATION``, or -1 to leave
            the sample unchanged.
        factor: N blend factors on the CPU (``f`` in the module docstring).
        out: Optional N×3×H×W tensor (not ``x``) to write the result into.

    Returns:
        N×3×H×W in ``[0, 1]`` (``out`` when given).
    """
    n = len(op)
    matrix, mean_weight = blend_maps(op, factor)
    matrix = matrix.to(device=x.device, dtype=x.dtype)
    pixels = x.view(n, 3, -1)  # N×3×P
    result = out.view(n, 3, -1) if out is not None else torch.empty_like(pixels)
    if (op == SATURATION).any():
        torch.bmm(matrix, pixels, out=result)
    else:  # every matrix is f·I: one multiply, cheaper than a matrix product
        torch.mul(pixels, matrix[:, :1, :1], out=result)
    if mean_weight.any():
        gray = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype)
        mean = pixels.mean(dim=2) @ gray  # N; mean of the gray image
        result += (mean * mean_weight.to(device=x.device, dtype=x.dtype)).view(n, 1, 1)
    return result.clamp_(0, 1).view_as(x)


def shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Shifts the HSV hue of each sample, as torchvision's ``adjust_hue`` (value and chroma kept).

    The hue in sixths of a turn is ``H = S`` where ``g >= b`` and ``6 - S`` elsewhere, with
    ``S = (g + b - r + max - 2 min) / chroma`` in ``[0, 3]``; so ``H = copysign(S, g - b)``
    (mod 6). Channel ``c`` of the result is ``max - chroma * clamp(2 - d_c, 0, 1)``, where
    ``d_c`` is the circular distance from the shifted hue to the channel's anchor (3, 5, 1
    sixths for R, G, B), ``3 - ||z| - 6| - 3|`` with ``z = H + 6 shift - anchor``, valid for
    ``|z| <= 12``, hence ``|shift| <= 0.5``. Gray pixels stay exactly as they are.

    Args:
        x: N×3×H×W RGB in ``[0, 1]``.
        shift: N hue shifts in turns, each in ``[-0.5, 0.5]`` (read on the CPU).

    Returns:
        N×3×H×W RGB in ``[0, 1]``.
    """
    n = len(x)
    r, g, b = x.unbind(1)
    high = torch.maximum(r, g)
    torch.maximum(high, b, out=high)
    chroma = torch.minimum(r, g)  # the minimum for now
    torch.minimum(chroma, b, out=chroma)
    hue = torch.add(g, b).sub_(r).add_(high).sub_(chroma, alpha=2)  # S · chroma
    torch.sub(high, chroma, out=chroma)
    hue.div_(chroma.clamp_min(1e-12)).copysign_(g - b)  # H mod 6; 0 on gray pixels
    anchors = torch.tensor(HUE_ANCHORS, dtype=torch.float64) - 6 * shift.double().cpu()[:, None]
    anchors = anchors.to(device=x.device, dtype=x.dtype).view(n, 3, *([1] * (x.ndim - 2)))
    z = torch.sub(hue.unsqueeze(1), anchors)  # N×3×H×W
    level = z.abs_().sub_(6).abs_().sub_(3).abs_().clamp_(1, 2)  # 1 + clamp(2 - d, 0, 1)
    top = high.add_(chroma).unsqueeze(1)  # max + chroma
    return torch.sub(top, level.mul_(chroma.unsqueeze(1)), out=level)
