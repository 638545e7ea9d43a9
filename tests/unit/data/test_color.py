"""Colour operations: closed forms, invariants and torchvision's functions as the reference."""

import pytest
import torch
import torchvision.transforms.functional as TF

from simclr_ad.data.color import (
    BRIGHTNESS,
    CONTRAST,
    GRAY_WEIGHTS,
    SATURATION,
    blend,
    grayscale,
    shift_hue,
)

ADJUST = {
    BRIGHTNESS: TF.adjust_brightness,
    CONTRAST: TF.adjust_contrast,
    SATURATION: TF.adjust_saturation,
}


def _images(n: int, side: int = 8, seed: int = 0) -> torch.Tensor:
    """n >= 5 random RGB images in [0, 1], the first five with awkward cases: gray, black,
    white, the six primaries and secondaries, ties between channels."""
    x = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))
    x[0] = 0.5
    x[1, :, 0] = 0.0
    x[1, :, 1] = 1.0
    corners = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]])
    x[2, :, 0, :6] = corners.T.float()
    x[3, 1] = x[3, 2]  # g == b everywhere
    x[4, 0] = x[4, 1]  # r == g everywhere
    return x


def test_grayscale_uses_torchvision_weights() -> None:
    x = _images(6)
    torch.testing.assert_close(grayscale(x), TF.rgb_to_grayscale(x))
    assert abs(sum(GRAY_WEIGHTS) - 1.0) < 1e-3


def _affine_maps(op: torch.Tensor, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The module docstring's M (N×3×3) and the weight of the mean gray in o (N), written out."""
    eye, w = torch.eye(3, dtype=torch.float64), torch.tensor(GRAY_WEIGHTS, dtype=torch.float64)
    matrices, mean_weights = [], []
    for code, f in zip(op.tolist(), factor.tolist(), strict=True):
        f = 1.0 if code < 0 else f
        gray_row = w.expand(3, 3) if code == SATURATION else torch.zeros(3, 3)
        matrices.append(f * eye + (1 - f) * gray_row)
        mean_weights.append(1 - f if code == CONTRAST else 0.0)
    return torch.stack(matrices), torch.tensor(mean_weights, dtype=torch.float64)


def test_blend_is_the_clamped_affine_colour_map() -> None:
    x = _images(8).double()
    op = torch.tensor([BRIGHTNESS, CONTRAST, SATURATION, -1, SATURATION, CONTRAST, 0, 2])
    factor = torch.tensor([1.5, 0.25, 0.5, 3.0, 1.7, 1.9, 0.2, 0.0], dtype=torch.float64)
    matrix, mean_weight = _affine_maps(op, factor)
    pixels = x.flatten(2)  # N×3×P
    mean = (pixels.mean(dim=2) @ torch.tensor(GRAY_WEIGHTS, dtype=torch.float64)).view(8, 1, 1)
    expected = (matrix @ pixels + mean_weight.view(8, 1, 1) * mean).clamp(0, 1)
    torch.testing.assert_close(blend(x.clone(), op, factor).flatten(2), expected)


@pytest.mark.parametrize("op", [BRIGHTNESS, CONTRAST, SATURATION])
@pytest.mark.parametrize("factor", [0.0, 0.2, 1.0, 1.8])
def test_blend_matches_torchvision_including_clamping(op: int, factor: float) -> None:
    x = _images(6)
    ops = torch.full((6,), op)
    expected = torch.stack([ADJUST[op](im, factor) for im in x])
    got = blend(x, ops, torch.full((6,), factor, dtype=torch.float64))
    assert got is x  # in place
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_blend_mixes_ops_per_sample_and_leaves_skipped_samples_exact() -> None:
    x = _images(5)
    ops = torch.tensor([BRIGHTNESS, -1, SATURATION, CONTRAST, BRIGHTNESS])
    factors = torch.tensor([1.6, 0.3, 0.2, 0.5, 0.7], dtype=torch.float64)
    got = blend(x.clone(), ops, factors)
    assert torch.equal(got[1], x[1])
    for i in (0, 2, 3, 4):
        expected = ADJUST[int(ops[i])](x[i], factors[i].item())
        torch.testing.assert_close(got[i], expected, rtol=0, atol=1e-6)


def test_hue_shift_matches_torchvision() -> None:
    x = _images(24, seed=1)
    shifts = torch.linspace(-0.5, 0.5, 24)
    expected = torch.stack([TF.adjust_hue(im, s.item()) for im, s in zip(x, shifts, strict=True)])
    torch.testing.assert_close(shift_hue(x, shifts), expected, rtol=0, atol=1e-5)


def test_hue_shift_on_the_six_corners_of_the_hexagon() -> None:
    """A sixth of a turn moves each primary/secondary to the next: red -> yellow -> green..."""
    corners = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]])
    x = corners.float().T.reshape(1, 3, 1, 6)
    shifted = shift_hue(x, torch.tensor([1 / 6]))
    torch.testing.assert_close(shifted, x.roll(-1, dims=-1), rtol=0, atol=1e-6)


def test_hue_shift_invariants() -> None:
    x = _images(8, seed=2)
    n = len(x)
    torch.testing.assert_close(shift_hue(x, torch.zeros(n)), x, rtol=0, atol=1e-6)
    # half a turn either way is the same rotation
    torch.testing.assert_close(
        shift_hue(x, torch.full((n,), 0.5)), shift_hue(x, torch.full((n,), -0.5)), rtol=0, atol=1e-5
    )
    # there and back again; value (max) and chroma (max - min) are kept
    shifts = torch.linspace(-0.5, 0.5, n)
    there = shift_hue(x, shifts)
    torch.testing.assert_close(shift_hue(there, -shifts), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(there.amax(1), x.amax(1), rtol=0, atol=1e-6)
    torch.testing.assert_close(there.amin(1), x.amin(1), rtol=0, atol=1e-6)
    # gray pixels (all channels equal) are left exactly as they are
    gray = x[:1].clone()
    gray[:, 1:] = gray[:, :1]
    assert torch.equal(shift_hue(gray, torch.tensor([0.3])), gray)
