"""Batched SimCLR augmentation: contract, randomness, geometry, colour maths, torchvision parity."""

from dataclasses import replace

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

import simclr_ad.data.augment as augment_module
from simclr_ad.data.augment import (
    PRESETS,
    AugmentConfig,
    BatchAugment,
    _color_jitter,
    _gaussian_blur,
    _random_erase,
    create_augment,
    draw_params,
)
from simclr_ad.data.writeup import writeup_transform
from simclr_ad.errors import UserError
from simclr_ad.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Normalization

SIZE = 32  # output side; inputs are SIZE + 32 = 64 px


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _natural_images(n: int, side: int = 64, seed: int = 0) -> torch.Tensor:
    """uint8 n×3×side×side: smooth random colour gradients plus mild noise."""
    g = _generator(seed)
    coarse = torch.rand(n, 3, 3, 3, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic")
    noisy = smooth + 0.04 * torch.randn(n, 3, side, side, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def _denormalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x * std + mean


def _normalized_value(level: float) -> torch.Tensor:
    """Per-channel normalised value (3,) of a gray level in [0, 1]."""
    return (level - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_output_contract(preset: str) -> None:
    augment = create_augment(preset, image_size=SIZE)
    views = augment(_natural_images(6, side=augment.input_size), _generator(0))
    assert augment.input_size == SIZE + 32
    assert views.shape == (6, 3, SIZE, SIZE)
    assert views.dtype == torch.float32
    assert views.is_contiguous()
    assert torch.isfinite(views).all()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_seed_same_views_other_seed_other_views(preset: str) -> None:
    augment = create_augment(preset, image_size=SIZE)
    images = _natural_images(6)
    first = augment(images, _generator(1))
    assert torch.equal(first, augment(images, _generator(1)))
    assert not torch.allclose(first, augment(images, _generator(2)))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_shards_match_the_full_batch(preset: str) -> None:
    augment = create_augment(preset, image_size=SIZE)
    images = _natural_images(8)
    full = augment(images, _generator(3))
    head = augment(images[:3], _generator(3), total=8, offset=0)
    tail = augment(images[3:], _generator(3), total=8, offset=3)
    torch.testing.assert_close(torch.cat([head, tail]), full, rtol=0, atol=1e-6)


def test_rows_outside_the_global_batch_are_rejected() -> None:
    augment = create_augment("seed", image_size=SIZE)
    with pytest.raises(ValueError, match="outside"):
        augment(_natural_images(4), _generator(0), total=5, offset=2)


def test_identity_config_is_a_bilinear_resize() -> None:
    images = _natural_images(4)
    views = BatchAugment(AugmentConfig(), image_size=SIZE)(images, _generator(0))
    exact = TF.resize(images.float(), [SIZE, SIZE], antialias=False) / 255
    torch.testing.assert_close(_denormalize(views), exact, rtol=0, atol=1e-5)
    antialiased = TF.resize(images.float(), [SIZE, SIZE], antialias=True) / 255
    assert (_denormalize(views) - antialiased).abs().mean() < 0.02


def test_horizontal_and_vertical_flip_equal_torch_flip() -> None:
    images = _natural_images(4)
    plain = BatchAugment(AugmentConfig(), image_size=SIZE)(images, _generator(0))
    flipped = BatchAugment(AugmentConfig(hflip_p=1.0, vflip_p=1.0), image_size=SIZE)
    torch.testing.assert_close(flipped(images, _generator(0)), plain.flip(-1, -2))


def test_rotation_leaves_black_corners() -> None:
    white = torch.full((2, 3, 64, 64), 255, dtype=torch.uint8)
    rotate = BatchAugment(AugmentConfig(rotation_degrees=(45.0, 45.0)), image_size=SIZE)
    views = rotate(white, _generator(0))
    for row, col in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        torch.testing.assert_close(views[:, :, row, col], _normalized_value(0.0).expand(2, 3))
    centre = views[:, :, SIZE // 2, SIZE // 2]
    torch.testing.assert_close(centre, _normalized_value(1.0).expand(2, 3))


def test_rotation_matches_torchvision_rotate_inside_the_image() -> None:
    """Same direction (counter-clockwise) and centre as torchvision; borders differ by design."""
    images = _natural_images(2, side=SIZE)  # input at output size: no crop resampling
    rotate = BatchAugment(AugmentConfig(rotation_degrees=(30.0, 30.0)), image_size=SIZE)
    views = _denormalize(rotate(images, _generator(0)))
    expected = TF.rotate(images.float() / 255, 30.0, interpolation=InterpolationMode.BILINEAR)
    interior = slice(8, SIZE - 8)
    torch.testing.assert_close(views[..., interior, interior], expected[..., interior, interior])


def test_seed_parameters_stay_in_torchvision_ranges() -> None:
    params = draw_params(
        PRESETS["seed"], total=4000, input_hw=(64, 64), size=SIZE, generator=_generator(0)
    )
    top, left, height, width = params.crop.unbind(1)
    area = height * width / 64**2
    assert area.min() >= 0.29 and area.max() <= 1.0  # 0.3 up to rounding of the sides
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 64).all() and (left + width <= 64).all()
    assert (width / height).min() >= 0.7 and (width / height).max() <= 1.4
    assert abs(params.hflip.double().mean().item() - 0.5) < 0.04
    assert abs(params.vflip.double().mean().item() - 0.1) < 0.03
    assert abs(params.jitter.double().mean().item() - 0.8) < 0.04
    assert params.angle.abs().max() <= 15.0 and params.angle.min() < -14 and params.angle.max() > 14
    assert params.factors[:, :3].min() >= 0.2 and params.factors[:, :3].max() <= 1.8
    assert params.factors[:, 3].abs().max() <= 0.2
    assert ((params.sigma >= 0.1) & (params.sigma <= 2.0)).all()
    assert torch.equal(params.order.sort(dim=1).values, torch.arange(4).expand(4000, 4))


def test_default_preset_parameters_preserve_defects() -> None:
    params = draw_params(
        PRESETS["default"], total=4000, input_hw=(64, 64), size=SIZE, generator=_generator(0)
    )
    _, _, height, width = params.crop.unbind(1)
    assert (height * width / 64**2).min() >= 0.68
    assert not (params.hflip.any() or params.vflip.any() or params.grayscale.any())
    assert not params.erase.any()
    assert params.angle.abs().max() <= 10.0
    brightness, contrast, saturation, hue = params.factors.unbind(1)
    assert brightness.min() >= 0.6 and brightness.max() <= 1.4
    assert contrast.min() >= 0.7 and contrast.max() <= 1.3
    assert (saturation == 1).all() and (hue == 0).all()
    assert params.sigma.max() <= 1.0


def test_erasing_boxes_follow_torchvision() -> None:
    params = draw_params(
        PRESETS["seed"], total=4000, input_hw=(64, 64), size=SIZE, generator=_generator(0)
    )
    top, left, height, width = params.erase_box[params.erase].unbind(1)
    assert abs(params.erase.double().mean().item() - 0.1) < 0.03
    area = (height * width).double() / SIZE**2
    assert area.min() >= 0.01 and area.max() <= 0.1
    assert (top >= 0).all() and (top + height <= SIZE).all()
    assert (left >= 0).all() and (left + width <= SIZE).all()


def test_color_jitter_matches_torchvision_ops_in_each_samples_order() -> None:
    """A naive reference: torchvision's four functions, one sample at a time, in its order."""
    config = PRESETS["seed"]
    images = torch.rand(64, 3, 8, 8, generator=_generator(0))
    params = draw_params(config, total=64, input_hw=(8, 8), size=8, generator=_generator(1))
    adjust = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    expected = images.clone()
    for i in range(len(images)):
        if params.jitter[i]:
            for op in params.order[i].tolist():
                expected[i] = adjust[op](expected[i], params.factors[i, op].item())
    got = _color_jitter(images.clone(), params, config)
    assert params.jitter.any() and not params.jitter.all()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_resampling_in_blocks_equals_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    augment = create_augment("seed", image_size=SIZE)
    images = _natural_images(7)
    monkeypatch.setattr(augment_module, "RESAMPLE_BLOCK", 100)
    whole = augment(images, _generator(4))
    monkeypatch.setattr(augment_module, "RESAMPLE_BLOCK", 3)
    assert torch.equal(augment(images, _generator(4)), whole)


def test_random_erase_zeroes_the_box_of_chosen_samples_only() -> None:
    x = torch.rand(3, 3, 8, 8, generator=_generator(0)) + 1
    mask = torch.tensor([True, False, True])
    box = torch.tensor([[1, 2, 3, 4], [0, 0, 8, 8], [0, 0, 1, 1]])
    out = _random_erase(x.clone(), mask, box)
    expected = x.clone()
    expected[0, :, 1:4, 2:6] = 0
    expected[2, :, 0:1, 0:1] = 0
    assert torch.equal(out, expected)


def test_blur_matches_torchvision() -> None:
    images = torch.rand(3, 3, 10, 10, generator=_generator(0))
    sigmas = torch.tensor([0.1, 0.8, 2.0])
    expected = torch.stack(
        [TF.gaussian_blur(im, [3, 3], [s.item()] * 2) for im, s in zip(images, sigmas, strict=True)]
    )
    torch.testing.assert_close(_gaussian_blur(images, sigmas, 3), expected)


def test_seed_preset_statistics_match_torchvision_pipeline() -> None:
    """Statistical equivalence with the write-up's PIL pipeline over 1024 views of each."""
    images = _natural_images(32)
    repeats = 32
    augment = create_augment("seed", image_size=SIZE)
    generator = _generator(0)
    ours = torch.cat([augment(images, generator) for _ in range(repeats)])
    pipeline = writeup_transform(SIZE, resize=False)
    pil_images = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = torch.stack([pipeline(im) for _ in range(repeats) for im in pil_images])
    for statistic, atol in [
        (lambda v: v.mean(dim=(0, 2, 3)), 0.15),  # per-channel mean
        (lambda v: v.std(dim=(0, 2, 3)), 0.15),  # per-channel std
        (lambda v: v.std(dim=(2, 3)).mean(dim=0), 0.1),  # texture left inside a view
        (lambda v: v.mean(dim=(2, 3)).std(dim=0), 0.1),  # spread of view brightness
    ]:
        torch.testing.assert_close(statistic(ours), statistic(theirs), rtol=0, atol=atol)


def test_default_preset_keeps_hue() -> None:
    """No hue/saturation jitter or grayscale: a red part stays red (contrast mixes in gray)."""
    red = torch.zeros(16, 3, 64, 64, dtype=torch.uint8)
    red[:, 0] = 200
    rgb = _denormalize(create_augment("default", image_size=SIZE)(red, _generator(0)))
    torch.testing.assert_close(rgb[:, 1], rgb[:, 2], rtol=0, atol=1e-5)
    assert (rgb[:, 0] >= rgb[:, 1] - 1e-5).all()
    centre = rgb[:, :, SIZE // 2, SIZE // 2]
    assert (centre[:, 0] > centre[:, 1] + 0.2).all()


def test_views_are_normalised_with_the_given_mean_and_std() -> None:
    """The same random views, normalised with ImageNet's statistics or with 0.5/0.5 (timm's
    tf_ backbones): equal on the [0, 1] scale wherever nothing was erased."""
    images = _natural_images(8, side=SIZE + 32)
    half = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    imagenet = create_augment("default", image_size=SIZE)(images, _generator(3))
    other = create_augment("default", image_size=SIZE, normalization=half)(images, _generator(3))
    kept = (imagenet != 0) & (other != 0)  # random erasing writes 0 after normalisation
    assert kept.float().mean() > 0.9
    torch.testing.assert_close(
        half.denormalize(other)[kept], _denormalize(imagenet)[kept], rtol=0, atol=1e-5
    )
    assert (other - imagenet)[kept].abs().max() > 0.1  # the statistics did differ


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(UserError, match="default, seed"):
        create_augment("strong", image_size=SIZE)


@pytest.mark.parametrize(
    "override", [{"hflip_p": 1.5}, {"crop_scale": (0.5, 0.2)}, {"hue": 0.7}, {"blur_kernel": 4}]
)
def test_out_of_range_config_is_rejected(override: dict[str, object]) -> None:
    with pytest.raises(UserError):
        AugmentConfig(**override)  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_crops_keep_the_resolution_of_image_size(preset: str) -> None:
    """``crop``: views of ``crop`` pixels cut from the ``image_size + 32`` decode, not resized
    from the whole image: a 2-pixel stripe pattern keeps its period and its contrast."""
    image_size, crop = 2 * SIZE, SIZE
    augment = create_augment(preset, image_size=image_size, crop=crop)
    assert (augment.input_size, augment.image_size) == (image_size + 32, crop)
    params = draw_params(
        augment.config,
        total=2000,
        input_hw=(augment.input_size, augment.input_size),
        size=crop,
        generator=_generator(0),
    )
    _, _, height, width = params.crop.unbind(1)
    side = (height * width).double().sqrt()
    assert side.min() >= 0.85 * crop and side.max() <= 1.15 * crop
    assert abs(side.median().item() - crop) <= 2

    plain = replace(augment.config, rotation_degrees=(0.0, 0.0), jitter_p=0.0, blur_p=0.0)
    stripes = torch.zeros(4, 3, image_size + 32, image_size + 32, dtype=torch.uint8)
    stripes[..., ::4, :] = 255
    stripes[..., 1::4, :] = 255  # bright and dark rows, period 4 px
    views = BatchAugment(plain, crop, input_size=image_size + 32)(stripes, _generator(1))
    assert views.shape == (4, 3, crop, crop)
    rows = _denormalize(views).mean(dim=(1, 3))  # 4 × crop row profiles
    assert (rows.amax(dim=1) > 0.8).all() and (rows.amin(dim=1) < 0.2).all()
    rises = ((rows[:, 1:] > 0.5) & (rows[:, :-1] <= 0.5)).sum(dim=1)
    assert ((rises >= crop // 4 - 2) & (rises <= crop // 4 + 1)).all()  # period ~4 px kept


def test_whole_image_views_without_crop_and_out_of_range_crops_rejected() -> None:
    assert create_augment("default", image_size=SIZE, crop=0).config == PRESETS["default"]
    with pytest.raises(UserError, match=r"crop must be in \[0, 32\], got 40"):
        create_augment("default", image_size=SIZE, crop=40)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_cuda_views_match_cpu_views(preset: str) -> None:
    augment = create_augment(preset, image_size=SIZE)
    images = _natural_images(8)
    on_cpu = augment(images, _generator(5))
    on_cuda = augment(images.cuda(), _generator(5))
    assert on_cuda.device.type == "cuda"
    # cuDNN may run the blur in TF32, hence the tolerance
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-2)
