"""Training objectives: what a batch of images becomes (the inputs) and the loss of the outputs.

- ``simclr``: two augmented views, NT-Xent on the projections ``z`` (Chen et al. 2020).
- ``msc``: two augmented views, the mean-shifted contrastive loss on the encoder features ``h``
  around the fixed centre of the pretrained features (Reiss & Hoshen, AAAI 2023).
- ``cutpaste``: one augmented view plus its CutPaste and scar versions, a 3-way classifier on
  the projections ``z`` (Li et al., CVPR 2021); the classifier lives here, not in the saved model.

An objective is an ``nn.Module`` so that its state (the msc centre, the cutpaste classifier)
travels in checkpoints; its parameters are optimised together with the model's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr_ad.data.augment import normalize
from simclr_ad.data.cutpaste import cutpaste_batch
from simclr_ad.losses import MeanShiftedContrastiveLoss, NTXentLoss

Augment = Callable[..., Tensor]  # (uint8 B×3×H×W, generator, *, total, offset) -> float B×3×S×S


class Objective(nn.Module):
    """Base: two augmented views of every image; subclasses define the loss."""

    def inputs(
        self, images: Tensor, augment: Augment, generator: torch.Generator, total: int, offset: int
    ) -> Tensor:
        """uint8 b×3×H×W -> the model's input batch (float, normalised)."""
        view1 = augment(images, generator, total=total, offset=offset)
        view2 = augment(images, generator, total=total, offset=offset)
        return torch.cat([view1, view2])  # 2b×3×S×S, one forward pass for both views

    def loss(self, h: Tensor, z: Tensor) -> Tensor:
        """The loss of the model's outputs on :meth:`inputs` (``h`` n×C, ``z`` n×D)."""
        raise NotImplementedError


class SimCLRObjective(Objective):
    """NT-Xent on the projections of two views."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.loss_fn = NTXentLoss(temperature)

    def loss(self, h: Tensor, z: Tensor) -> Tensor:
        z1, z2 = z.float().chunk(2)
        return self.loss_fn(z1, z2)


class MeanShiftedObjective(Objective):
    """Mean-shifted contrastive loss on the encoder features of two views."""

    def __init__(self, centre: Tensor, temperature: float, angular_weight: float) -> None:
        super().__init__()
        self.loss_fn = MeanShiftedContrastiveLoss(centre, temperature, angular_weight)

    def loss(self, h: Tensor, z: Tensor) -> Tensor:
        h1, h2 = h.float().chunk(2)
        return self.loss_fn(h1, h2)


class CutPasteObjective(Objective):
    """3-way cross-entropy: normal / cutpaste / scar views, classified from the projections."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(in_dim, 3)

    def inputs(
        self, images: Tensor, augment: Augment, generator: torch.Generator, total: int, offset: int
    ) -> Tensor:
        view = augment(images, generator, total=total, offset=offset)
        batch, _ = cutpaste_batch(view, generator, total=total, offset=offset)
        return batch  # 3b×3×S×S: normal, cutpaste, scar

    def loss(self, h: Tensor, z: Tensor) -> Tensor:
        logits = self.classifier(z.float())  # 3b×3
        labels = torch.arange(3, device=z.device).repeat_interleave(z.shape[0] // 3)
        return F.cross_entropy(logits, labels)


@torch.no_grad()
def feature_centre(
    encoder: nn.Module, pixels: Tensor, *, size: int, device: torch.device, batch_size: int = 32
) -> Tensor:
    """Normalised mean of the normalised pooled features of uint8 N×3×H×W images (C,).

    Images are resized to ``size`` (bilinear, antialiased) and the encoder runs in eval mode;
    its training mode is restored afterwards.
    """
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
