"""Objectives: the inputs they build, their losses, the msc centre, and the config registry."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simclr_ad.config import OBJECTIVES, build_config
from simclr_ad.data.augment import create_augment
from simclr_ad.errors import UserError
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.objectives import (
    OBJECTIVE_CLASSES,
    CutPasteObjective,
    SimCLRObjective,
    build_objective,
    feature_centre,
    frozen_stage_count,
)
from simclr_ad.preprocessing import Normalization, normalize


def _images(n: int = 4, size: int = 40) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )


def test_the_registry_is_what_config_validates_against() -> None:
    assert tuple(OBJECTIVE_CLASSES) == OBJECTIVES
    with pytest.raises(UserError, match=r"objective.*simclr, msc, cutpaste"):
        build_config(objective="byol")


@pytest.mark.parametrize("name", list(OBJECTIVE_CLASSES))
def test_every_registered_objective_builds_from_the_config(name: str) -> None:
    config = build_config(objective=name, image_size=32)
    model = build_model(ModelSpec("resnet18"), "none")
    objective = build_objective(config, model, _images(), torch.device("cpu"), fresh=True)
    assert type(objective) is OBJECTIVE_CLASSES[name]
    assert frozen_stage_count(config, model) == (0 if name == "simclr" else 3)  # layer2 frozen
    views = objective.inputs(
        _images(n=2, size=40), create_augment("default", 8), torch.Generator(), 2, 0
    )
    assert views.shape[1:] == (3, 8, 8) and torch.isfinite(views).all()


def test_an_unregistered_objective_is_refused_by_the_factory() -> None:
    config = build_config()
    object.__setattr__(config, "objective", "byol")  # past validation, as a future config might be
    with pytest.raises(UserError, match="unknown objective 'byol'; valid: simclr, msc, cutpaste"):
        build_objective(
            config, build_model(ModelSpec("resnet18")), _images(), torch.device("cpu"), fresh=True
        )


def test_objectives_take_the_models_normalisation() -> None:
    half = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    model = build_model(ModelSpec("resnet18", mean=half.mean, std=half.std), "none")
    config = build_config(objective="cutpaste", image_size=32)
    objective = build_objective(config, model, _images(), torch.device("cpu"), fresh=True)
    assert isinstance(objective, CutPasteObjective) and objective.normalization == half
    encoder = nn.Sequential(nn.Flatten(), nn.LazyLinear(5))
    images = _images(n=3, size=8)
    centre = feature_centre(encoder, images, size=8, device=torch.device("cpu"), normalization=half)
    with torch.no_grad():
        h = F.normalize(encoder(images.float() / 127.5 - 1.0), dim=1)
    torch.testing.assert_close(centre, F.normalize(h.mean(0), dim=0), rtol=0, atol=1e-5)


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


def test_dense_cutpaste_loss_is_ce_plus_weighted_bce_of_the_pasted_share() -> None:
    torch.manual_seed(0)
    augment = create_augment("default", 16)
    objective = CutPasteObjective(4, dense_weight=0.5, stages=(1, 2), channels=3 + 5)
    views = objective.inputs(_images(n=2), augment, torch.Generator().manual_seed(1), 2, 0)
    assert views.shape == (6, 3, 16, 16) and objective.masks is not None
    assert not objective.masks[:2].any() and objective.masks[2:].flatten(1).any(1).all()
    z = torch.randn(6, 4)
    maps = [torch.randn(6, 3, 4, 4, requires_grad=True), torch.randn(6, 5, 2, 2)]
    loss = objective.loss(z, z, maps)
    assert objective.segmenter is not None
    joined = torch.cat([maps[0], F.interpolate(maps[1], size=(4, 4), mode="bilinear")], dim=1)
    share = F.avg_pool2d(objective.masks.unsqueeze(1).float(), 4)  # 16 px -> 4×4 cells
    expected = F.cross_entropy(objective.classifier(z), torch.arange(3).repeat_interleave(2))
    expected = expected + 0.5 * F.binary_cross_entropy_with_logits(
        objective.segmenter(joined), share
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert maps[0].grad is not None and maps[0].grad.abs().sum() > 0  # reaches the features
    with pytest.raises(ValueError, match="stages"):
        objective.loss(z, z, maps[:1])


def test_dense_objective_trains_the_detectors_patch_stages() -> None:
    model = build_model(ModelSpec("resnet18"), "none")
    config = build_config(objective="cutpaste", cutpaste_dense=1.0, image_size=32)
    objective = build_objective(config, model, _images(), torch.device("cpu"), fresh=True)
    assert isinstance(objective, CutPasteObjective)
    assert objective.stages == (2, 3)  # the stride-8 and -16 stages, as the detector's default
    config = build_config(
        objective="cutpaste", cutpaste_dense=1.0, image_size=32, patch_stages=[1, 2]
    )
    objective = build_objective(config, model, _images(), torch.device("cpu"), fresh=True)
    assert objective.stages == (1, 2) and objective.segmenter is not None
    plain = build_objective(
        build_config(objective="cutpaste"), model, _images(), torch.device("cpu"), fresh=True
    )
    assert plain.stages == () and plain.segmenter is None  # type: ignore[union-attr]


def test_feature_centre_is_the_normalised_mean_of_normalised_features() -> None:
    encoder = nn.Sequential(nn.Flatten(), nn.LazyLinear(5))
    images = _images(n=5, size=8)
    centre = feature_centre(encoder, images, size=8, device=torch.device("cpu"), batch_size=2)
    with torch.no_grad():
        h = F.normalize(encoder(normalize(images)), dim=1)
    assert torch.allclose(centre, F.normalize(h.mean(0), dim=0), atol=1e-5)
    assert encoder.training  # mode restored
