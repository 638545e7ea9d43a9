"""SimCLR: an encoder f and a projection head g; h = f(x), z = g(h)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor, nn

from simclr_ad.models.backbone import create_backbone
from simclr_ad.models.head import ProjectionHead
from simclr_ad.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Normalization


class SimCLROutput(NamedTuple):
    """``h``: pooled encoder features B×C; ``z``: projections B×D (not normalised); ``maps``: the
    requested stages' feature maps B×C_i×h_i×w_i (empty unless asked for)."""

    h: Tensor
    z: Tensor
    maps: tuple[Tensor, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild the model's modules (weights come separately) and to feed it:
    ``mean``/``std`` normalise its input (specs saved without them were ImageNet's)."""

    backbone: str
    head_hidden: tuple[int, ...] = (512, 256)
    head_out: int = 128
    head_dropout: tuple[float, ...] = (0.1, 0.05)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def normalization(self) -> Normalization:
        return Normalization.from_metadata({"mean": self.mean, "std": self.std})


class SimCLRModel(nn.Module):
    """Encoder + projection head, as in Chen et al. 2020; ``normalization``: what its input
    images are normalised with (the backbone's pretrained mean/std)."""

    def __init__(
        self,
        encoder: nn.Module,
        head: ProjectionHead,
        normalization: Normalization | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.normalization = normalization or Normalization()

    def forward(self, x: Tensor, stages: Sequence[int] = ()) -> SimCLROutput:
        """B×3×H×W normalised images -> (h B×C, z B×D), plus the maps of the ``feature_info``
        ``stages`` when some are given (same pass, same ``h``)."""
        if not stages:
            h = self.encoder(x)  # B×C, globally pooled
            return SimCLROutput(h, self.head(h))
        final, maps = self.encoder.forward_intermediates(x, indices=list(stages))  # type: ignore[operator]
        h = self.encoder.forward_head(final)  # type: ignore[operator]
        return SimCLROutput(h, self.head(h), tuple(maps))


def build_model(spec: ModelSpec, weights: str = "none") -> SimCLRModel:
    """Create the model for ``spec`` with the encoder initialised from ``weights``."""
    encoder = create_backbone(spec.backbone, weights)
    head = ProjectionHead(
        in_dim=int(encoder.num_features),  # type: ignore[arg-type]  # timm sets an int
        hidden=spec.head_hidden,
        out_dim=spec.head_out,
        dropout=spec.head_dropout,
    )
    return SimCLRModel(encoder, head, spec.normalization)
