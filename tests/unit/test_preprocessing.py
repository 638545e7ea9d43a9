"""Normalisation from the backbone's pretrained config, and the photometric correction."""

import pytest
import torch

from simclr_ad.errors import UserError
from simclr_ad.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalization,
    Photometric,
    normalize,
)

HALF = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ("resnet18", Normalization(IMAGENET_MEAN, IMAGENET_STD)),
        ("efficientnet_lite0", Normalization(IMAGENET_MEAN, IMAGENET_STD)),  # ra_in1k weights
        ("tf_efficientnet_lite0", HALF),  # Google's TF weights: inputs in [-1, 1]
    ],
)
def test_mean_and_std_come_from_the_backbones_pretrained_config(
    backbone: str, expected: Normalization
) -> None:
    assert Normalization.for_backbone(backbone) == expected


def test_unknown_backbone_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not a timm model"):
        Normalization.for_backbone("resnet_nonexistent")


def test_normalisation_by_hand() -> None:
    black = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(black), expected.expand(2, 3, 4, 4))
    torch.testing.assert_close(HALF(black), torch.full((2, 3, 4, 4), -1.0))
    torch.testing.assert_close(HALF(white), torch.ones(1, 3, 2, 2))
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(HALF.denormalize(HALF.normalize_(x.clone())), x)
    with pytest.raises(ValueError, match="uint8"):
        HALF(torch.zeros(1, 3, 2, 2))


def test_metadata_round_trip_and_old_metadata_is_imagenet() -> None:
    assert Normalization.from_metadata(HALF.to_dict()) == HALF
    assert Normalization.from_metadata(None) == Normalization(IMAGENET_MEAN, IMAGENET_STD)
    assert Normalization.from_metadata({"image_size": 224}) == Normalization()


def test_gain_correction_undoes_a_darker_lamp() -> None:
    g = torch.Generator().manual_seed(0)
    bright = torch.randint(60, 200, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    dark = (bright.float() * 0.8).round().to(torch.uint8)
    photometric = Photometric.fit("gain", bright)
    assert photometric.level == pytest.approx(bright.float().mean().item() / 255, rel=1e-5)
    imagenet = Normalization()
    a, b = (
        photometric.apply(normalize(bright), imagenet),
        photometric.apply(normalize(dark), imagenet),
    )
    assert (a - b).abs().max() < 0.05  # rounding of the darker copy only
    assert (normalize(bright) - normalize(dark)).abs().max() > 0.3


def test_correction_is_the_same_on_the_raw_scale_for_any_normalisation() -> None:
    """Un-normalising with the model's own mean/std: the corrected image in [0, 1] does not
    depend on which normalisation it travelled in."""
    g = torch.Generator().manual_seed(2)
    image = torch.randint(20, 120, (2, 3, 8, 8), generator=g, dtype=torch.uint8)
    for mode in ("gain", "standardize"):
        photometric = Photometric(mode, level=0.6, spread=0.2)
        via_imagenet = Normalization().denormalize(
            photometric.apply(normalize(image), Normalization())
        )
        via_half = HALF.denormalize(photometric.apply(HALF(image), HALF))
        torch.testing.assert_close(via_half, via_imagenet, rtol=0, atol=1e-5)
        raw = image.float() / 255
        level = raw.mean(dim=(1, 2, 3), keepdim=True)
        if mode == "gain":
            torch.testing.assert_close(via_half, (raw * 0.6 / level).clamp(0, 1), rtol=0, atol=1e-5)


def test_standardize_matches_contrast_and_none_is_identity() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.randint(60, 200, (1, 3, 16, 16), generator=g, dtype=torch.uint8)
    flat = ((image.float() - 128) * 0.5 + 128).round().to(torch.uint8)  # lower contrast
    photometric = Photometric.fit("standardize", image)
    imagenet = Normalization()
    difference = photometric.apply(normalize(image), imagenet) - photometric.apply(
        normalize(flat), imagenet
    )
    assert difference.abs().max() < 0.1
    x = normalize(image)
    assert torch.equal(Photometric().apply(x, imagenet), x)
    with pytest.raises(UserError, match="photometric"):
        Photometric.fit("auto", image)
