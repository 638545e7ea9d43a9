"""Feature extraction: global embeddings ``h`` and ``z`` and PatchCore-style patch features.

Patch features come from intermediate backbone stages (for resnet18 layer2 + layer3, for other
timm backbones the stages at stride 8 and 16): each stage's map is averaged over a 3×3
neighbourhood (local context, as in PatchCore), brought to the grid of the first stage
(bilinear) and concatenated along channels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr_ad.config import PHOTOMETRIC_MODES
from simclr_ad.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from simclr_ad.errors import UserError
from simclr_ad.models.backbone import channels_last
from simclr_ad.models.simclr import SimCLRModel


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

    def apply(self, x: Tensor) -> Tensor:
        """ImageNet-normalised B×3×H×W -> corrected, still normalised (traceable for ONNX)."""
        if self.mode == "none":
            return x
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        raw = x * std + mean  # [0, 1]
        level = raw.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        if self.mode == "gain":
            raw = raw * (self.level / level)
        else:
            spread = raw.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
            raw = (raw - level) / spread * self.spread + self.level
        return (raw.clamp(0.0, 1.0) - mean) / std


class Embeddings(NamedTuple):
    """``h`` N×C pooled encoder features, ``z`` N×D projections, ``patches`` N×P×h×w (or None)."""

    h: Tensor
    z: Tensor
    patches: Tensor | None


def default_patch_stages(encoder: nn.Module) -> tuple[int, ...]:
    """Indices (into timm's ``feature_info``) of the first stages at stride 8 and 16."""
    info = list(encoder.feature_info)  # type: ignore[arg-type]
    stages = []
    for stride in (8, 16):
        match = next((i for i, f in enumerate(info) if f["reduction"] == stride), None)
        if match is not None:
            stages.append(match)
    if len(stages) != 2:
        listing = ", ".join(
            f"{i}: {f['module']} (stride {f['reduction']})" for i, f in enumerate(info)
        )
        raise UserError(
            f"cannot choose patch stages automatically; set patch_stages from: {listing}"
        )
    return tuple(stages)


class Embedder(nn.Module):
    """One forward pass giving ``h``, ``z`` and the aggregated patch features.

    Args:
        model: a (trained) SimCLR model.
        stages: ``feature_info`` indices of the patch stages (None: stride 8 and 16).
        neighbourhood: side of the local averaging window (PatchCore uses 3; 1 disables it).
    """

    def __init__(
        self, model: SimCLRModel, stages: Sequence[int] | None = None, neighbourhood: int = 3
    ) -> None:
        super().__init__()
        self.model = model
        self.stages = tuple(stages) if stages else default_patch_stages(model.encoder)
        self.neighbourhood = neighbourhood
        n_stages = len(list(model.encoder.feature_info))  # type: ignore[arg-type]
        bad = [s for s in self.stages if not 0 <= s < n_stages]
        if bad:
            raise UserError(
                f"patch_stages {bad} out of range: the backbone has stages 0..{n_stages - 1}"
            )

    @property
    def patch_dim(self) -> int:
        info = list(self.model.encoder.feature_info)  # type: ignore[arg-type]
        return sum(int(info[s]["num_chs"]) for s in self.stages)

    def forward(self, x: Tensor) -> Embeddings:
        """B×3×S×S normalised images -> Embeddings."""
        encoder = self.model.encoder
        final, maps = encoder.forward_intermediates(x, indices=list(self.stages))  # type: ignore[operator]
        h = encoder.forward_head(final)  # type: ignore[operator]  # B×C, the same as encoder(x)
        z = self.model.head(h)  # B×D
        return Embeddings(h, z, self.aggregate(maps))

    def aggregate(self, maps: Sequence[Tensor]) -> Tensor:
        """Stage maps [B×C_i×h_i×w_i] -> B×(ΣC_i)×h_0×w_0."""
        pad = self.neighbourhood // 2
        pooled = [
            F.avg_pool2d(m, self.neighbourhood, stride=1, padding=pad, count_include_pad=False)
            if self.neighbourhood > 1
            else m
            for m in maps
        ]
        return join_maps(pooled)


def join_maps(maps: Sequence[Tensor]) -> Tensor:
    """Stage maps [B×C_i×h_i×w_i] -> B×(ΣC_i)×h_0×w_0: each brought to the first map's grid
    (bilinear) and concatenated along channels."""
    size = maps[0].shape[-2:]
    resized = [
        m
        if m.shape[-2:] == size
        else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        for m in maps
    ]
    return torch.cat(resized, dim=1)


@torch.no_grad()
def iter_embeddings(
    embedder: Embedder,
    pixels: Tensor,
    *,
    device: torch.device,
    batch_size: int = 32,
    photometric: Photometric | None = None,
) -> Iterator[Embeddings]:
    """Run ``embedder`` over uint8 N×3×S×S images in batches (eval mode, no gradients).

    Yields one :class:`Embeddings` per batch, moved to the CPU as float32. The encoder runs in
    channels-last memory format where that is faster (``models.backbone.channels_last``).
    """
    embedder.eval().to(device)
    layout = channels_last(device)
    embedder.to(memory_format=layout)
    correct = photometric or Photometric()
    for start in range(0, pixels.shape[0], batch_size):
        x = correct.apply(normalize(pixels[start : start + batch_size].to(device)))
        out = embedder(x.contiguous(memory_format=layout))
        patches = out.patches.float().cpu() if out.patches is not None else None
        yield Embeddings(out.h.float().cpu(), out.z.float().cpu(), patches)


def flatten_patches(patches: Tensor) -> Tensor:
    """N×P×h×w -> (N·h·w)×P."""
    N, P, h, w = patches.shape
    return patches.permute(0, 2, 3, 1).reshape(N * h * w, P)
