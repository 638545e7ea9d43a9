"""``auto``: a test-free choice among a few detector candidates, from good images only.

A user has no labelled defects, so each candidate is judged on what a user has: good training
images and synthetic defects made from them. Per category and candidate, a detector is fitted on
up to ``SELECTION_IMAGES`` good images with cross-fitted calibration (``detector``); up to
``DEFECT_BASES`` of those images get one synthetic defect each (CutPaste or a scar, alternately;
Li et al. 2021), scored by the bank less the base image's own patches. A candidate's
*synthetic recall* is the share of those defects at or above its cross-fitted threshold: what
F1 at the calibrated threshold turns on. The highest recall wins; within one defect of it the
higher synthetic AUROC, then the earlier (default) candidate.

Only keys the user left at their defaults vary (``config.apply_pretrained_recipe``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from simclr_ad.calibration import calibrate_threshold
from simclr_ad.data.cutpaste import cutpaste, scar
from simclr_ad.detector import (
    DetectorSettings,
    collect_features,
    cross_fitted_scores,
    fit_scorers,
    own_bank_patches,
)
from simclr_ad.embeddings import Embedder, iter_embeddings
from simclr_ad.preprocessing import Normalization, Photometric

log = logging.getLogger(__name__)

SELECTION_IMAGES = 80  # good images a candidate is fitted and cross-fitted on
DEFECT_BASES = 40  # good images that each get one synthetic defect
SELECTION_CANDIDATES = 30_000  # patch candidates of a selection bank (the final one: settings')


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A detector variant: ``changes`` to the config (``image_size``, ``score_rule``)."""

    name: str
    changes: Mapping[str, Any]


CANDIDATES = (  # the first is the config as resolved: 512 px and the max rule by default
    Candidate("base", {}),
    Candidate("image score: mean of the top 1% of the map", {"score_rule": "topk_mean"}),
    Candidate("image size 320", {"image_size": 320}),
)


def synthetic_defects(pixels: Tensor, seed: int) -> Tensor:
    """One CutPaste (even rows) or scar (odd rows) defect in each uint8 N×3×H×W image."""
    generator = torch.Generator().manual_seed(seed)
    imagenet = Normalization()
    x = imagenet(pixels)
    pasted = cutpaste(x, generator).images
    scarred = scar(x, generator).images
    odd = (torch.arange(x.shape[0]) % 2 == 1).view(-1, 1, 1, 1)
    mixed = torch.where(odd, scarred, pasted)
    return (imagenet.denormalize(mixed) * 255).round().clamp(0, 255).to(torch.uint8)


def judge(
    embedder: Embedder, pixels: Tensor, settings: DetectorSettings, device: torch.device
) -> dict[str, Any]:
    """Synthetic recall and AUROC of one candidate on uint8 N×3×H×W good images."""
    n = pixels.shape[0]
    settings = dataclasses.replace(
        settings, scorers=("patch",), primary="patch", max_patch_candidates=SELECTION_CANDIDATES
    )
    photometric = Photometric.fit(settings.photometric, pixels)
    everything = torch.arange(n)
    features = collect_features(embedder, pixels, settings, photometric, device, mapped=everything)
    fitted = fit_scorers(features, torch.ones(n, dtype=torch.bool), settings, photometric, device)
    shape = (int(pixels.shape[-2]), int(pixels.shape[-1]))
    good = cross_fitted_scores(features, fitted, settings, shape)["patch"]
    threshold = calibrate_threshold(good.numpy(), settings.target_fpr, folds=n).threshold
    assert fitted.patch is not None  # the patch scorer is configured
    bases = everything[:DEFECT_BASES]
    defects = synthetic_defects(pixels[bases], seed=settings.seed)
    scores = torch.empty(len(bases))
    start = 0
    for emb in iter_embeddings(
        embedder, defects, device=device, batch_size=settings.batch_size, photometric=photometric
    ):
        assert emb.patches is not None  # the patch scorer is configured
        for i, maps in enumerate(emb.patches.split(1)):  # each scored without its base's patches
            own = own_bank_patches(features, fitted.patch, int(bases[start + i]))
            scores[start + i] = fitted.patch.predict(maps, shape, exclude=own).scores[0]
        start += emb.patches.shape[0]
    labels = [0] * n + [1] * len(scores)
    return {
        "threshold": threshold,
        "synthetic_recall": float((scores >= threshold).float().mean()),
        "synthetic_auroc": float(roc_auc_score(labels, torch.cat([good, scores]).numpy())),
        "n_good": n,
        "n_defects": len(scores),
    }


def choose(
    embedder: Embedder,
    decode: Callable[[int], Tensor],
    settings: DetectorSettings,
    free: set[str],
    device: torch.device,
) -> tuple[Candidate, list[dict[str, Any]]]:
    """The best candidate of one category and every candidate's figures.

    Args:
        embedder: the feature extractor.
        decode: image_size -> uint8 N×3×H×W good images (at most SELECTION_IMAGES).
        settings: the detector settings as configured.
        free: config keys the candidates may change (those left at their defaults).
        device: where the encoder runs.
    """
    rows: list[dict[str, Any]] = []
    usable = [c for c in CANDIDATES if set(c.changes) <= free]
    for candidate in usable:
        started = time.perf_counter()
        image_size = int(candidate.changes.get("image_size", settings.image_size))
        variant = dataclasses.replace(
            settings, **{k: v for k, v in candidate.changes.items() if k != "image_size"}
        )
        figures = judge(embedder, decode(image_size), variant, device)
        figures |= {"candidate": candidate.name, "changes": dict(candidate.changes)}
        figures["seconds"] = round(time.perf_counter() - started, 1)
        log.info(
            "auto: %s: synthetic recall %.3f, AUROC %.3f",
            candidate.name,
            figures["synthetic_recall"],
            figures["synthetic_auroc"],
        )
        rows.append(figures)
    best = 0
    for i, row in enumerate(rows):
        margin = 1 / max(row["n_defects"], 1)
        top = rows[best]
        if row["synthetic_recall"] > top["synthetic_recall"] + margin or (
            abs(row["synthetic_recall"] - top["synthetic_recall"]) <= margin
            and row["synthetic_auroc"] > top["synthetic_auroc"]
        ):
            best = i
    return usable[best], rows
