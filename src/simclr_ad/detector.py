"""The detector: an embedder plus fitted scorers for each category (or one pooled set),
with thresholds calibrated on good training images (out-of-fold scores, or a held-out split).

Scorer names are those of ``scoring.registry.SCORERS``: ``patch`` (PatchCore-style memory
bank, gives anomaly maps) and ``<kind>_<feature>`` for the global scorers, kind ``knn |
mahalanobis | cosine`` on feature ``h`` (pooled encoder output) or ``z`` (projection, what the
write-up scored); the registry says which feature each one reads and which settings build it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from simclr_ad.bundle import prefixed, unprefixed
from simclr_ad.calibration import Calibration, calibrate_threshold
from simclr_ad.embeddings import Embedder, flatten_patches, iter_embeddings
from simclr_ad.models.simclr import SimCLRModel
from simclr_ad.preprocessing import Photometric
from simclr_ad.progress import progress_bar
from simclr_ad.scoring.base import GlobalScorer
from simclr_ad.scoring.factory import create_scorer, scorer_class
from simclr_ad.scoring.patch import PatchScorer, PositionStats, standardise
from simclr_ad.scoring.registry import DEFAULT_SCORE_RULE, DEFAULT_SCORERS, SCORERS

if TYPE_CHECKING:
    from simclr_ad.config import TrainConfig

log = logging.getLogger(__name__)

POOLED = "__pooled__"


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """What the detector is made of; stored in ``model.json`` to rebuild it. The config's
    ``detector`` section (``from_config``), with the input size and seed it shares with training;
    ``batch_size`` is the section's ``eval_batch_size``."""

    image_size: int
    scorers: tuple[str, ...] = DEFAULT_SCORERS
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
    score_rule: str = DEFAULT_SCORE_RULE
    topk_fraction: float = 0.01
    positional: bool = False  # maps standardised per position by good images' (crossfit only)
    photometric: str = "gain"
    batch_size: int = 32
    seed: int = 0
    calibration: str = "crossfit"  # or "holdout": thresholds from a held-out split
    calibration_folds: int = 5

    @classmethod
    def from_config(cls, config: TrainConfig) -> DetectorSettings:
        """The detector section of ``config`` as the detector consumes it."""
        section = config.section("detector")
        batch_size = section.pop("eval_batch_size")
        return cls(image_size=config.image_size, seed=config.seed, batch_size=batch_size, **section)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorSettings:
        tuples = {"scorers", "patch_stages"}
        values: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        values.setdefault("calibration", "holdout")  # bundles made before cross-fitting
        return cls(**values)


class Detection(NamedTuple):
    """Scores of N images: one tensor[N] per scorer, the patch scorer's maps N×S×S (or None),
    and the global embeddings ``h`` N×C the scorers saw (for reports)."""

    scores: dict[str, Tensor]
    maps: Tensor | None
    h: Tensor | None = None


@dataclasses.dataclass
class ScorerSet:
    """The fitted scorers of one category (or of the pooled group) and their calibrations.

    ``shape`` is the (height, width) its images are resized to; ``good_scores`` holds, per
    scorer, the good scores that set the threshold (cross-fitted, in the order of
    ``good_rows``, rows of the training images given to ``fit_detector``; empty for held-out
    calibration, whose images the evaluation scores itself). ``patch_stages`` are this
    group's patch stages where ``auto`` chose others than the detector's settings (empty: the
    settings').
    """

    patch: PatchScorer | None
    global_scorers: dict[str, GlobalScorer]
    photometric: Photometric = dataclasses.field(default_factory=Photometric)
    calibrations: dict[str, Calibration] = dataclasses.field(default_factory=dict)
    shape: tuple[int, int] | None = None
    good_scores: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    good_rows: Tensor | None = None
    patch_stages: tuple[int, ...] = ()


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
        self._embedders = {  # groups whose patch stages differ from the settings'
            group: Embedder(embedder.model, scorer_set.patch_stages)
            for group, scorer_set in groups.items()
            if scorer_set.patch_stages
        }

    def embedder_for(self, category: str) -> Embedder:
        """The feature extractor of ``category``'s scorers (its group's patch stages)."""
        return self._embedders.get(self.category_group[category], self.embedder)

    @property
    def categories(self) -> list[str]:
        return list(self.category_group)

    def scorer_set(self, category: str) -> ScorerSet:
        if category not in self.category_group:
            raise KeyError(category)
        return self.groups[self.category_group[category]]

    def input_shape(self, category: str) -> tuple[int, int]:
        """(height, width) that images of ``category`` are resized to before scoring."""
        shape = self.scorer_set(category).shape
        return shape or (self.settings.image_size, self.settings.image_size)

    def threshold(self, category: str, scorer: str | None = None) -> float:
        """The calibrated threshold of ``scorer`` (default: the primary) for ``category``."""
        return self.scorer_set(category).calibrations[scorer or self.settings.primary].threshold

    @torch.no_grad()
    def detect(
        self,
        pixels: Tensor,
        category: str,
        *,
        device: torch.device,
        maps: bool = True,
        progress: str | None = None,
    ) -> Detection:
        """Score uint8 N×3×H×W images of ``category`` (H×W = ``input_shape``), all scorers.

        ``progress`` labels a progress bar over the images; None (the default): none, as the
        service and ``predict`` score batch after batch."""
        scorer_set = self.scorer_set(category)
        scores: dict[str, list[Tensor]] = {name: [] for name in self.settings.scorers}
        all_maps: list[Tensor] = []
        all_h: list[Tensor] = []
        batches = iter_embeddings(
            self.embedder_for(category),
            pixels,
            device=device,
            batch_size=self.settings.batch_size,
            photometric=scorer_set.photometric,
        )
        shape = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        with progress_bar(
            desc=progress or "", total=pixels.shape[0], unit="img", enabled=progress is not None
        ) as bar:
            for emb in batches:
                all_h.append(emb.h)
                for name, scorer in scorer_set.global_scorers.items():
                    scores[name].append(scorer.score(getattr(emb, SCORERS[name].feature)))
                if scorer_set.patch is not None and emb.patches is not None:
                    prediction = scorer_set.patch.predict(emb.patches, shape)
                    scores["patch"].append(prediction.scores)
                    if maps:
                        all_maps.append(prediction.maps)
                bar.update(emb.h.shape[0])
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
    """A new global scorer ``name`` with its hyper-parameters from ``settings``."""
    scorer = create_scorer(name, **SCORERS[name].params(settings))
    if not isinstance(scorer, GlobalScorer):
        raise ValueError(f"{name!r} is not a global scorer")
    return scorer


class GoodFeatures(NamedTuple):
    """What the scorers are fitted from: features of N good training images.

    ``candidates`` are the patch features the memory bank is chosen from (a bounded random
    subset), ``owners`` the image row of each; ``maps`` the full float16 patch maps of the
    images in ``mapped`` (those scored out of fold), in that order.
    """

    h: Tensor  # N×C
    z: Tensor  # N×D
    candidates: Tensor  # M×P
    owners: Tensor  # M
    maps: Tensor | None  # R×P×h×w float16
    mapped: Tensor  # R image rows

    def of(self, scorer: str) -> Tensor:
        """The features global scorer ``scorer`` is fitted on (its registered ``h`` or ``z``)."""
        return getattr(self, SCORERS[scorer].feature)


MIN_CROSSFIT_IMAGES = 3
MAX_CALIBRATION_IMAGES = 500  # cross-fitted scores: enough for a conformal 1% (>= 99)


def collect_features(
    embedder: Embedder,
    pixels: Tensor,
    settings: DetectorSettings,
    photometric: Photometric,
    device: torch.device,
    *,
    mapped: Tensor,
    progress: str | None = None,
) -> GoodFeatures:
    """One pass over uint8 N×3×H×W good images: ``h``, ``z``, bounded patch candidates and the
    patch maps of the ``mapped`` rows (``progress``: a progress bar's label; None: no bar).

    With ``bank_rotations`` 2 or 4 the patch candidates also come from the images turned by
    180° (or by 90, 180 and 270°; exact for square images), within the same candidate budget:
    for parts that lie at any angle, a bank that has seen every orientation of their structure.
    The global features and the maps are of the images as they are.
    """
    n = pixels.shape[0]
    h, z, candidates, owners, maps = [], [], [], [], []
    per_image = None
    generator = torch.Generator().manual_seed(settings.seed)
    wants_patches = any(SCORERS[name].feature == "patches" for name in settings.scorers)
    step = 4 // settings.bank_rotations
    turns = range(0, 4, step) if wants_patches else range(1)  # quarter turns
    keep = torch.zeros(n, dtype=torch.bool)
    keep[mapped] = True
    with progress_bar(
        desc=progress or "", total=n * len(turns), unit="img", enabled=progress is not None
    ) as bar:
        for turn in turns:
            view = torch.rot90(pixels, turn, dims=(2, 3)) if turn else pixels
            start = 0
            for emb in iter_embeddings(
                embedder,
                view,
                device=device,
                batch_size=settings.batch_size,
                photometric=photometric,
            ):
                bar.update(emb.h.shape[0])
                rows = torch.arange(start, start + emb.h.shape[0])
                start += emb.h.shape[0]
                if turn == 0:
                    h.append(emb.h)
                    z.append(emb.z)
                if not wants_patches or emb.patches is None:
                    continue
                if turn == 0 and keep[rows].any():
                    maps.append(emb.patches[keep[rows]].half())
                flat = flatten_patches(emb.patches)  # (b·h·w)×P
                grid = emb.patches.shape[-2] * emb.patches.shape[-1]
                owner = rows.repeat_interleave(grid)
                if per_image is None:
                    budget = math.ceil(settings.max_patch_candidates / (n * len(turns)))
                    per_image = min(grid, budget)
                count = per_image * emb.patches.shape[0]
                if count < flat.shape[0]:  # bounded memory for thousands of images
                    chosen = torch.randperm(flat.shape[0], generator=generator)[:count]
                    flat, owner = flat[chosen], owner[chosen]
                candidates.append(flat)
                owners.append(owner)
    return GoodFeatures(
        h=torch.cat(h),
        z=torch.cat(z),
        candidates=torch.cat(candidates) if candidates else torch.empty(0),
        owners=torch.cat(owners) if owners else torch.empty(0, dtype=torch.int64),
        maps=torch.cat(maps) if maps else None,
        mapped=torch.nonzero(keep).flatten(),
    )


def fit_scorers(
    features: GoodFeatures,
    rows: Tensor,
    settings: DetectorSettings,
    photometric: Photometric,
    device: torch.device,
    *,
    progress: str | None = None,
) -> ScorerSet:
    """Every configured scorer fitted on the images ``rows`` (a bool mask over N) only; the
    patch scorer last, its coreset selection the long part (``progress``: a bar's label)."""
    with progress_bar(
        desc=progress or "",
        total=len(settings.scorers),
        unit="scorer",
        enabled=progress is not None,
    ) as bar:
        global_scorers: dict[str, GlobalScorer] = {}
        for name in settings.scorers:
            if SCORERS[name].feature == "patches":
                continue  # the patch scorer: below, from the patch candidates
            global_scorers[name] = _new_global(name, settings).fit(features.of(name)[rows])
            bar.update()
        patch = None
        if features.candidates.numel():
            candidates = features.candidates[rows[features.owners]]
            bar.set_postfix_str(f"coreset of {candidates.shape[0]} patches")
            patch = PatchScorer(**SCORERS["patch"].params(settings))
            patch.fit(candidates.to(device))  # coreset: fast on a GPU
            patch.to(torch.device("cpu"))
            bar.update()
    return ScorerSet(patch, global_scorers, photometric)


def fold_of(n: int, folds: int, seed: int) -> Tensor:
    """A seeded assignment of n images to ``min(folds, n)`` folds of (nearly) equal size."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assignment = torch.empty(n, dtype=torch.int64)
    assignment[order] = torch.arange(n) % min(folds, n)
    return assignment


def own_bank_patches(features: GoodFeatures, patch: PatchScorer, row: int) -> Tensor | None:
    """Bools over ``patch``'s bank: the patches taken from image ``row``, to leave out when
    scoring that image; None when the image owns the whole bank (a tiny one: nothing else to
    match, so it is scored in sample)."""
    if patch.kept is None:
        return None
    own = features.owners[patch.kept] == row
    return None if bool(own.all()) else own


def cross_fitted_scores(
    features: GoodFeatures,
    fitted: ScorerSet,
    settings: DetectorSettings,
    shape: tuple[int, int],
    *,
    progress: str | None = None,
) -> dict[str, Tensor]:
    """Out-of-fold scores of the ``features.mapped`` images, per scorer: each image is scored by
    scorers that never saw it (``progress``: the label of a bar over the patch scorer's images).

    The patch scorer leaves one image out: the final bank less that image's own patches, so an
    image meets a bank built from all the others, as a new part meets the final bank (K folds
    would leave holes where a fifth of the images' patches were). A positional patch scorer's
    statistics come from these maps (``set_positions``), and each image's map is standardised
    by the statistics of the others. The global scorers are refitted on K - 1 of K =
    ``calibration_folds`` folds."""
    n = features.h.shape[0]
    fold = fold_of(n, settings.calibration_folds, settings.seed)
    scores = {name: torch.empty(len(features.mapped)) for name in settings.scorers}
    for f in range(int(fold.max()) + 1):
        here = torch.nonzero(fold[features.mapped] == f).flatten()  # positions in ``mapped``
        if here.numel() == 0:
            continue
        rows = features.mapped[here]
        for name in fitted.global_scorers:
            scorer = _new_global(name, settings).fit(features.of(name)[fold != f])
            scores[name][here] = scorer.score(features.of(name)[rows])
    patch = fitted.patch
    if patch is not None and features.maps is not None:
        with progress_bar(
            enumerate(features.mapped.tolist()),
            desc=progress or "",
            total=len(features.mapped),
            unit="img",
            enabled=progress is not None,
        ) as images:
            raw = []  # a positional scorer's out-of-fold maps, float16
            for position, row in images:
                maps = leave_one_out_map(features, patch, position, row, shape)
                if patch.positional:
                    raw.append(maps.half())
                else:
                    scores["patch"][position] = patch.image_scores(maps)[0]
        if patch.positional:
            scores["patch"] = positional_scores(patch, raw)
    return scores


def positional_scores(patch: PatchScorer, raw: Sequence[Tensor]) -> Tensor:
    """Image scores of good images' out-of-fold 1×H×W ``raw`` maps, by a positional ``patch``
    scorer whose statistics are set from them. Each map is standardised by the statistics of
    the others: its own peak would lift its position's mean and spread and hide itself."""
    stats = PositionStats.of(raw)
    patch.set_positions(stats)
    scores = []
    for one in raw:
        mean, scale = stats.without([one]).moments()
        scores.append(patch.image_scores(standardise(one.float(), mean, scale)))
    return torch.cat(scores)


def leave_one_out_map(
    features: GoodFeatures, patch: PatchScorer, position: int, row: int, shape: tuple[int, int]
) -> Tensor:
    """The 1×H×W anomaly map of good image ``row`` (``features.maps[position]``) by the bank
    less that image's own patches: how it would score had it never been fitted on (before any
    positional standardisation: ``positional_scores``)."""
    assert features.maps is not None  # the patch maps were collected
    own = own_bank_patches(features, patch, row)
    maps = features.maps[position : position + 1].float()
    return patch.predict(maps, shape, exclude=own, raw=True).maps


def _fit_group(
    embedder: Embedder,
    pixels: Tensor,
    settings: DetectorSettings,
    device: torch.device,
    *,
    label: str = "detector",
) -> ScorerSet:
    """Fit every scorer on all the good training images of group ``label``, with bounded patch
    memory; with ``calibration="crossfit"`` also their cross-fitted scores, and the thresholds."""
    n = pixels.shape[0]
    photometric = Photometric.fit(settings.photometric, pixels)
    crossfit = settings.calibration == "crossfit"
    if crossfit and n < MIN_CROSSFIT_IMAGES:  # each fold's global scorers need 2 other images
        raise ValueError(
            f"cross-fitted calibration needs at least {MIN_CROSSFIT_IMAGES} good training images"
        )
    mapped = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed + 1))
    mapped = mapped[:MAX_CALIBRATION_IMAGES].sort().values if crossfit else mapped[:0]
    features = collect_features(
        embedder,
        pixels,
        settings,
        photometric,
        device,
        mapped=mapped,
        progress=f"{label}: features",
    )
    scorer_set = fit_scorers(
        features,
        torch.ones(n, dtype=torch.bool),
        settings,
        photometric,
        device,
        progress=f"{label}: scorers",
    )
    scorer_set.shape = (int(pixels.shape[-2]), int(pixels.shape[-1]))
    if crossfit:
        scores = cross_fitted_scores(
            features,
            scorer_set,
            settings,
            scorer_set.shape,
            progress=f"{label}: cross-fitted scores",
        )
        folds = {name: min(settings.calibration_folds, n) for name in scores} | {"patch": n}
        scorer_set.good_scores = scores
        scorer_set.good_rows = features.mapped
        scorer_set.calibrations = {
            name: calibrate_threshold(s.numpy(), settings.target_fpr, folds=folds[name])
            for name, s in scores.items()
        }
    return scorer_set


def fit_detector(
    model: SimCLRModel,
    train: Mapping[str, Tensor],
    val: Mapping[str, Tensor],
    settings: DetectorSettings,
    *,
    device: torch.device,
    choices: Mapping[str, Mapping[str, Any]] | None = None,
) -> Detector:
    """Fit the scorers on good training images and calibrate their thresholds.

    With ``settings.calibration == "crossfit"`` (the default) every training image is fitted on
    and the thresholds come from cross-fitted scores (``cross_fitted_scores``); ``val`` is not
    used. With ``"holdout"`` the thresholds come from the held-out ``val`` images.

    Args:
        model: the trained SimCLR model.
        train: category -> uint8 N×3×H×W good training images (never the validation ones).
        val: category -> uint8 held-out good images, used only for holdout thresholds.
        settings: detector settings.
        device: where to run the encoder.
        choices: per category, settings that differ from ``settings`` (``selection``'s
            choice: ``positional``, ``score_rule``, ``patch_stages``; the image size is in the
            pixels' shape).
    """
    embedder = Embedder(model, settings.patch_stages or None)
    if settings.pooled:
        members = {POOLED: list(train)}
    else:
        members = {category: [category] for category in train}
    groups: dict[str, ScorerSet] = {}
    labels = {group: "pooled" if group == POOLED else group for group in members}
    for group, categories in members.items():
        log.info("fitting scorers for %s", ", ".join(categories))
        pixels = torch.cat([train[c] for c in categories])
        chosen = dataclasses.replace(settings, **(choices or {}).get(group, {}))
        own = chosen.patch_stages != settings.patch_stages  # auto chose other stages here
        group_embedder = Embedder(model, chosen.patch_stages or None) if own else embedder
        groups[group] = _fit_group(group_embedder, pixels, chosen, device, label=labels[group])
        groups[group].patch_stages = group_embedder.stages if own else ()
    category_group = {c: g for g, cs in members.items() for c in cs}
    detector = Detector(embedder, settings, groups, category_group)
    if settings.calibration == "crossfit":
        return detector
    for group, categories in members.items():
        held_out = [val[c] for c in categories if c in val and val[c].shape[0] > 0]
        if not held_out:
            raise ValueError(f"no validation images to calibrate {', '.join(categories)}")
        detection = detector.detect(
            torch.cat(held_out),
            categories[0],
            device=device,
            maps=False,
            progress=f"{labels[group]}: held-out scores",
        )
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
        for name, good in scorer_set.good_scores.items():
            tensors[f"calibration.{group}.{name}"] = good.float().contiguous()
        if scorer_set.good_rows is not None:
            tensors[f"calibration.{group}.rows"] = scorer_set.good_rows.long().contiguous()
        groups[group] = {
            "photometric": dataclasses.asdict(scorer_set.photometric),
            "shape": list(scorer_set.shape) if scorer_set.shape else None,
            "scorers": entries,
        }
        if scorer_set.patch_stages:  # auto's choice for this group (else the settings')
            groups[group]["patch_stages"] = list(scorer_set.patch_stages)
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
        shape = entry_set.get("shape")
        scorer_set = ScorerSet(
            patch=None,
            global_scorers={},
            photometric=photometric,
            shape=(int(shape[0]), int(shape[1])) if shape else None,
            good_rows=tensors.get(f"calibration.{group}.rows"),
            patch_stages=tuple(int(s) for s in entry_set.get("patch_stages", ())),
        )
        for name, entry in entry_set["scorers"].items():
            state = unprefixed(dict(tensors), f"scorer.{group}.{name}.")
            scorer = scorer_class(name).from_state(entry["params"], state)
            if isinstance(scorer, PatchScorer):
                scorer_set.patch = scorer
            elif isinstance(scorer, GlobalScorer):
                scorer_set.global_scorers[name] = scorer
            scorer_set.calibrations[name] = Calibration.from_dict(entry["calibration"])
            if f"calibration.{group}.{name}" in tensors:
                scorer_set.good_scores[name] = tensors[f"calibration.{group}.{name}"]
        groups[group] = scorer_set
    embedder = Embedder(model, settings.patch_stages or None)
    return Detector(embedder, settings, groups, dict(metadata["category_group"]))


def scorer_names(settings: DetectorSettings) -> Sequence[str]:
    """Primary first, then the others in their configured order."""
    return [settings.primary, *(s for s in settings.scorers if s != settings.primary)]
