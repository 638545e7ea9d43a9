"""The detector: an embedder plus fitted scorers for each category (or one pooled set),
with thresholds calibrated on held-out good images.

Scorer names: ``patch`` (PatchCore-style memory bank, gives anomaly maps) and
``<kind>_<feature>`` for the global scorers, kind ``knn | mahalanobis | cosine`` on feature
``h`` (pooled encoder output) or ``z`` (projection, what the write-up scored).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from simclr_ad.bundle import prefixed, unprefixed
from simclr_ad.calibration import Calibration, calibrate_threshold
from simclr_ad.embeddings import Embedder, Photometric, flatten_patches, iter_embeddings
from simclr_ad.models.simclr import SimCLRModel
from simclr_ad.scoring import GLOBAL_SCORERS, GlobalScorer, PatchScorer, create_global_scorer

log = logging.getLogger(__name__)

POOLED = "__pooled__"


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """What the detector is made of; stored in ``model.json`` to rebuild it."""

    image_size: int
    scorers: tuple[str, ...] = ("patch",)
    primary: str = "patch"
    pooled: bool = False
    target_fpr: float = 0.01
    knn_k: int = 5
    mahalanobis_covariance: str = "ledoit_wolf"
    patch_stages: tuple[int, ...] = ()
    coreset_ratio: float = 0.1
    max_patch_candidates: int = 100_000
    bank_rotations: int = 1
    patch_k: int = 1
    map_sigma: float = 4.0
    score_rule: str = "topk_mean"
    topk_fraction: float = 0.01
    photometric: str = "gain"
    batch_size: int = 32
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorSettings:
        tuples = {"scorers", "patch_stages"}
        values: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        return cls(**values)


class Detection(NamedTuple):
    """Scores of N images: one tensor[N] per scorer, the patch scorer's maps N×S×S (or None),
    and the global embeddings ``h`` N×C the scorers saw (for reports)."""

    scores: dict[str, Tensor]
    maps: Tensor | None
    h: Tensor | None = None


@dataclasses.dataclass
class ScorerSet:
    """The fitted scorers of one category (or of the pooled group) and their calibrations."""

    patch: PatchScorer | None
    global_scorers: dict[str, GlobalScorer]
    photometric: Photometric = dataclasses.field(default_factory=Photometric)
    calibrations: dict[str, Calibration] = dataclasses.field(default_factory=dict)


def _split_name(name: str) -> tuple[str, str]:
    kind, _, feature = name.rpartition("_")
    return kind, feature


class Detector:
    """Scores images of a known category; higher = more anomalous.

    Args:
        embedder: feature extractor around the trained model.
        settings: how the scorers were built.
        groups: fitted scorers per group (a category name, or ``POOLED``).
        category_group: which group scores each category.
    """

    def __init__(
        self,
        embedder: Embedder,
        settings: DetectorSettings,
        groups: dict[str, ScorerSet],
        category_group: dict[str, str],
    ) -> None:
        self.embedder = embedder
        self.settings = settings
        self.groups = groups
        self.category_group = category_group

    @property
    def categories(self) -> list[str]:
        return list(self.category_group)

    def scorer_set(self, category: str) -> ScorerSet:
        if category not in self.category_group:
            raise KeyError(category)
        return self.groups[self.category_group[category]]

    def threshold(self, category: str, scorer: str | None = None) -> float:
        """The calibrated threshold of ``scorer`` (default: the primary) for ``category``."""
        return self.scorer_set(category).calibrations[scorer or self.settings.primary].threshold

    @torch.no_grad()
    def detect(
        self, pixels: Tensor, category: str, *, device: torch.device, maps: bool = True
    ) -> Detection:
        """Score uint8 N×3×S×S images of ``category`` (S = ``settings.image_size``), all scorers."""
        scorer_set = self.scorer_set(category)
        scores: dict[str, list[Tensor]] = {name: [] for name in self.settings.scorers}
        all_maps: list[Tensor] = []
        all_h: list[Tensor] = []
        batches = iter_embeddings(
            self.embedder,
            pixels,
            device=device,
            batch_size=self.settings.batch_size,
            photometric=scorer_set.photometric,
        )
        for emb in batches:
            all_h.append(emb.h)
            for name, scorer in scorer_set.global_scorers.items():
                scores[name].append(scorer.score(emb.h if name.endswith("_h") else emb.z))
            if scorer_set.patch is not None and emb.patches is not None:
                prediction = scorer_set.patch.predict(emb.patches, self.settings.image_size)
                scores["patch"].append(prediction.scores)
                if maps:
                    all_maps.append(prediction.maps)
        return Detection(
            scores={k: torch.cat(v) if v else torch.empty(0) for k, v in scores.items()},
            maps=torch.cat(all_maps) if all_maps else None,
            h=torch.cat(all_h) if all_h else None,
        )

    @torch.no_grad()
    def embed(self, pixels: Tensor, category: str, *, device: torch.device) -> Tensor:
        """Global embeddings ``h`` N×C of uint8 N×3×S×S images of ``category``, as scored."""
        batches = iter_embeddings(
            self.embedder,
            pixels,
            device=device,
            batch_size=self.settings.batch_size,
            photometric=self.scorer_set(category).photometric,
        )
        return torch.cat([emb.h for emb in batches])


def _new_global(name: str, settings: DetectorSettings) -> GlobalScorer:
    kind, _ = _split_name(name)
    params: dict[str, Any] = {}
    if kind == "knn":
        params["k"] = settings.knn_k
    elif kind == "mahalanobis":
        params["covariance"] = settings.mahalanobis_covariance
    return create_global_scorer(kind, **params)


def _fit_group(
    embedder: Embedder, pixels: Tensor, settings: DetectorSettings, device: torch.device
) -> ScorerSet:
    """Fit every scorer on the good training images of one group, with bounded patch memory.

    With ``bank_rotations`` 2 or 4 the patch candidates also come from the images turned by
    180° (or by 90, 180 and 270°; exact, square images), within the same candidate budget: for
    parts that lie at any angle, a bank that has seen every orientation of their structure. The
    global scorers see the images as they are.
    """
    n = pixels.shape[0]
    h, z, patches = [], [], []
    per_image = None
    generator = torch.Generator().manual_seed(settings.seed)
    photometric = Photometric.fit(settings.photometric, pixels)
    wants_patches = "patch" in settings.scorers
    step = 4 // settings.bank_rotations
    turns = range(0, 4, step) if wants_patches else range(1)  # quarter turns
    for turn in turns:
        view = torch.rot90(pixels, turn, dims=(2, 3)) if turn else pixels
        for emb in iter_embeddings(
            embedder, view, device=device, batch_size=settings.batch_size, photometric=photometric
        ):
            if turn == 0:
                h.append(emb.h)
                z.append(emb.z)
            if wants_patches and emb.patches is not None:
                flat = flatten_patches(emb.patches)  # (b·h·w)×P
                if per_image is None:
                    grid = emb.patches.shape[-2] * emb.patches.shape[-1]
                    budget = math.ceil(settings.max_patch_candidates / (n * len(turns)))
                    per_image = min(grid, budget)
                count = per_image * emb.patches.shape[0]
                if count < flat.shape[0]:  # bounded memory for thousands of images
                    flat = flat[torch.randperm(flat.shape[0], generator=generator)[:count]]
                patches.append(flat)
    features = {"h": torch.cat(h), "z": torch.cat(z)}
    global_scorers = {
        name: _new_global(name, settings).fit(features[_split_name(name)[1]])
        for name in settings.scorers
        if name != "patch"
    }
    patch = None
    if patches:
        patch = PatchScorer(
            coreset_ratio=settings.coreset_ratio,
            k=settings.patch_k,
            sigma=settings.map_sigma,
            score_rule=settings.score_rule,
            topk_fraction=settings.topk_fraction,
            seed=settings.seed,
        ).fit(torch.cat(patches).to(device))  # the greedy coreset is much faster on a GPU
        patch.to(torch.device("cpu"))
    return ScorerSet(patch, global_scorers, photometric)


def fit_detector(
    model: SimCLRModel,
    train: Mapping[str, Tensor],
    val: Mapping[str, Tensor],
    settings: DetectorSettings,
    *,
    device: torch.device,
) -> Detector:
    """Fit the scorers on good training images, then calibrate thresholds on validation images.

    Args:
        model: the trained SimCLR model.
        train: category -> uint8 N×3×S×S good training images (never the validation ones).
        val: category -> uint8 held-out good images, used only for the thresholds.
        settings: detector settings.
        device: where to run the encoder.
    """
    embedder = Embedder(model, settings.patch_stages or None)
    if settings.pooled:
        members = {POOLED: list(train)}
    else:
        members = {category: [category] for category in train}
    groups: dict[str, ScorerSet] = {}
    for group, categories in members.items():
        log.info("fitting scorers for %s", ", ".join(categories))
        pixels = torch.cat([train[c] for c in categories])
        groups[group] = _fit_group(embedder, pixels, settings, device)
    category_group = {c: g for g, cs in members.items() for c in cs}
    detector = Detector(embedder, settings, groups, category_group)
    for group, categories in members.items():
        held_out = [val[c] for c in categories if c in val and val[c].shape[0] > 0]
        if not held_out:
            raise ValueError(f"no validation images to calibrate {', '.join(categories)}")
        detection = detector.detect(torch.cat(held_out), categories[0], device=device, maps=False)
        groups[group].calibrations = {
            name: calibrate_threshold(scores.numpy(), target_fpr=settings.target_fpr)
            for name, scores in detection.scores.items()
        }
    return detector


# --- bundle (de)serialisation -------------------------------------------------------------


def detector_state(detector: Detector) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors (``scorer.<group>.<name>.<key>``) and JSON metadata of the fitted scorers."""
    tensors: dict[str, Tensor] = {}
    groups: dict[str, Any] = {}
    for group, scorer_set in detector.groups.items():
        entries: dict[str, Any] = {}
        fitted: dict[str, Any] = dict(scorer_set.global_scorers)
        if scorer_set.patch is not None:
            fitted["patch"] = scorer_set.patch
        for name, scorer in fitted.items():
            tensors |= prefixed(scorer.state_dict(), f"scorer.{group}.{name}.")
            entries[name] = {
                "params": scorer.params(),
                "calibration": scorer_set.calibrations[name].to_dict(),
            }
        groups[group] = {
            "photometric": dataclasses.asdict(scorer_set.photometric),
            "scorers": entries,
        }
    thresholds = {
        c: {name: cal.threshold for name, cal in detector.scorer_set(c).calibrations.items()}
        for c in detector.categories
    }
    metadata = {
        "settings": detector.settings.to_dict(),
        "category_group": detector.category_group,
        "groups": groups,
        "thresholds": thresholds,
    }
    return tensors, metadata


def detector_from_state(
    model: SimCLRModel, tensors: Mapping[str, Tensor], metadata: Mapping[str, Any]
) -> Detector:
    """Rebuild a Detector from :func:`detector_state`'s output."""
    settings = DetectorSettings.from_dict(metadata["settings"])
    groups: dict[str, ScorerSet] = {}
    for group, entry_set in metadata["groups"].items():
        photometric = Photometric(**entry_set["photometric"])
        scorer_set = ScorerSet(patch=None, global_scorers={}, photometric=photometric)
        for name, entry in entry_set["scorers"].items():
            state = unprefixed(dict(tensors), f"scorer.{group}.{name}.")
            if name == "patch":
                scorer_set.patch = PatchScorer.from_state(entry["params"], state)
            else:
                kind, _ = _split_name(name)
                scorer_set.global_scorers[name] = GLOBAL_SCORERS[kind].from_state(
                    entry["params"], state
                )
            scorer_set.calibrations[name] = Calibration.from_dict(entry["calibration"])
        groups[group] = scorer_set
    embedder = Embedder(model, settings.patch_stages or None)
    return Detector(embedder, settings, groups, dict(metadata["category_group"]))


def scorer_names(settings: DetectorSettings) -> Sequence[str]:
    """Primary first, then the others in their configured order."""
    return [settings.primary, *(s for s in settings.scorers if s != settings.primary)]
