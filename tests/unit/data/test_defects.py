"""Synthetic defects for auto's judge: small, on the part, deterministic."""

import pytest
import torch

from simclr_ad.data.defects import (
    FAMILIES,
    part_mask,
    patch,
    scratch,
    speck,
    synthetic_defects,
)


def _part_on_background(size: int = 128) -> torch.Tensor:
    """3×S×S in [0, 1]: a bright plain background with a dark textured square in the middle."""
    image = torch.full((3, size, size), 0.9)
    part = 0.2 + 0.1 * torch.rand(
        3, size // 2, size // 2, generator=torch.Generator().manual_seed(0)
    )
    image[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = part
    return image


def test_part_mask_finds_the_part_and_falls_back_to_everything() -> None:
    image = _part_on_background()
    mask = part_mask(image)
    assert mask[64, 64] and not mask[2, 2] and not mask[120, 5]
    assert 0.15 < mask.float().mean() < 0.45  # about the part's quarter, edges widened
    plain = torch.full((3, 64, 64), 0.5)
    assert bool(part_mask(plain).all())  # nothing stands out: anywhere may be the part


@pytest.mark.parametrize("draw", [speck, scratch, patch])
def test_small_defects_change_a_small_region_on_the_part(draw) -> None:  # type: ignore[no-untyped-def]
    image = _part_on_background()
    where = part_mask(image)
    for seed in range(8):
        out = draw(image, torch.Generator().manual_seed(seed), where)
        changed = (out - image).abs().amax(dim=0) > 1e-6
        assert changed.any(), f"{draw.__name__} changed nothing (seed {seed})"
        assert changed.float().mean() < 0.06, "a small defect, not a CutPaste-sized one"
        rows, cols = torch.nonzero(changed).float().mean(dim=0).round().long().tolist()
        assert where[rows, cols], f"{draw.__name__} landed off the part (seed {seed})"
        assert out.min() >= 0 and out.max() <= 1


def test_brightness_shifts_away_from_the_local_level() -> None:
    dark = torch.full((3, 64, 64), 0.1)
    bright = torch.full((3, 64, 64), 0.9)
    everywhere = torch.ones(64, 64, dtype=torch.bool)
    for draw in (speck, scratch):
        assert draw(dark, torch.Generator().manual_seed(0), everywhere).max() > 0.2
        assert draw(bright, torch.Generator().manual_seed(0), everywhere).min() < 0.8


def test_synthetic_defects_take_turns_and_repeat_with_the_seed() -> None:
    pixels = (torch.stack([_part_on_background()] * len(FAMILIES) * 2) * 255).to(torch.uint8)
    first = synthetic_defects(pixels, seed=3)
    assert first.dtype == torch.uint8 and first.shape == pixels.shape
    assert torch.equal(first, synthetic_defects(pixels, seed=3))
    assert not torch.equal(first, synthetic_defects(pixels, seed=4))
    changed = (first.int() - pixels.int()).abs().amax(dim=1).gt(0).float().mean(dim=(1, 2))
    assert bool((changed > 0).all())
    large = changed[[i for i in range(len(changed)) if FAMILIES[i % 5] in ("cutpaste", "scar")]]
    small = changed[[i for i in range(len(changed)) if FAMILIES[i % 5] not in ("cutpaste", "scar")]]
    assert small.max() < large.max()


def test_synthetic_defects_of_one_family_and_unknown_ones() -> None:
    pixels = (torch.stack([_part_on_background()] * 3) * 255).to(torch.uint8)
    only = synthetic_defects(pixels, seed=0, families=("scratch",))
    assert not torch.equal(only, pixels)
    with pytest.raises(ValueError, match="families must be among"):
        synthetic_defects(pixels, seed=0, families=("dent",))
    with pytest.raises(ValueError, match="families must be among"):
        synthetic_defects(pixels, seed=0, families=())
