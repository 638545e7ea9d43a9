"""What an image becomes before the encoder: the backbone's normalisation and the photometric
correction, for training views, feature extraction, prediction, the service and the ONNX graph.

The mean and standard deviation are those the backbone's pretrained weights were trained with
(timm's ``pretrained_cfg``: ImageNet's for ``resnet18`` and ``efficientnet_lite0``, 0.5/0.5 for
``tf_efficientnet_lite0``); a bundle records them, and bundles written before they were recorded
load with ImageNet's, which every backbone used then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from simclr_ad.config import PHOTOMETRIC_MODES
from simclr_ad.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Triple = tuple[float, float, float]


def _check_images(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 B×3×H×W images, got {images.dtype} {tuple(images.shape)}")


def _channels(values: Triple, like: Tensor) -> Tensor:
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` of RGB images scaled to [0, 1].

    Attributes:
        mean: per-channel mean (R, G, B).
        std: per-channel standard deviation (R, G, B).
    """

    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD

    @classmethod
    def for_backbone(cls, name: str) -> Normalization:
        """The mean/std of timm's default pretrained config for ``name`` (static, no network);
        ImageNet's where timm names none."""
        import timm

        if not timm.is_model(name):
            raise UserError(f"unknown backbone {name!r}: not a timm model name")
        config = timm.data.resolve_data_config({}, model=None, pretrained_cfg=_pretrained_cfg(name))
        return cls(_triple(config["mean"]), _triple(config["std"]))

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any] | None) -> Normalization:
        """From a bundle's or checkpoint's ``{"mean": [...], "std": [...]}``; ImageNet's when
        absent (written before the normalisation was recorded)."""
        if not values or "mean" not in values or "std" not in values:
            return cls()
        return cls(_triple(values["mean"]), _triple(values["std"]))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 B×3×H×W -> normalised float32 B×3×H×W."""
        _check_images(images)
        return self.normalize_(images.float() / 255.0)

    def normalize_(self, x: Tensor) -> Tensor:
        """Float B×3×H×W in [0, 1] -> normalised, in place."""
        return x.sub_(_channels(self.mean, x)).div_(_channels(self.std, x))

    def denormalize(self, x: Tensor) -> Tensor:
        """Normalised B×3×H×W -> [0, 1] scale (not clamped)."""
        return x * _channels(self.std, x) + _channels(self.mean, x)


def normalize(images: Tensor) -> Tensor:
    """ImageNet-normalises uint8 B×3×H×W (float32 out): for code that works in a fixed space
    and undoes it again (synthetic defects); a model's input uses ``model.normalization``."""
    return Normalization()(images)


def _pretrained_cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _triple(values: Any) -> Triple:
    a, b, c = (float(v) for v in values)
    return a, b, c


@dataclasses.dataclass(frozen=True)
class Photometric:
    """Per-image brightness correction towards the training images' level, before the encoder.

    A line's lighting drifts (MVTec screw's good test parts are darker than every training part);
    global brightness is then not a defect. ``gain`` scales each image so that its mean intensity
    equals the training mean (a lamp that ages); ``standardize`` also matches the spread
    (contrast); ``none`` leaves images as they are, for lines where global brightness *is* a
    defect (a wrong material, say).

    Attributes:
        mode: one of PHOTOMETRIC_MODES.
        level: mean intensity of the training images, in [0, 1].
        spread: mean per-image standard deviation of the training images, in [0, 1].
    """

    mode: str = "none"
    level: float = 0.5
    spread: float = 0.25

    @classmethod
    def fit(cls, mode: str, pixels: Tensor) -> Photometric:
        """Reference level and spread from uint8 N×3×S×S training images."""
        if mode not in PHOTOMETRIC_MODES:
            raise UserError(
                f"unknown photometric mode {mode!r}; valid: {', '.join(PHOTOMETRIC_MODES)}"
            )
        levels, spreads = [], []
        for start in range(0, pixels.shape[0], 64):
            batch = pixels[start : start + 64].float() / 255.0
            levels.append(batch.mean(dim=(1, 2, 3)))
            spreads.append(batch.std(dim=(1, 2, 3)))
        return cls(mode, float(torch.cat(levels).mean()), float(torch.cat(spreads).mean()))

    def apply(self, x: Tensor, normalization: Normalization) -> Tensor:
        """B×3×H×W normalised with ``normalization`` -> corrected, still normalised."""
        return self.as_module(normalization).to(x.device)(x)

    def as_module(self, normalization: Normalization) -> PhotometricCorrection:
        return PhotometricCorrection(self, normalization)


class PhotometricCorrection(nn.Module):
    """:class:`Photometric` on images normalised with ``normalization`` (traceable for ONNX)."""

    mean: Tensor
    std: Tensor

    def __init__(self, photometric: Photometric, normalization: Normalization) -> None:
        super().__init__()
        self.mode, self.level, self.spread = photometric.mode, photometric.level, photometric.spread
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(normalization.std).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Normalised B×3×H×W -> corrected, still normalised."""
        if self.mode == "none":
            return x
        mean, std = self.mean.to(x.dtype), self.std.to(x.dtype)
        raw = x * std + mean  # [0, 1]
        level = raw.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        if self.mode == "gain":
            raw = raw * (self.level / level)
        else:
            spread = raw.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
            raw = (raw - level) / spread * self.spread + self.level
        return (raw.clamp(0.0, 1.0) - mean) / std
