"""SimCLR view generation as a few batched tensor operations on the training device.

The caller decodes each image once and resizes it to ``input_size = image_size + 32`` (the
write-up's ``Resize(size + 32)``); :class:`BatchAugment` turns a uint8 batch ``B×3×H×W`` into
float32 views ``B×3×S×S`` (``S = image_size``), ImageNet-normalised, in this order:

1. random resized crop, horizontal/vertical flip and rotation about the centre of the crop, all
   composed into one per-sample affine grid and one bilinear ``F.grid_sample``; points that the
   rotation brings from outside the crop are black (0 before normalisation);
2. colour jitter (brightness, contrast, saturation, hue), each sample in its own random order;
3. random grayscale; 4. Gaussian blur (depthwise, reflect padding); 5. ImageNet normalisation;
6. random erasing with value 0 (after normalisation, as in torchvision).

Randomness: every random number is drawn on the CPU from the caller's generator as one
``total×K`` block (one row per sample, fixed column layout), then rows
``offset:offset + B`` are used. Augmenting a global batch in one call therefore gives exactly
the same views as augmenting its shards with ``total=B, offset=k`` on several ranks.

Presets (:data:`PRESETS`):

- ``seed``: the reference write-up's torchvision list, reproduced in distribution:
  ``RandomResizedCrop(S, scale=(0.3, 1))``, ``RandomHorizontalFlip(0.5)``,
  ``RandomVerticalFlip(0.1)``, ``RandomRotation(15)``,
  ``RandomApply([ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8)``, ``RandomGrayscale(0.2)``,
  ``RandomApply([GaussianBlur(3, sigma=(0.1, 2.0))], p=0.3)``, ``Normalize``,
  ``RandomErasing(p=0.1, scale=(0.02, 0.08), ratio=(0.3, 3.3), value=0)``. Same samplers as
  torchvision (crop and erasing use its 10-try rejection sampling, vectorised over the tries).
  Known differences, none of which changes the distribution of parameters: rotation is
  bilinear (torchvision's default is nearest); intermediate images stay float instead of being
  rounded to uint8 between PIL steps; the crop resize is bilinear without antialiasing (crops
  are at most ``(S + 32) / S`` times larger than the output); contrast blends with the exact
  grayscale mean (PIL rounds it).
- ``default``: defect-preserving views for inspection images. Differences from ``seed``:
  no saturation/hue jitter and no grayscale, so colour defects (metal_nut ``color``) stay
  visible; no flips, so flip defects (metal_nut ``flip``) stay anomalous; no random erasing,
  which looks like missing material; a milder crop (scale 0.7-1.0, ratio 0.9-1.1) so small
  defects stay in view and the patch scale stays stable; rotation kept at ±10° because parts
  arrive with pose variation; brightness (0.6-1.4) and contrast (0.7-1.3) jitter kept with
  p=0.8 because lighting drift is not a defect (MVTec screw test parts are darker than the
  training ones); mild blur (sigma 0.1-1.0, p=0.2) for focus drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr_ad.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_MARGIN = 32  # input_size = image_size + INPUT_MARGIN
MAX_TRIES = 10  # torchvision's tries for crop and erasing boxes
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
OUTSIDE = -2.0  # grid coordinate that grid_sample's zero padding turns into black


@dataclass(frozen=True)
class AugmentConfig:
    """All parameters of one augmentation preset; the defaults are the identity (resize only).

    Ranges are ``(low, high)``; strengths follow torchvision (``brightness=b`` draws a factor in
    ``[max(0, 1 - b), 1 + b]``, ``hue=h`` a shift in ``[-h, h]``, 0 disables the op). See the
    module docstring for why the ``default`` preset differs from ``seed``.

    Attributes:
        crop_scale: Crop area as a fraction of the input area (``seed`` 0.3-1, ``default`` 0.7-1).
        crop_ratio: Crop aspect ratio width/height, sampled log-uniformly.
        hflip_p: Probability of a horizontal flip (``default`` 0: flips can be defects).
        vflip_p: Probability of a vertical flip (``default`` 0).
        rotation_degrees: Counter-clockwise rotation angle range in degrees.
        jitter_p: Probability of applying colour jitter to a sample.
        brightness: Brightness jitter strength.
        contrast: Contrast jitter strength.
        saturation: Saturation jitter strength (``default`` 0: colour defects must stay).
        hue: Hue jitter strength in turns, at most 0.5 (``default`` 0).
        grayscale_p: Probability of converting to grayscale (``default`` 0).
        blur_p: Probability of a Gaussian blur.
        blur_kernel: Odd blur kernel size in pixels.
        blur_sigma: Blur sigma range in pixels.
        erase_p: Probability of random erasing (``default`` 0: looks like missing material).
        erase_scale: Erased area as a fraction of the output area.
        erase_ratio: Erased box aspect ratio height/width, sampled log-uniformly.
    """

    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    hflip_p: float = 0.0
    vflip_p: float = 0.0
    rotation_degrees: tuple[float, float] = (0.0, 0.0)
    jitter_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    erase_p: float = 0.0
    erase_scale: tuple[float, float] = (0.02, 0.08)
    erase_ratio: tuple[float, float] = (0.3, 3.3)

    def __post_init__(self) -> None:
        for name in ("hflip_p", "vflip_p", "jitter_p", "grayscale_p", "blur_p", "erase_p"):
            _require(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")
        for name in ("crop_scale", "crop_ratio", "blur_sigma", "erase_scale", "erase_ratio"):
            low, high = getattr(self, name)
            _require(0.0 < low <= high, f"{name} must be (low, high) with 0 < low <= high")
        _require(self.crop_scale[1] <= 1.0, "crop_scale must be at most 1")
        _require(self.erase_scale[1] < 1.0, "erase_scale must be below 1")
        low, high = self.rotation_degrees
        _require(low <= high, "rotation_degrees must be (low, high) with low <= high")
        for name in ("brightness", "contrast", "saturation"):
            _require(getattr(self, name) >= 0.0, f"{name} must be >= 0")
        _require(0.0 <= self.hue <= 0.5, "hue must be in [0, 0.5]")
        _require(self.blur_kernel > 0 and self.blur_kernel % 2 == 1, "blur_kernel must be odd")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(f"augmentation: {message}")


PRESETS: dict[str, AugmentConfig] = {
    "seed": AugmentConfig(
        crop_scale=(0.3, 1.0),
        crop_ratio=(3 / 4, 4 / 3),
        hflip_p=0.5,
        vflip_p=0.1,
        rotation_degrees=(-15.0, 15.0),
        jitter_p=0.8,
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        grayscale_p=0.2,
        blur_p=0.3,
        blur_sigma=(0.1, 2.0),
        erase_p=0.1,
    ),
    "default": AugmentConfig(
        crop_scale=(0.7, 1.0),
        crop_ratio=(0.9, 1.1),
        rotation_degrees=(-10.0, 10.0),
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.3,
        blur_p=0.2,
        blur_sigma=(0.1, 1.0),
    ),
}


@dataclass(frozen=True)
class AugmentParams:
    """Random parameters of N views, on the CPU (float64 unless noted).

    Attributes:
        crop: N×4 crop boxes (top, left, height, width) in input pixels.
        hflip: N booleans.
        vflip: N booleans.
        angle: N counter-clockwise rotation angles in degrees.
        jitter: N booleans, whether colour jitter is applied.
        factors: N×4 jitter factors (brightness, contrast, saturation, hue shift).
        order: N×4 int64 jitter ops in the order applied (0 brightness, 1 contrast,
            2 saturation, 3 hue), a uniformly random permutation per sample.
        grayscale: N booleans.
        blur: N booleans.
        sigma: N blur sigmas.
        erase: N booleans (drawn and a valid box found).
        erase_box: N×4 int64 erased boxes (top, left, height, width) in output pixels.
    """

    crop: Tensor
    hflip: Tensor
    vflip: Tensor
    angle: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    grayscale: Tensor
    blur: Tensor
    sigma: Tensor
    erase: Tensor
    erase_box: Tensor

    def rows(self, start: int, stop: int) -> AugmentParams:
        """The parameters of samples ``start:stop``."""
        return AugmentParams(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})


# Column layout of the uniform block drawn per sample; changing it changes every seed's views.
_COLUMNS = {
    "crop_area": MAX_TRIES,
    "crop_ratio": MAX_TRIES,
    "crop_pos": 2,
    "hflip": 1,
    "vflip": 1,
    "angle": 1,
    "jitter": 1,
    "factors": 4,
    "order": 4,
    "grayscale": 1,
    "blur": 1,
    "sigma": 1,
    "erase": 1,
    "erase_area": MAX_TRIES,
    "erase_ratio": MAX_TRIES,
    "erase_pos": 2,
}


def draw_params(
    config: AugmentConfig,
    *,
    total: int,
    input_hw: tuple[int, int],
    size: int,
    generator: torch.Generator,
) -> AugmentParams:
    """Draws the parameters of ``total`` views from ``generator`` (CPU) in a fixed order.

    Args:
        config: The augmentation parameters.
        total: Number of views (rows) to draw.
        input_hw: Height and width of the input images.
        size: Side of the square output views.
        generator: A CPU generator; its state advances by one ``total×K`` uniform draw.

    Returns:
        Parameters with ``total`` rows.
    """
    block = torch.rand(total, sum(_COLUMNS.values()), generator=generator, dtype=torch.float64)
    u = dict(zip(_COLUMNS, block.split(list(_COLUMNS.values()), dim=1), strict=True))
    height, width = input_hw
    crop = _crop_boxes(u["crop_area"], u["crop_ratio"], u["crop_pos"], height, width, config)
    erase_hw, found = _try_boxes(
        u["erase_area"],
        u["erase_ratio"],
        size * size,
        config.erase_scale,
        config.erase_ratio,
        max_hw=(size - 1, size - 1),
    )
    erase_hw = erase_hw.flip(1)  # torchvision's erasing uses h = sqrt(area * ratio)
    return AugmentParams(
        crop=crop,
        hflip=u["hflip"][:, 0] < config.hflip_p,
        vflip=u["vflip"][:, 0] < config.vflip_p,
        angle=_uniform(u["angle"][:, 0], config.rotation_degrees),
        jitter=u["jitter"][:, 0] < config.jitter_p,
        factors=_jitter_factors(u["factors"], config),
        order=u["order"].argsort(dim=1),
        grayscale=u["grayscale"][:, 0] < config.grayscale_p,
        blur=u["blur"][:, 0] < config.blur_p,
        sigma=_uniform(u["sigma"][:, 0], config.blur_sigma),
        erase=(u["erase"][:, 0] < config.erase_p) & found,
        erase_box=torch.cat([_place(u["erase_pos"], erase_hw, (size, size)), erase_hw], 1).long(),
    )


def _uniform(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _jitter_factors(u: Tensor, config: AugmentConfig) -> Tensor:
    strengths = (config.brightness, config.contrast, config.saturation)
    columns = [_uniform(u[:, k], (max(0.0, 1.0 - s), 1.0 + s)) for k, s in enumerate(strengths)]
    columns.append(_uniform(u[:, 3], (-config.hue, config.hue)))
    return torch.stack(columns, dim=1)


def _try_boxes(
    u_area: Tensor,
    u_ratio: Tensor,
    area: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    *,
    max_hw: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """torchvision's rejection sampling of box sizes, all tries at once.

    Args:
        u_area: N×T uniforms for the area of each try.
        u_ratio: N×T uniforms for the log aspect ratio (width/height) of each try.
        area: Area of the image the box lies in.
        scale: Range of the box area as a fraction of ``area``.
        ratio: Range of the aspect ratio.
        max_hw: Largest valid height and width.

    Returns:
        N×2 (height, width) of the first valid try, and N booleans: whether one was valid.
    """
    target = area * _uniform(u_area, scale)
    aspect = torch.exp(_uniform(u_ratio, (math.log(ratio[0]), math.log(ratio[1]))))
    hw = torch.stack([torch.sqrt(target / aspect), torch.sqrt(target * aspect)], -1).round()
    valid = ((hw > 0) & (hw <= torch.tensor(max_hw, dtype=hw.dtype))).all(-1)  # N×T
    first = valid.to(torch.uint8).argmax(dim=1)  # first valid try (0 when none)
    return hw[torch.arange(len(hw)), first], valid.any(dim=1)


def _place(u_pos: Tensor, hw: Tensor, bounds_hw: tuple[int, int]) -> Tensor:
    """Uniform integer top-left corners (N×2) for boxes ``hw`` (N×2) inside ``bounds_hw``."""
    room = torch.tensor(bounds_hw, dtype=hw.dtype) - hw + 1
    return torch.floor(u_pos * room)


def _crop_boxes(
    u_area: Tensor, u_ratio: Tensor, u_pos: Tensor, height: int, width: int, config: AugmentConfig
) -> Tensor:
    """N×4 crop boxes (top, left, height, width) as ``RandomResizedCrop.get_params``."""
    hw, found = _try_boxes(
        u_area,
        u_ratio,
        height * width,
        config.crop_scale,
        config.crop_ratio,
        max_hw=(height, width),
    )
    center_hw = torch.tensor(_center_crop_hw(height, width, config.crop_ratio), dtype=hw.dtype)
    hw = torch.where(found[:, None], hw, center_hw)
    centered = torch.div(torch.tensor([height, width]) - hw, 2, rounding_mode="floor")
    top_left = torch.where(found[:, None], _place(u_pos, hw, (height, width)), centered)
    return torch.cat([top_left, hw], dim=1)


def _center_crop_hw(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback crop when all tries fail: the whole image, ratio clamped."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return round(width / ratio[0]), width
    if in_ratio > ratio[1]:
        return height, round(height * ratio[1])
    return height, width


class BatchAugment:
    """Makes SimCLR views of a uint8 batch with a few batched tensor operations.

    Attributes:
        config: The augmentation parameters.
        image_size: Side S of the output views.
        input_size: Side the caller resizes images to before augmenting (``S + 32``).
    """

    def __init__(self, config: AugmentConfig, image_size: int) -> None:
        if image_size < 1:
            raise UserError(f"augmentation: image_size must be positive, got {image_size}")
        self.config = config
        self.image_size = image_size
        self.input_size = image_size + INPUT_MARGIN

    def __call__(
        self,
        images: Tensor,
        generator: torch.Generator,
        *,
        total: int | None = None,
        offset: int = 0,
    ) -> Tensor:
        """Augments a batch, or rows ``offset:offset + B`` of a global batch of ``total``.

        Args:
            images: uint8 B×3×H×W, normally H = W = ``input_size``; any device.
            generator: CPU generator all random parameters are drawn from.
            total: Size of the global batch the parameters are drawn for (default B).
            offset: Index of ``images[0]`` in the global batch.

        Returns:
            float32 B×3×S×S views, ImageNet-normalised, on ``images.device``.
        """
        batch, height, width = _check_images(images)
        total = batch if total is None else total
        if offset < 0 or offset + batch > total:
            raise ValueError(f"rows {offset}:{offset + batch} are outside a batch of {total}")
        params = draw_params(
            self.config,
            total=total,
            input_hw=(height, width),
            size=self.image_size,
            generator=generator,
        ).rows(offset, offset + batch)
        x = _resample(images, params, self.image_size)  # B×3×S×S in [0, 1]
        x = _color_jitter(x, params, self.config)
        x = _random_grayscale(x, params.grayscale)
        x = _random_blur(x, params.blur, params.sigma, self.config.blur_kernel)
        return _random_erase(_normalize_float(x), params.erase, params.erase_box)


def create_augment(preset: str, image_size: int) -> BatchAugment:
    """Builds the augmentation of a named preset (see :data:`PRESETS`).

    Raises:
        UserError: When the preset is unknown; the message lists the valid names.
    """
    if preset not in PRESETS:
        valid = ", ".join(sorted(PRESETS))
        raise UserError(f"unknown augmentation preset {preset!r}; valid presets: {valid}")
    return BatchAugment(PRESETS[preset], image_size=image_size)


def normalize(images: Tensor) -> Tensor:
    """ImageNet-normalises a uint8 batch without augmenting it.

    Args:
        images: uint8 B×3×H×W.

    Returns:
        float32 B×3×H×W.
    """
    _check_images(images)
    return _normalize_float(images.float() / 255.0)


def _check_images(images: Tensor) -> tuple[int, int, int]:
    """Batch size, height and width of a uint8 B×3×H×W batch; ValueError otherwise."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 B×3×H×W images, got {images.dtype} {tuple(images.shape)}")
    batch, _, height, width = images.shape
    return batch, height, width


def _normalize_float(x: Tensor) -> Tensor:
    """Normalises float images in [0, 1] in place."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def _resample(images: Tensor, params: AugmentParams, size: int) -> Tensor:
    """Crop, flips and rotation as one bilinear grid_sample: uint8 B×3×H×W -> float B×3×S×S."""
    grid = _sampling_grid(params, images.shape[-2:], size, images.device)
    x = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    return x.mul_(1.0 / 255.0)


def _sampling_grid(
    params: AugmentParams, input_hw: tuple[int, ...], size: int, device: torch.device
) -> Tensor:
    """B×S×S×2 source coordinates of output pixels (x, y in [-1, 1], align_corners=False).

    Output point -> inverse rotation about the centre (in normalised crop coordinates, where
    the square output makes rotation isotropic) -> points outside the crop become black ->
    inverse flips and crop box, one per-sample affine map into the input.
    """
    n = len(params.angle)
    angle = torch.deg2rad(params.angle.to(device=device, dtype=torch.float32)).view(n, 1, 1)
    cos, sin = angle.cos(), angle.sin()
    coords = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    x, y = coords.view(1, 1, size), coords.view(1, size, 1)
    xr = cos * x - sin * y  # B×S×S; counter-clockwise on screen (y points down)
    yr = sin * x + cos * y
    inside = (xr.abs() <= 1) & (yr.abs() <= 1)
    scale, shift = _crop_affine(params, input_hw)
    src_x = _to_source(xr, scale[:, 1].to(device), shift[:, 1].to(device), input_hw[1])
    src_y = _to_source(yr, scale[:, 0].to(device), shift[:, 0].to(device), input_hw[0])
    grid = torch.stack([src_x, src_y], dim=-1)
    return grid.masked_fill_(~inside.unsqueeze(-1), OUTSIDE)


def _crop_affine(params: AugmentParams, input_hw: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Per-sample map ``source = scale * t + shift`` from flipped crop to input coordinates.

    Returns:
        N×2 scales and N×2 shifts, (y, x) order, float32 on the CPU.
    """
    top, left, height, width = params.crop.unbind(1)
    extent = torch.tensor(input_hw[:2], dtype=torch.float64)
    start, length = torch.stack([top, left], 1), torch.stack([height, width], 1)
    sign = 1.0 - 2.0 * torch.stack([params.vflip, params.hflip], 1).double()
    scale = sign * length / extent
    shift = (2 * start + length) / extent - 1
    return scale.float(), shift.float()


def _to_source(t: Tensor, scale: Tensor, shift: Tensor, extent: int) -> Tensor:
    """``scale * t + shift`` (N×S×S, scale and shift N), clamped to the outer pixel centres:
    border padding for points inside the crop, which keeps its edges from darkening."""
    limit = 1.0 - 1.0 / extent
    return torch.addcmul(shift.view(-1, 1, 1), t, scale.view(-1, 1, 1)).clamp_(-limit, limit)


def _grayscale(x: Tensor) -> Tensor:
    """B×3×H×W -> B×1×H×W luma with torchvision's weights."""
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _color_jitter(x: Tensor, params: AugmentParams, config: AugmentConfig) -> Tensor:
    """torchvision's ColorJitter per sample, each sample's four ops in its own order."""
    strengths = (config.brightness, config.contrast, config.saturation, config.hue)
    enabled = torch.tensor([s > 0 for s in strengths])
    for step in range(4):
        op = params.order[:, step]
        use = params.jitter & enabled[op]
        if (use & (op < 3)).any():
            factor = params.factors.gather(1, op[:, None]).squeeze(1)
            x = _blend_step(x, op, torch.where(use & (op < 3), factor, 1.0))
        hue = (use & (op == 3)).nonzero().squeeze(1)
        if len(hue):
            idx = hue.to(x.device)
            x[idx] = _shift_hue(x[idx], params.factors[hue, 3].to(x.device, torch.float32))
    return x


def _blend_step(x: Tensor, op: Tensor, factor: Tensor) -> Tensor:
    """Blends each sample towards black (op 0), its mean gray (op 1) or its gray image (op 2).

    Args:
        x: B×3×H×W in [0, 1].
        op: B op indices (CPU).
        factor: B blend factors (CPU); 1 leaves a sample unchanged.

    Returns:
        B×3×H×W in [0, 1].
    """
    # lerp(target, x, f) = f·x + (1 − f)·target, with per-sample scalars instead of full-size
    # selections: target is 0 (op 0), the mean gray (op 1) or the gray image (op 2).
    n = len(op)
    f = factor.to(dtype=torch.float32)
    out = x * f.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)
    rest = 1.0 - f
    if ((op == 1) & (rest != 0)).any() or ((op == 2) & (rest != 0)).any():
        gray = _grayscale(x)
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        w_mean = torch.where(op == 1, rest, 0.0).to(device=x.device, dtype=x.dtype)
        w_gray = torch.where(op == 2, rest, 0.0).to(device=x.device, dtype=x.dtype)
        out += mean * w_mean.view(n, 1, 1, 1)
        out.addcmul_(gray, w_gray.view(n, 1, 1, 1))
    return out.clamp_(0, 1)


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotates the HSV hue of each sample (torchvision's adjust_hue, without an HSV tensor).

    Args:
        x: N×3×H×W RGB in [0, 1].
        shift: N hue shifts in turns.

    Returns:
        N×3×H×W RGB in [0, 1].
    """
    r, g, b = x.unbind(1)
    value = x.amax(dim=1)
    chroma = value - x.amin(dim=1)
    # Hue in sixths of a turn, [0, 6): one division; where chroma is 0 every numerator is 0 too.
    numerator = torch.where(
        value == r, g - b, torch.where(value == g, b - r + 2 * chroma, r - g + 4 * chroma)
    )
    hue6 = torch.remainder(numerator / chroma.clamp_min(1e-12) + 6 * shift.view(-1, 1, 1), 6.0)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + hue6.unsqueeze(1), 6)
    return value.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def _random_grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Replaces, in place, the samples selected by ``mask`` (B, CPU) with their gray image."""
    chosen = mask.nonzero().squeeze(1)
    if len(chosen):
        idx = chosen.to(x.device)
        x[idx] = _grayscale(x[idx]).expand(-1, 3, -1, -1)
    return x


def _random_blur(x: Tensor, mask: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blurs the samples selected by ``mask`` (B, CPU) with their ``sigma`` (B, CPU)."""
    chosen = mask.nonzero().squeeze(1)
    if not len(chosen):
        return x
    idx = chosen.to(x.device)
    x[idx] = _gaussian_blur(x[idx], sigma[chosen].to(x.device, torch.float32), kernel_size)
    return x


def _gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """torchvision's gaussian_blur with one sigma per sample, as two depthwise convolutions.

    Args:
        x: N×C×H×W.
        sigma: N standard deviations in pixels.
        kernel_size: Odd kernel size.

    Returns:
        N×C×H×W, reflect-padded at the borders.
    """
    n, c, height, width = x.shape
    half = (kernel_size - 1) / 2
    t = torch.linspace(-half, half, kernel_size, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma[:, None]) ** 2)  # N×k
    weight = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    y = F.pad(x.reshape(1, n * c, height, width), [kernel_size // 2] * 4, mode="reflect")
    y = F.conv2d(y, weight.view(n * c, 1, kernel_size, 1), groups=n * c)
    y = F.conv2d(y, weight.view(n * c, 1, 1, kernel_size), groups=n * c)
    return y.view(n, c, height, width)


def _random_erase(x: Tensor, mask: Tensor, box: Tensor) -> Tensor:
    """Sets the box (top, left, height, width; B×4, CPU) of samples in ``mask`` (B, CPU) to 0."""
    if not mask.any():
        return x
    n, _, size, _ = x.shape
    top, left, h, w = box.to(x.device).view(n, 4, 1, 1).unbind(1)
    rows = torch.arange(size, device=x.device).view(1, size, 1)
    cols = torch.arange(size, device=x.device).view(1, 1, size)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    inside &= mask.to(x.device).view(n, 1, 1)
    return x.masked_fill_(inside.unsqueeze(1), 0.0)
