"""Predictors: a saved detector (bundle or ONNX file) that turns images into verdicts.

Both kinds take uint8 N×3×H×W images of one category (H×W = ``input_shape(category)``) and
return one :class:`Prediction` per image: the primary scorer's score, its calibrated threshold,
the score divided by the threshold (1.0 = the threshold) and, when asked, the anomaly map. The
bundle runs through PyTorch (:class:`BundlePredictor`), an exported ``.onnx`` file through
onnxruntime (:class:`OnnxPredictor`); ``open_predictor`` picks one by the path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simclr_ad.calibration import Calibration, normalize_scores
from simclr_ad.data.augment import normalize
from simclr_ad.errors import UserError
from simclr_ad.pipeline import LoadedDetector, load_detector

log = logging.getLogger(__name__)

ONNX_METADATA_KEY = "simclr_ad"  # metadata_props entry holding the predictor's JSON description
ONNX_SIGNATURE_KEY = "simclr_ad_sha256"  # SHA-256 over the graph and the other entries


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The verdict on one image.

    Attributes:
        category: the category it was scored as.
        score: the primary scorer's anomaly score (higher = more anomalous).
        normalized_score: ``score / threshold``.
        threshold: the calibrated threshold of the category.
        is_anomalous: ``score >= threshold``.
        anomaly_map: S×S float32 map (in score units), or None when not asked for or not made.
    """

    category: str
    score: float
    normalized_score: float
    threshold: float
    is_anomalous: bool
    anomaly_map: np.ndarray | None = None


def _predictions(
    category: str, calibration: Calibration, scores: np.ndarray, maps: np.ndarray | None
) -> list[Prediction]:
    normalized = normalize_scores(scores, calibration)
    verdicts = calibration.is_anomalous(scores)
    return [
        Prediction(
            category=category,
            score=float(scores[i]),
            normalized_score=float(normalized[i]),
            threshold=calibration.threshold,
            is_anomalous=bool(verdicts[i]),
            anomaly_map=None if maps is None else maps[i],
        )
        for i in range(len(scores))
    ]


class Predictor:
    """What a bundle and an ONNX predictor share: size, categories, metadata, category choice."""

    image_size: int
    categories: list[str]
    metadata: dict[str, Any]

    def input_shape(self, category: str) -> tuple[int, int]:
        """(height, width) that images of ``category`` are resized to."""
        return self.image_size, self.image_size

    def resolve_category(self, category: str | None) -> str:
        """``category``, or the only one; a UserError names the valid choices."""
        if category is None or category == "":
            if len(self.categories) == 1:
                return self.categories[0]
            raise UserError(
                f"the model has several categories; choose one with --category: "
                f"{', '.join(self.categories)}"
            )
        if category not in self.categories:
            raise UserError(
                f"unknown category {category!r}; the model knows: {', '.join(self.categories)}"
            )
        return category

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        """Verdicts on uint8 N×3×S×S images of ``category``."""
        raise NotImplementedError


class BundlePredictor(Predictor):
    """A ``RUN/model`` bundle run through PyTorch.

    Args:
        loaded: the bundle read back by ``load_detector``.
        device: where the encoder runs.
    """

    def __init__(self, loaded: LoadedDetector, device: torch.device) -> None:
        self.loaded = loaded
        self.device = device
        self.image_size = loaded.detector.settings.image_size
        self.categories = loaded.detector.categories
        self.metadata = loaded.metadata
        self.primary = loaded.detector.settings.primary

    def input_shape(self, category: str) -> tuple[int, int]:
        return self.loaded.detector.input_shape(category)

    def calibration(self, category: str) -> Calibration:
        return self.loaded.detector.scorer_set(category).calibrations[self.primary]

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        detection = self.loaded.detector.detect(
            pixels, category, device=self.device, maps=maps and self.primary == "patch"
        )
        scores = detection.scores[self.primary].numpy()
        anomaly_maps = detection.maps.numpy() if detection.maps is not None else None
        return _predictions(category, self.calibration(category), scores, anomaly_maps)


class OnnxPredictor(Predictor):
    """An exported one-category detector (``simclr-ad export``) run through onnxruntime.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime intra-op threads (0: its default).
    """

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort  # heavy: imported when an ONNX model is used

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # idle threads sleep instead of spinning, so they leave the cores to the rest of the
        # process (PyTorch, the web server) between runs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"cannot load ONNX model {path}: {exc}") from None
        self.metadata = verified_onnx_metadata(path)
        try:
            self.image_size = int(self.metadata["image_size"])
            shape = self.metadata.get("input_shape") or [self.image_size, self.image_size]
            self.shape = (int(shape[0]), int(shape[1]))
            self.categories = [str(self.metadata["category"])]
            self.calibration = Calibration.from_dict(self.metadata["calibration"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise UserError(
                f"{path}: malformed simclr_ad metadata ({type(exc).__name__}: {exc})"
            ) from None

    def input_shape(self, category: str) -> tuple[int, int]:
        return self.shape

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        images = normalize(pixels).numpy()
        scores, anomaly_maps = self.session.run(["score", "anomaly_map"], {"image": images})
        return _predictions(category, self.calibration, scores, anomaly_maps if maps else None)


def onnx_signature(graph: bytes, props: Mapping[str, str]) -> str:
    """SHA-256 of an exported model's serialised graph and of its metadata entries other than
    the signature: an edit to the weights, the graph or the threshold changes it."""
    digest = hashlib.sha256(graph)
    rest = {k: v for k, v in props.items() if k != ONNX_SIGNATURE_KEY}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    return digest.hexdigest()


def verified_onnx_metadata(path: Path) -> dict[str, Any]:
    """The JSON description of a ``simclr-ad export`` file whose signature matches its graph
    and metadata; a UserError naming the file otherwise."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others
        raise UserError(f"cannot load ONNX model {path}: {exc}") from None
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_METADATA_KEY not in props:
        raise UserError(f"{path} is not an ONNX model exported by simclr-ad export")
    if ONNX_SIGNATURE_KEY not in props:
        raise UserError(f"{path} carries no signature (an older export?); export it again")
    graph = model.graph.SerializeToString(deterministic=True)
    if props[ONNX_SIGNATURE_KEY] != onnx_signature(graph, props):
        raise UserError(
            f"{path} does not match its signature: its graph or metadata (e.g. the threshold) "
            "were edited; export the model again"
        )
    try:
        metadata = json.loads(props[ONNX_METADATA_KEY])
    except ValueError as exc:
        raise UserError(f"{path}: malformed simclr_ad metadata ({exc})") from None
    if not isinstance(metadata, dict):
        raise UserError(f"{path}: malformed simclr_ad metadata (not a JSON object)")
    return metadata


def open_predictor(path: Path, device: torch.device) -> Predictor:
    """An ``.onnx`` file -> OnnxPredictor; a bundle folder (or the run folder above it) ->
    BundlePredictor."""
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise UserError(f"ONNX model {path} does not exist")
        return OnnxPredictor(path)
    return open_bundle(path, device)


def open_bundle(path: Path, device: torch.device) -> BundlePredictor:
    """The bundle in ``path`` (``RUN/model``, or the run folder ``RUN`` above it)."""
    if not (path / "model.json").exists() and (path / "model" / "model.json").exists():
        path = path / "model"
    return BundlePredictor(load_detector(path), device)


def stack_images(images: Sequence[np.ndarray]) -> Tensor:
    """H×W×3 uint8 arrays -> uint8 N×3×H×W tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
