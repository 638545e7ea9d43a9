"""Training objectives: what a batch of images becomes (the inputs) and the loss of the outputs.

- ``simclr``: two augmented views, NT-Xent on the projections ``z`` (Chen et al. 2020).
- ``msc``: two augmented views, the mean-shifted contrastive loss on the encoder features ``h``
  around the fixed centre of the pretrained features (Reiss & Hoshen, AAAI 2023).
- ``cutpaste``: one augmented view plus its CutPaste and scar versions, a 3-way classifier on
  the projections ``z`` (Li et al., CVPR 2021); the classifier lives here, not in the saved model.
  With a dense weight, a per-location head on the patch stages' maps also learns where the defect
  was pasted (binary cross-entropy against the pasted share of each cell), so the patch features
  the detector uses are trained directly, not only through the pooled ``h``.

An objective is an ``nn.Module`` so that its state (the msc centre, the cutpaste classifier)
travels in checkpoints; its parameters are optimised together with the model's. Each is
registered by name in :data:`OBJECTIVE_CLASSES` (the names ``config.OBJECTIVES`` validates
against) and built from the config by :func:`build_objective`; :func:`frozen_stage_count` is
the stages each leaves as pretrained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr_ad.config import TrainConfig
from simclr_ad.data.cutpaste import cutpaste_batch
from simclr_ad.errors import UserError
from simclr_ad.losses import MeanShiftedContrastiveLoss, NTXentLoss
from simclr_ad.models.backbone import (
    first_stage_at_stride,
    join_maps,
    patch_channels,
    resolve_patch_stages,
)
from simclr_ad.models.simclr import SimCLRModel
from simclr_ad.preprocessing import Normalization

Augment = Callable[..., Tensor]  # (uint8 B×3×H×W, generator, *, total, offset) -> float B×3×S×S


class Objective(nn.Module):
    """Base: two augmented views of every image; subclasses define the loss.

    Attributes:
        stages: ``feature_info`` indices of the maps :meth:`loss` needs (none by default).
    """

    stages: tuple[int, ...] = ()

    def inputs(
        self, images: Tensor, augment: Augment, generator: torch.Generator, total: int, offset: int
    ) -> Tensor:
        """uint8 b×3×H×W -> the model's input batch (float, normalised)."""
        view1 = augment(images, generator, total=total, offset=offset)
        view2 = augment(images, generator, total=total, offset=offset)
        return torch.cat([view1, view2])  # 2b×3×S×S, one forward pass for both views

    def loss(self, h: Tensor, z: Tensor, maps: Sequence[Tensor] = ()) -> Tensor:
        """The loss of the model's outputs on :meth:`inputs` (``h`` n×C, ``z`` n×D, the maps of
        :attr:`stages`)."""
        raise NotImplementedError

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: SimCLRModel,
        pixels: Tensor,
        device: torch.device,
        *,
        fresh: bool,
    ) -> Objective:
        """The objective of ``config`` for ``model`` (``pixels``: the uint8 training images;
        ``fresh``: not resumed, so state computed from the untrained model is computed)."""
        raise NotImplementedError


class SimCLRObjective(Objective):
    """NT-Xent on the projections of two views."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.loss_fn = NTXentLoss(temperature)

    def loss(self, h: Tensor, z: Tensor, maps: Sequence[Tensor] = ()) -> Tensor:
        z1, z2 = z.float().chunk(2)
        return self.loss_fn(z1, z2)

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: SimCLRModel,
        pixels: Tensor,
        device: torch.device,
        *,
        fresh: bool,
    ) -> Objective:
        return cls(config.temperature)


class MeanShiftedObjective(Objective):
    """Mean-shifted contrastive loss on the encoder features of two views."""

    def __init__(self, centre: Tensor, temperature: float, angular_weight: float) -> None:
        super().__init__()
        self.loss_fn = MeanShiftedContrastiveLoss(centre, temperature, angular_weight)

    def loss(self, h: Tensor, z: Tensor, maps: Sequence[Tensor] = ()) -> Tensor:
        h1, h2 = h.float().chunk(2)
        return self.loss_fn(h1, h2)

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: SimCLRModel,
        pixels: Tensor,
        device: torch.device,
        *,
        fresh: bool,
    ) -> Objective:
        """The centre is computed from the untrained encoder when fresh (a resumed run loads
        it from the checkpoint)."""
        width = int(model.encoder.num_features)  # type: ignore[arg-type]
        centre = (
            feature_centre(
                model.encoder.to(device),
                pixels,
                size=config.image_size,
                device=device,
                normalization=model.normalization,
            )
            if fresh
            else torch.ones(width)
        )
        return cls(centre, config.msc_temperature, config.msc_angular)


class CutPasteObjective(Objective):
    """3-way cross-entropy: normal / cutpaste / scar views, classified from the projections; with
    ``dense_weight`` > 0, plus that weight times a per-location segmentation loss on the maps.

    Args:
        in_dim: width of ``z``.
        dense_weight: weight of the segmentation loss (0: the plain 3-way task).
        stages: ``feature_info`` indices of the maps the segmentation head reads (the detector's
            patch stages); needed when ``dense_weight`` > 0.
        channels: their summed channel count.
        normalization: what the augmented views are normalised with (None: ImageNet's).
    """

    def __init__(
        self,
        in_dim: int,
        *,
        dense_weight: float = 0.0,
        stages: Sequence[int] = (),
        channels: int = 0,
        normalization: Normalization | None = None,
    ) -> None:
        super().__init__()
        self.normalization = normalization or Normalization()
        self.classifier = nn.Linear(in_dim, 3)
        self.dense_weight = dense_weight
        self.segmenter: nn.Module | None = None
        self.masks: Tensor | None = None  # the last inputs' defect masks, for the dense loss
        if dense_weight > 0:
            if not stages or channels < 1:
                raise ValueError("the dense loss needs the stages and their channel count")
            self.stages = tuple(stages)
            self.segmenter = nn.Sequential(
                nn.Conv2d(channels, 64, 1), nn.ReLU(inplace=True), nn.Conv2d(64, 1, 1)
            )

    def inputs(
        self, images: Tensor, augment: Augment, generator: torch.Generator, total: int, offset: int
    ) -> Tensor:
        view = augment(images, generator, total=total, offset=offset)
        batch = cutpaste_batch(
            view, generator, total=total, offset=offset, normalization=self.normalization
        )
        self.masks = batch.masks if self.segmenter is not None else None
        return batch.images  # 3b×3×S×S: normal, cutpaste, scar

    def loss(self, h: Tensor, z: Tensor, maps: Sequence[Tensor] = ()) -> Tensor:
        logits = self.classifier(z.float())  # 3b×3
        labels = torch.arange(3, device=z.device).repeat_interleave(z.shape[0] // 3)
        loss = F.cross_entropy(logits, labels)
        if self.segmenter is None:
            return loss
        return loss + self.dense_weight * self.dense_loss(maps)

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: SimCLRModel,
        pixels: Tensor,
        device: torch.device,
        *,
        fresh: bool,
    ) -> Objective:
        """With a dense weight, the segmentation head reads the detector's patch stages."""
        if config.cutpaste_dense == 0:
            return cls(model.head.out_dim, normalization=model.normalization)
        stages = resolve_patch_stages(model.encoder, config.patch_stages or None)
        return cls(
            model.head.out_dim,
            dense_weight=config.cutpaste_dense,
            stages=stages,
            channels=patch_channels(model.encoder, stages),
            normalization=model.normalization,
        )

    def dense_loss(self, maps: Sequence[Tensor]) -> Tensor:
        """Binary cross-entropy of the segmentation head on the maps (the first map's grid, the
        others resized to it) against the share of each cell that the defect covers."""
        if self.segmenter is None or self.masks is None:
            raise RuntimeError("dense_loss needs a dense objective and its inputs() first")
        if len(maps) != len(self.stages):
            raise ValueError(f"expected the maps of stages {self.stages}, got {len(maps)} maps")
        joined = join_maps(maps)
        size = (int(joined.shape[-2]), int(joined.shape[-1]))
        logits = self.segmenter(joined.float())  # n×1×h×w; maps may be bf16 from autocast
        share = F.adaptive_avg_pool2d(self.masks.unsqueeze(1).float(), size)
        return F.binary_cross_entropy_with_logits(logits, share)


@torch.no_grad()
def feature_centre(
    encoder: nn.Module,
    pixels: Tensor,
    *,
    size: int,
    device: torch.device,
    normalization: Normalization | None = None,
    batch_size: int = 32,
) -> Tensor:
    """Normalised mean of the normalised pooled features of uint8 N×3×H×W images (C,).

    Images are normalised with ``normalization`` (None: ImageNet's) and resized to ``size``
    (bilinear, antialiased); the encoder runs in eval mode, its training mode restored afterwards.
    """
    normalize = normalization or Normalization()
    was_training = encoder.training
    encoder.eval()
    total: Tensor | None = None
    for start in range(0, pixels.shape[0], batch_size):
        x = normalize(pixels[start : start + batch_size]).to(device)
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        h = F.normalize(encoder(x).float(), dim=1).sum(0)
        total = h if total is None else total + h
    encoder.train(was_training)
    if total is None:
        raise ValueError("no images to compute the feature centre from")
    return F.normalize(total, dim=0).cpu()


OBJECTIVE_CLASSES: dict[str, type[Objective]] = {
    "simclr": SimCLRObjective,
    "msc": MeanShiftedObjective,
    "cutpaste": CutPasteObjective,
}


def build_objective(
    config: TrainConfig,
    model: SimCLRModel,
    pixels: Tensor,
    device: torch.device,
    *,
    fresh: bool,
) -> Objective:
    """The objective ``config.objective`` names, from :data:`OBJECTIVE_CLASSES`."""
    if config.objective not in OBJECTIVE_CLASSES:
        raise UserError(
            f"unknown objective {config.objective!r}; valid: {', '.join(OBJECTIVE_CLASSES)}"
        )
    return OBJECTIVE_CLASSES[config.objective].from_config(
        config, model, pixels, device, fresh=fresh
    )


def frozen_stage_count(config: TrainConfig, model: SimCLRModel) -> int:
    """``frozen_stages``, with -1 resolved: 0 for simclr, the stages before stride 16 otherwise.

    msc and cutpaste fine-tune pretrained features: the stem and the stages up to stride 8 stay
    as pretrained (Reiss & Hoshen freeze ResNet's conv1 to layer2 the same way), so the stride-8
    patch features keep their ImageNet meaning and only the stride-16 stage onwards adapts.
    """
    if config.frozen_stages >= 0:
        return config.frozen_stages
    return 0 if config.objective == "simclr" else first_stage_at_stride(model.encoder, 16)
