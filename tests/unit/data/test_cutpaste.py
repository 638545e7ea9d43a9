"""CutPaste and scar: only the pasted region changes, sizes and labels are right, shards agree."""

import pytest
import torch

from simclr_ad.data.cutpaste import CUTPASTE, NORMAL, SCAR, cutpaste, cutpaste_batch, scar


def _images(n: int = 6, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make", [cutpaste, scar])
def test_only_the_pasted_region_changes(make) -> None:
    x = _images()
    out = make(x, torch.Generator().manual_seed(1))
    inside = out.masks.unsqueeze(1).expand_as(x)
    assert torch.equal(out.images[~inside], x[~inside])
    assert out.masks.flatten(1).any(1).all()  # every image got a defect
    assert not torch.allclose(out.images[inside], x[inside])  # and it differs from what was there


def test_cutpaste_patch_size_and_copied_content() -> None:
    S = 64
    rows = torch.arange(S).view(1, 1, S, 1).expand(4, 3, S, S).float()
    out = cutpaste(rows / S, torch.Generator().manual_seed(2))
    area = out.masks.flatten(1).sum(1).float() / S**2
    assert ((area > 0.015) & (area < 0.16)).all()  # 2-15% of the image, up to rounding
    for mask in out.masks:  # one axis-aligned rectangle
        r, c = mask.nonzero().unbind(1)
        assert mask.sum() == (r.max() - r.min() + 1) * (c.max() - c.min() + 1)


def test_scar_is_thin() -> None:
    out = scar(_images(size=256), torch.Generator().manual_seed(3))
    area = out.masks.flatten(1).sum(1)
    assert ((area > 0) & (area <= 16 * 25 + 60)).all()


def test_batch_labels_and_normal_views_untouched() -> None:
    x = _images(n=4)
    inputs, labels, masks = cutpaste_batch(x, torch.Generator().manual_seed(4))
    assert inputs.shape == (12, 3, 64, 64) and masks.shape == (12, 64, 64)
    assert labels.tolist() == [NORMAL] * 4 + [CUTPASTE] * 4 + [SCAR] * 4
    assert torch.equal(inputs[:4], x)
    assert not torch.equal(inputs[4:8], x) and not torch.equal(inputs[8:], x)
    assert not masks[:4].any() and masks[4:].flatten(1).any(1).all()
    changed = (inputs != x.repeat(3, 1, 1, 1)).any(1)  # 12×64×64: pixels the defect altered
    assert not (changed & ~masks).any()  # nothing changes outside the masks


def test_shards_match_the_global_batch() -> None:
    x = _images(n=6)
    whole = cutpaste(x, torch.Generator().manual_seed(5)).images
    part = cutpaste(x[3:], torch.Generator().manual_seed(5), total=6, offset=3).images
    assert torch.equal(whole[3:], part)


def test_the_jitter_acts_on_the_raw_scale_of_the_given_normalisation() -> None:
    """The same defect, pasted into images normalised with ImageNet's or with 0.5/0.5 statistics,
    is the same defect once each is un-normalised with its own statistics."""
    from simclr_ad.preprocessing import Normalization

    raw = torch.rand(4, 3, 48, 48, generator=torch.Generator().manual_seed(6))
    imagenet, half = Normalization(), Normalization((0.5,) * 3, (0.5,) * 3)
    for make in (cutpaste, scar):
        a = make(imagenet.normalize_(raw.clone()), torch.Generator().manual_seed(7))
        b = make(half.normalize_(raw.clone()), torch.Generator().manual_seed(7), normalization=half)
        assert torch.equal(a.masks, b.masks)
        torch.testing.assert_close(
            half.denormalize(b.images), imagenet.denormalize(a.images), rtol=0, atol=1e-5
        )
