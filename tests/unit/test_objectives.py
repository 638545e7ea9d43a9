"""Objectives: the inputs they build, their losses, the msc centre, and the config registry."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simclr_ad.config import OBJECTIVES, build_config
from simclr_ad.data.augment import create_augment
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.objectives import (
    CutPasteObjective,
    MeanShiftedObjective,
    SimCLRObjective,
    feature_centre,
)
from simclr_ad.pipeline import build_objective, frozen_stage_count


def _images(n: int = 4, size: int = 40) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_configured_objective_builds(name: str) -> None:
    config = build_config(objective=name, image_size=32)
    model = build_model(ModelSpec("resnet18"), "none")
    objective = build_objective(config, model, _images(), torch.device("cpu"), fresh=True)
    kind = {"simclr": SimCLRObjective, "msc": MeanShiftedObjective, "cutpaste": CutPasteObjective}
    assert isinstance(objective, kind[name])
    assert frozen_stage_count(config, model) == (0 if name == "simclr" else 3)  # layer2 frozen


def test_inputs_sizes() -> None:
    augment = create_augment("default", 8)
    images = _images(n=3)
    two = SimCLRObjective(0.1).inputs(images, augment, torch.Generator(), 3, 0)
    three = CutPasteObjective(4).inputs(images, augment, torch.Generator(), 3, 0)
    assert two.shape == (6, 3, 8, 8) and three.shape == (9, 3, 8, 8)


def test_cutpaste_loss_learns_its_labels() -> None:
    torch.manual_seed(0)
    objective = CutPasteObjective(2)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]).repeat_interleave(2, dim=0)  # 3b×2
    start = objective.loss(z, z).item()
    assert start == pytest.approx(
        F.cross_entropy(objective.classifier(z), torch.arange(3).repeat_interleave(2)).item()
    )
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.5)
    for _ in range(50):
        optimizer.zero_grad()
        objective.loss(z, z).backward()
        optimizer.step()
    assert objective.loss(z, z).item() < 0.5 * start


def test_feature_centre_is_the_normalised_mean_of_normalised_features() -> None:
    encoder = nn.Sequential(nn.Flatten(), nn.LazyLinear(5))
    images = _images(n=5, size=8)
    centre = feature_centre(encoder, images, size=8, device=torch.device("cpu"), batch_size=2)
    from simclr_ad.data.augment import normalize

    with torch.no_grad():
        h = F.normalize(encoder(normalize(images)), dim=1)
    assert torch.allclose(centre, F.normalize(h.mean(0), dim=0), atol=1e-5)
    assert encoder.training  # mode restored
