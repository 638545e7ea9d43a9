"""SimCLR view generation as a few batched tensor operations on the training device.

The caller decodes each image once and resizes it to ``input_size = image_size + 32`` (the
write-up's ``Resize(size + 32)``); :class:`BatchAugment` turns a uint8 batch ``B×3×H×W`` into
float32 views ``B×3×S×S`` (``S = image_size``), normalised with the model's mean/std
(:mod:`simclr_ad.preprocessing`), in this order:

1. random resized crop, horizontal/vertical flip and rotation about the centre of the crop, all
   composed into one per-sample affine grid and one bilinear ``F.grid_sample``; points that the
   rotation brings from outside the crop are black (0 before normalisation);
2. colour jitter (brightness, contrast, saturation, hue), each sample in its own random order:
   per step one batched affine colour map and a clamp, plus an exact HSV hue shift of the
   samples whose op it is (:mod:`simclr_ad.data.color`);
3. random grayscale; 4. Gaussian blur (separable, reflect padding); 5. normalisation;
6. random erasing with value 0 (after normalisation, as in torchvision).

Grayscale, blur, hue and erasing touch only the samples that draw them. There is no Python loop
over samples; on the CPU, step 1 runs in blocks of a few samples to stay in the cache.

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
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr_ad.data import color
from simclr_ad.errors import UserError
from simclr_ad.preprocessing import Normalization

INPUT_MARGIN = 32  # input_size = image_size + INPUT_MARGIN
MAX_TRIES = 10  # torchvision's tries for crop and erasing boxes
PUSH = 2.0**24  # grid shift per unit of distance outside the crop (see _sampling_grid)
FAR = 4.0  # largest such shift: normalised coordinates beyond 3 are outside any image
RESAMPLE_BLOCK = 4  # samples resampled at a time on the CPU (see _resample)


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
        input_size: Side the caller resizes images to before augmenting (``S + 32`` unless
            given; larger for crops at the detector's resolution, see :func:`create_augment`).
        normalization: The model's input normalisation of the views (None: ImageNet's).
    """

    def __init__(
        self,
        config: AugmentConfig,
        image_size: int,
        *,
        input_size: int | None = None,
        normalization: Normalization | None = None,
    ) -> None:
        if image_size < 1:
            raise UserError(f"augmentation: image_size must be positive, got {image_size}")
        self.config = config
        self.image_size = image_size
        self.input_size = image_size + INPUT_MARGIN if input_size is None else input_size
        self.normalization = normalization or Normalization()

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
            float32 B×3×S×S views, normalised (``normalization``), on ``images.device``.
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
        return _random_erase(self.normalization.normalize_(x), params.erase, params.erase_box)


def create_augment(
    preset: str,
    image_size: int,
    *,
    crop: int = 0,
    normalization: Normalization | None = None,
) -> BatchAugment:
    """Builds the augmentation of a named preset (see :data:`PRESETS`).

    Args:
        preset: A name in :data:`PRESETS`.
        image_size: The size the images are seen at (views of the whole image are this size).
        crop: 0 for views of the whole image; else views are ``crop``-pixel crops at the
            resolution of ``image_size``: images are decoded at ``image_size + 32`` as usual and
            each crop box covers about ``crop`` of those pixels (area ×0.8-1.25, the preset's
            aspect ratios, flips and rotation), so training sees the parts' fine structure at the
            scale the patch features are fitted at, for the cost of ``crop``-pixel images.
        normalization: The model's input normalisation (None: ImageNet's).

    Raises:
        UserError: When the preset is unknown (the message lists the valid names), or ``crop``
            is not in [0, image_size].
    """
    if preset not in PRESETS:
        valid = ", ".join(sorted(PRESETS))
        raise UserError(f"unknown augmentation preset {preset!r}; valid presets: {valid}")
    if not 0 <= crop <= image_size:
        raise UserError(f"augmentation: crop must be in [0, {image_size}], got {crop}")
    if crop == 0:
        return BatchAugment(PRESETS[preset], image_size=image_size, normalization=normalization)
    input_size = image_size + INPUT_MARGIN
    native = (crop / input_size) ** 2
    config = replace(PRESETS[preset], crop_scale=(0.8 * native, min(1.0, 1.25 * native)))
    return BatchAugment(config, image_size=crop, input_size=input_size, normalization=normalization)


def _check_images(images: Tensor) -> tuple[int, int, int]:
    """Batch size, height and width of a uint8 B×3×H×W batch; ValueError otherwise."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 B×3×H×W images, got {images.dtype} {tuple(images.shape)}")
    batch, _, height, width = images.shape
    return batch, height, width


def _resample(images: Tensor, params: AugmentParams, size: int) -> Tensor:
    """Crop, flips and rotation as bilinear grid_sample: uint8 B×3×H×W -> float B×3×S×S in [0, 1].

    On the CPU the sampling runs in blocks of ``RESAMPLE_BLOCK`` samples, so that a block's
    padded input and output stay in the cache (the blocks give the same views).
    """
    batch = len(images)
    out = torch.empty(batch, 3, size, size, device=images.device)
    grid = _sampling_grid(params, images.shape[-2:], size, images.device)
    block = RESAMPLE_BLOCK if images.device.type == "cpu" else batch
    for start in range(0, batch, block):
        rows = slice(start, start + block)
        sampled = F.grid_sample(
            _pad_edges(images[rows]), grid[rows], mode="bilinear", align_corners=False
        )
        torch.mul(sampled, 1.0 / 255.0, out=out[rows])
    return out


def _pad_edges(images: Tensor) -> Tensor:
    """float B×3×(H+2)×(W+2): the images with their outer rows and columns repeated once.

    Bilinear samples anywhere inside the images then equal border padding: a point between the
    outer pixel centres and the image edge takes the edge's value, without clamping the grid.
    """
    batch, channels, height, width = images.shape
    out = images.new_empty((batch, channels, height + 2, width + 2), dtype=torch.float32)
    out[:, :, 1:-1, 1:-1] = images
    out[:, :, 0, 1:-1] = images[:, :, 0]
    out[:, :, -1, 1:-1] = images[:, :, -1]
    out[..., 0] = out[..., 1]
    out[..., -1] = out[..., -2]
    return out


def _sampling_grid(
    params: AugmentParams, input_hw: tuple[int, ...], size: int, device: torch.device
) -> Tensor:
    """B×S×S×2 source coordinates (x, y) of the output pixels in the edge-padded input.

    Output point ``p`` (normalised, align_corners=False) -> inverse rotation about the centre:
    crop coordinates ``q = R p``, the crop being ``[-1, 1]²`` (the square output makes rotation
    isotropic) -> flips and crop box: ``source = scale * q + shift``, one affine map per sample.
    A point with ``max(|q_x|, |q_y|) > 1`` comes from outside the crop and must be black: it is
    moved right by ``PUSH`` times that excess (at most ``FAR``), out of the image, where
    grid_sample's zero padding gives black (points within ``FAR / PUSH``, about 2e-7, of the
    crop's edge, i.e. within float rounding, move less). Arithmetic rather than boolean masks,
    which are slow on the CPU.
    """
    n = len(params.angle)
    angle = torch.deg2rad(params.angle)
    cos, sin = angle.cos(), angle.sin()
    scale, shift = _crop_affine(params, input_hw)  # (y, x) columns
    coords = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    grid = torch.empty(n, size, size, 2, device=device)
    sx, sy = scale[:, 1], scale[:, 0]
    _plane(coords, sx * cos, -sx * sin, shift[:, 1], out=grid[..., 0])
    _plane(coords, sy * sin, sy * cos, shift[:, 0], out=grid[..., 1])
    zero = torch.zeros(n, dtype=torch.float64)
    excess = _plane(coords, PUSH * cos, -PUSH * sin, zero).abs_()  # PUSH·|q_x|
    torch.maximum(excess, _plane(coords, PUSH * sin, PUSH * cos, zero).abs_(), out=excess)
    grid[..., 0] += excess.sub_(PUSH).clamp_(0.0, FAR)
    return grid


def _plane(
    coords: Tensor, a_x: Tensor, a_y: Tensor, c: Tensor, *, out: Tensor | None = None
) -> Tensor:
    """``a_x * x + a_y * y + c`` over the S×S output grid, per sample: N×S×S.

    Args:
        coords: S normalised pixel-centre coordinates (the same for x and y).
        a_x: N coefficients of x (float64, CPU); likewise ``a_y`` and the constant ``c``.
        out: Optional N×S×S tensor (may be strided) to write into.
    """
    n, size = len(a_x), len(coords)
    device = coords.device
    along_x = a_x.to(device, torch.float32).view(n, 1, 1) * coords.view(1, 1, size)
    along_x += c.to(device, torch.float32).view(n, 1, 1)
    along_y = a_y.to(device, torch.float32).view(n, 1, 1) * coords.view(1, size, 1)
    if out is None:
        return along_x + along_y
    return torch.add(along_x, along_y, out=out)


def _crop_affine(params: AugmentParams, input_hw: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Per-sample map ``source = scale * q + shift`` from flipped crop coordinates ``q`` in
    ``[-1, 1]`` to the normalised coordinates of the input padded by one pixel per side.

    Returns:
        N×2 scales and N×2 shifts, (y, x) order, float64 on the CPU.
    """
    top, left, height, width = params.crop.unbind(1)
    extent = torch.tensor(input_hw[:2], dtype=torch.float64)
    start, length = torch.stack([top, left], 1), torch.stack([height, width], 1)
    sign = 1.0 - 2.0 * torch.stack([params.vflip, params.hflip], 1).double()
    padded = extent + 2
    return sign * length / padded, (2 * start + length - extent) / padded


def _color_jitter(x: Tensor, params: AugmentParams, config: AugmentConfig) -> Tensor:
    """torchvision's ColorJitter per sample, each sample's four ops in its own order.

    One step applies every sample's op at that position: brightness, contrast and saturation
    as one batched affine colour map (:func:`color.blend`), hue on the samples that shift it.
    Overwrites and returns ``x``.
    """
    strengths = torch.tensor([config.brightness, config.contrast, config.saturation, config.hue])
    for step in range(4):
        op = params.order[:, step]
        use = params.jitter & (strengths[op] > 0)
        blend_op = torch.where(use & (op < 3), op, -1)
        if (blend_op >= 0).any():
            factor = params.factors.gather(1, op[:, None]).squeeze(1)
            color.blend(x, blend_op, factor)
        _on_selected(
            x, use & (op == 3), lambda part, rows: color.shift_hue(part, params.factors[rows, 3])
        )
    return x


def _on_selected(x: Tensor, mask: Tensor, op: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Replaces, in place, the samples selected by ``mask`` (B, CPU) with ``op(samples, rows)``,
    ``rows`` their indices on the CPU; the other samples are not touched (nor copied)."""
    rows = mask.nonzero().squeeze(1)
    if len(rows):
        idx = rows.to(x.device)
        x.index_copy_(0, idx, op(x.index_select(0, idx), rows))
    return x


def _random_grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Replaces, in place, the samples selected by ``mask`` (B, CPU) with their gray image."""
    return _on_selected(x, mask, lambda part, _: color.grayscale(part).expand(-1, 3, -1, -1))


def _random_blur(x: Tensor, mask: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blurs the samples selected by ``mask`` (B, CPU) with their ``sigma`` (B, CPU)."""
    return _on_selected(
        x,
        mask,
        lambda part, rows: _gaussian_blur(
            part, sigma[rows].to(x.device, torch.float32), kernel_size
        ),
    )


def _gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """torchvision's gaussian_blur with one sigma per sample, separable, reflect padding.

    Each direction is ``kernel_size`` shifted multiply-adds: for kernels this small that is
    faster on the CPU than a depthwise convolution.

    Args:
        x: N×C×H×W.
        sigma: N standard deviations in pixels.
        kernel_size: Odd kernel size.

    Returns:
        N×C×H×W.
    """
    n, _, height, width = x.shape
    half = kernel_size // 2
    t = torch.linspace(-half, half, kernel_size, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma[:, None]) ** 2)  # N×k
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).view(n, kernel_size, 1, 1, 1)
    padded = F.pad(x, [half] * 4, mode="reflect")
    columns = _taps(padded, kernel, dim=2, length=height)  # N×C×H×(W + 2 half)
    return _taps(columns, kernel, dim=3, length=width)


def _taps(x: Tensor, kernel: Tensor, *, dim: int, length: int) -> Tensor:
    """``sum_j kernel[:, j] * x.narrow(dim, j, length)``; kernel N×k×1×1×1."""
    out = x.narrow(dim, 0, length) * kernel[:, 0]
    for j in range(1, kernel.shape[1]):
        out.addcmul_(x.narrow(dim, j, length), kernel[:, j])
    return out


def _random_erase(x: Tensor, mask: Tensor, box: Tensor) -> Tensor:
    """Sets the box (top, left, height, width; B×4, CPU) of samples in ``mask`` (B, CPU) to 0."""
    height, width = x.shape[-2:]

    def erase(part: Tensor, rows: Tensor) -> Tensor:
        top, left, h, w = box[rows].to(x.device).view(-1, 4, 1, 1).unbind(1)
        ys = torch.arange(height, device=x.device).view(1, height, 1)
        xs = torch.arange(width, device=x.device).view(1, 1, width)
        inside = (ys >= top) & (ys < top + h) & (xs >= left) & (xs < left + w)  # n×H×W
        return part.masked_fill_(inside.unsqueeze(1), 0.0)

    return _on_selected(x, mask, erase)
