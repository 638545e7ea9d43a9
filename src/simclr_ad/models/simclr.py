"""SimCLR: an encoder f and a projection head g; h = f(x), z = g(h)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from torch import Tensor, nn

from simclr_ad.models.backbone import create_backbone
from simclr_ad.models.head import ProjectionHead


class SimCLROutput(NamedTuple):
    """``h``: pooled encoder features B×C; ``z``: projections B×D (not normalised)."""

    h: Tensor
    z: Tensor


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild the model's modules (weights come separately)."""

    backbone: str
    head_hidden: tuple[int, ...] = (512, 256)
    head_out: int = 128
    head_dropout: tuple[float, ...] = (0.1, 0.05)


class SimCLRModel(nn.Module):
    """Encoder + projection head, as in Chen et al. 2020."""

    def __init__(self, encoder: nn.Module, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> SimCLROutput:
        """B×3×H×W normalised images -> (h B×C, z B×D)."""
        h = self.encoder(x)  # B×C, globally pooled
        z = self.head(h)  # B×D
        return SimCLROutput(h, z)


def build_model(spec: ModelSpec, weights: str = "none") -> SimCLRModel:
    """Create the model for ``spec`` with the encoder initialised from ``weights``."""
    encoder = create_backbone(spec.backbone, weights)
    head = ProjectionHead(
        in_dim=int(encoder.num_features),  # type: ignore[arg-type]  # timm sets an int
        hidden=spec.head_hidden,
        out_dim=spec.head_out,
        dropout=spec.head_dropout,
    )
    return SimCLRModel(encoder, head)
