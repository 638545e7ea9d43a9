"""Feature extraction: global embeddings ``h`` and ``z`` and PatchCore-style patch features.

Patch features come from intermediate backbone stages (for resnet18 layer2 + layer3, for other
timm backbones the stages at stride 8 and 16): each stage's map is averaged over a 3×3
neighbourhood (local context, as in PatchCore), brought to the grid of the first stage
(bilinear) and concatenated along channels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr_ad.models.backbone import (
    channels_last,
    join_maps,
    patch_channels,
    resolve_patch_stages,
)
from simclr_ad.models.simclr import SimCLRModel
from simclr_ad.preprocessing import Photometric


class Embeddings(NamedTuple):
    """``h`` N×C pooled encoder features, ``z`` N×D projections, ``patches`` N×P×h×w (or None)."""

    h: Tensor
    z: Tensor
    patches: Tensor | None


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
        self.stages = resolve_patch_stages(model.encoder, stages)
        self.neighbourhood = neighbourhood

    @property
    def patch_dim(self) -> int:
        return patch_channels(self.model.encoder, self.stages)

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

    Images are normalised with the model's mean/std, then ``photometric`` corrects them. Yields
    one :class:`Embeddings` per batch, moved to the CPU as float32. The encoder runs in
    channels-last memory format where that is faster (``models.backbone.channels_last``).
    """
    embedder.eval().to(device)
    layout = channels_last(device)
    embedder.to(memory_format=layout)
    normalize = embedder.model.normalization
    correct = (photometric or Photometric()).as_module(normalize).to(device)
    for start in range(0, pixels.shape[0], batch_size):
        x = correct(normalize(pixels[start : start + batch_size].to(device)))
        out = embedder(x.contiguous(memory_format=layout))
        patches = out.patches.float().cpu() if out.patches is not None else None
        yield Embeddings(out.h.float().cpu(), out.z.float().cpu(), patches)


def flatten_patches(patches: Tensor) -> Tensor:
    """N×P×h×w -> (N·h·w)×P."""
    N, P, h, w = patches.shape
    return patches.permute(0, 2, 3, 1).reshape(N * h * w, P)
