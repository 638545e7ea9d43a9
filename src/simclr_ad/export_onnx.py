"""ONNX export of the whole detector of one category, checked against PyTorch with onnxruntime.

The graph takes float images B×3×S×S normalised with the model's mean/std and gives the image
scores (B) and the anomaly maps (B×S×S), every step of the PyTorch path inside it: photometric
correction (``preprocessing``'s module), the backbone's intermediate stages, 3×3 local averaging
and resizing of the patch features, and the fitted ``PatchScorer`` module itself (its bank a
buffer; traced, its search is the exact torch search of ``scoring.search.exact_distances``; then
bilinear upsampling, Gaussian smoothing and the image score rule). The threshold, its calibration
and the preprocessing (mean/std included) travel in the
model's ``metadata_props``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from simclr_ad import __version__
from simclr_ad.embeddings import Embedder
from simclr_ad.errors import UserError, require_extra
from simclr_ad.predictor import (
    ONNX_METADATA_KEY,
    ONNX_SIGNATURE_KEY,
    BundlePredictor,
    OnnxPredictor,
    onnx_signature,
)
from simclr_ad.preprocessing import Photometric
from simclr_ad.scoring.patch import PatchScorer

require_extra("export", needed_by="simclr-ad export")  # onnx writes the file, onnxruntime checks it

log = logging.getLogger(__name__)

OPSET = 17
# ONNX Runtime vs PyTorch image scores: the largest difference relative to the scores' scale.
# float32 through a deep encoder drifts by ~1e-4 between runtimes (1.7e-4 seen on a valid
# random-init export); a wrong graph (no smoothing, another bank, a wrong score rule) moves the
# scores by percents.
PARITY_TOLERANCE = 1e-3


class DetectorGraph(nn.Module):
    """The patch detector of one category as one traceable module: the embedder's patch
    features scored by the category's ``PatchScorer``, the same module PyTorch inference runs.

    Args:
        embedder: the feature extractor (its patch stages are used).
        scorer: the category's fitted patch scorer (memory bank K×C).
        photometric: the category's brightness correction (run as a module, on images
            normalised with the model's mean/std).
        shape: (H, W) of the input images and of the maps.
    """

    def __init__(
        self,
        embedder: Embedder,
        scorer: PatchScorer,
        photometric: Photometric,
        shape: tuple[int, int],
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.scorer = scorer
        self.photometric = photometric.as_module(embedder.model.normalization)
        self.shape = shape

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised B×3×H×W -> (scores B, anomaly maps B×H×W)."""
        x = self.photometric(x)
        encoder = self.embedder.model.encoder
        stages = encoder.forward_intermediates(  # type: ignore[operator]
            x, indices=list(self.embedder.stages), intermediates_only=True
        )
        features = self.embedder.aggregate(stages)  # B×C×h×w
        scores, maps = self.scorer(features, self.shape)
        return scores, maps


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """The written file and the parity check: scores per sample image, both runtimes."""

    path: Path
    category: str
    torch_scores: tuple[float, ...]
    onnx_scores: tuple[float, ...]
    max_relative_difference: float


def sample_images(size: int | tuple[int, int], n: int = 4, seed: int = 0) -> Tensor:
    """Deterministic uint8 n×3×H×W check images (``size``: S or (H, W)): mid grey, a gradient,
    then seeded noise."""
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, height, width), generator=generator, dtype=torch.uint8)
    images[0] = 128
    if n > 1:
        ramp = torch.linspace(0, 255, width).round().to(torch.uint8)
        images[1] = ramp.view(1, 1, width).expand(3, height, width)
    return images


def export_onnx(
    predictor: BundlePredictor, category: str, out: Path, *, overwrite: bool = False
) -> ExportResult:
    """Export ``category``'s detector to ``out`` and check it against PyTorch.

    The file is written beside ``out`` and moved into place only once onnxruntime reproduced
    the PyTorch scores of the sample images within ``PARITY_TOLERANCE`` (of their scale).
    """
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another --out or add --overwrite")
    detector = predictor.loaded.detector
    if detector.settings.primary != "patch":
        raise UserError(
            f"only the patch scorer exports to ONNX; this model's primary scorer is "
            f"{detector.settings.primary!r}"
        )
    scorer_set = detector.scorer_set(category)
    if scorer_set.patch is None:
        raise UserError(f"the model has no patch scorer for {category!r}")
    size = detector.input_shape(category)
    graph = DetectorGraph(
        detector.embedder_for(category), scorer_set.patch, scorer_set.photometric, size
    )
    graph = graph.cpu().eval()
    images = sample_images(size)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _trace_to_file(graph, images, staging)
        _attach_metadata(staging, predictor, category)
        onnx_scores = [p.score for p in OnnxPredictor(staging).predict(images, category)]
        reference = BundlePredictor(predictor.loaded, torch.device("cpu"))
        torch_scores = [p.score for p in reference.predict(images, category)]
        difference = _max_relative_difference(torch_scores, onnx_scores)
        if not difference <= PARITY_TOLERANCE:
            raise UserError(
                f"ONNX export of {category!r} does not reproduce the PyTorch scores: relative "
                f"difference {difference:.2e} > {PARITY_TOLERANCE:.0e}; nothing written"
            )
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return ExportResult(out, category, tuple(torch_scores), tuple(onnx_scores), difference)


def _trace_to_file(graph: DetectorGraph, images: Tensor, path: Path) -> None:
    example = graph.embedder.model.normalization(images[:2])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and trace notes
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            dynamo=False,  # the TorchScript exporter: timm's stage loop traces to a plain graph
            input_names=["image"],
            output_names=["score", "anomaly_map"],
            dynamic_axes={name: {0: "batch"} for name in ("image", "score", "anomaly_map")},
            opset_version=OPSET,
        )


def _attach_metadata(path: Path, predictor: BundlePredictor, category: str) -> None:
    """Threshold, calibration, preprocessing and provenance as ``metadata_props``, signed with
    a SHA-256 over the graph and those entries (``predictor.onnx_signature``)."""
    import onnx

    model = onnx.load(str(path))
    meta = predictor.metadata
    calibration = predictor.calibration(category)
    description = {
        "format": 2,
        "category": category,
        "image_size": predictor.image_size,
        "input_shape": list(predictor.input_shape(category)),
        "input": "float32 B×3×H×W (input_shape), RGB scaled to [0, 1] then normalised with "
        "preprocessing.mean/std",
        "outputs": {"score": "B", "anomaly_map": "B×H×W"},
        "scorer": predictor.primary,
        "threshold": calibration.threshold,
        "calibration": calibration.to_dict(),
        "normalized_score": "score / threshold (1.0 = the threshold)",
        "preprocessing": meta.get("preprocessing", {}),
        "bundle_tensors_sha256": meta.get("tensors_sha256"),
        "train_files_hash": meta.get("training", {}).get("train_files_hash"),
        "versions": {"simclr_ad": __version__, "torch": torch.__version__},
    }
    props = {
        ONNX_METADATA_KEY: json.dumps(description),
        "category": category,
        "threshold": repr(calibration.threshold),
        "target_fpr": repr(calibration.target_fpr),
        "image_size": str(predictor.image_size),
    }
    props[ONNX_SIGNATURE_KEY] = onnx_signature(
        model.graph.SerializeToString(deterministic=True), props
    )
    onnx.helper.set_model_props(model, props)
    model.producer_name, model.producer_version = "simclr-ad", __version__
    onnx.save(model, str(path))


def _max_relative_difference(reference: list[float], other: list[float]) -> float:
    """max |a - b| over the images, divided by the largest |a| (the scores' scale)."""
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))
