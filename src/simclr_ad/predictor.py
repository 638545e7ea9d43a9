"""Predictors: a saved detector (bundle or ONNX file) that turns images into verdicts.

Both kinds take uint8 N×3×H×W images of one category (H×W = ``input_shape(category)``) and
return one :class:`Prediction` per image: the primary scorer's score, the threshold, the score
divided by the threshold (1.0 = the threshold) and, when asked, the anomaly map. The bundle runs
through PyTorch (:class:`BundlePredictor`), an exported ``.onnx`` file through onnxruntime
(:class:`OnnxPredictor`); ``open_predictor`` picks one by the path.

The threshold is the calibrated one unless an :class:`OperatingPoint` moves it after training
(``--threshold``, ``--target-fpr``): each category's :class:`Decision` says which it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simclr_ad.calibration import Calibration, calibrate_threshold, normalize_scores
from simclr_ad.detector_bundle import LoadedDetector, load_detector
from simclr_ad.errors import UserError, require_extra
from simclr_ad.preprocessing import Normalization

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
        threshold: the threshold the verdict used (see :class:`Decision`).
        is_anomalous: ``score >= threshold``.
        anomaly_map: S×S float32 map (in score units), or None when not asked for or not made.
    """

    category: str
    score: float
    normalized_score: float
    threshold: float
    is_anomalous: bool
    anomaly_map: np.ndarray | None = None


TARGET_FPR_NEEDS_SCORES = (
    "--target-fpr needs the good scores that set the thresholds, and this model does not store "
    "them (calibrated on a held-out split, or an ONNX export): use --threshold, or "
    "simclr-ad calibrate to recalibrate the bundle on good images"
)


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """The threshold asked for at prediction time; neither field set: the calibrated one.

    Attributes:
        threshold: a fixed score threshold for the primary scorer (``--threshold``).
        target_fpr: a false-alarm rate whose threshold is re-derived, by the calibration rule,
            from the good scores stored in the bundle (``--target-fpr``).
    """

    threshold: float | None = None
    target_fpr: float | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and self.target_fpr is not None:
            raise UserError("give --threshold or --target-fpr, not both")
        if self.threshold is not None and not (
            math.isfinite(self.threshold) and self.threshold > 0
        ):
            raise UserError(
                f"--threshold must be a finite number > 0 (scores are distances), "
                f"got {self.threshold}"
            )
        if self.target_fpr is not None and not 0 < self.target_fpr < 1:
            raise UserError(f"--target-fpr must be in (0, 1), got {self.target_fpr}")

    @property
    def is_calibrated(self) -> bool:
        """Whether the bundle's calibrated thresholds apply unchanged."""
        return self.threshold is None and self.target_fpr is None

    @property
    def source(self) -> str:
        """``calibrated``, ``fixed`` or ``target-fpr``: what a :class:`Decision` records."""
        if self.threshold is not None:
            return "fixed"
        return "calibrated" if self.target_fpr is None else "target-fpr"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The threshold the verdicts of one category use, and where it comes from.

    Attributes:
        threshold: scores >= this are anomalous.
        source: ``calibrated`` (the bundle's threshold), ``fixed`` (``--threshold``) or
            ``target-fpr`` (re-derived from the stored good scores for ``--target-fpr``).
        target_fpr: the false-alarm rate the threshold aims at; None for a fixed one.
        rule: in words, what the threshold rests on.
    """

    threshold: float
    source: str
    target_fpr: float | None
    rule: str


def decide(
    calibration: Calibration, point: OperatingPoint, good_scores: np.ndarray | None
) -> Decision:
    """The decision of a category calibrated by ``calibration`` at operating point ``point``.

    Args:
        calibration: the primary scorer's stored calibration.
        point: what the user asked for.
        good_scores: the good scores that set ``calibration`` (None or empty when not stored).

    Raises:
        UserError: ``point.target_fpr`` without stored good scores.
    """
    if point.threshold is not None:
        return Decision(point.threshold, point.source, None, "given by --threshold")
    if point.target_fpr is None:
        return Decision(
            calibration.threshold, point.source, calibration.target_fpr, calibration.promise
        )
    if good_scores is None or good_scores.size == 0:
        raise UserError(TARGET_FPR_NEEDS_SCORES)
    moved = calibrate_threshold(good_scores, point.target_fpr, folds=calibration.folds)
    return Decision(moved.threshold, point.source, moved.target_fpr, moved.promise)


def _predictions(
    category: str, decision: Decision, scores: np.ndarray, maps: np.ndarray | None
) -> list[Prediction]:
    normalized = normalize_scores(scores, decision.threshold)
    verdicts = np.asarray(scores, dtype=np.float64) >= decision.threshold
    return [
        Prediction(
            category=category,
            score=float(scores[i]),
            normalized_score=float(normalized[i]),
            threshold=decision.threshold,
            is_anomalous=bool(verdicts[i]),
            anomaly_map=None if maps is None else maps[i],
        )
        for i in range(len(scores))
    ]


def resolve_category(categories: Sequence[str], category: str | None) -> str:
    """``category``, or the only one of ``categories``; a UserError names the valid choices."""
    if category is None or category == "":
        if len(categories) == 1:
            return categories[0]
        raise UserError(
            f"the model has several categories; choose one with --category: {', '.join(categories)}"
        )
    if category not in categories:
        raise UserError(f"unknown category {category!r}; the model knows: {', '.join(categories)}")
    return category


class Predictor:
    """What a bundle and an ONNX predictor share: size, categories, metadata, category choice,
    the operating point."""

    image_size: int
    categories: list[str]
    metadata: dict[str, Any]
    operating_point: OperatingPoint = OperatingPoint()
    decisions: Mapping[str, Decision]

    def input_shape(self, category: str) -> tuple[int, int]:
        """(height, width) that images of ``category`` are resized to."""
        return self.image_size, self.image_size

    def resolve_category(self, category: str | None) -> str:
        """``category``, or the only one; a UserError names the valid choices."""
        return resolve_category(self.categories, category)

    def decision(self, category: str) -> Decision:
        """The threshold that ``category``'s verdicts use and where it comes from."""
        return self.decisions[category]

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        """Verdicts on uint8 N×3×S×S images of ``category``."""
        raise NotImplementedError


class BundlePredictor(Predictor):
    """A ``RUN/model`` bundle run through PyTorch.

    Args:
        loaded: the bundle read back by ``load_detector``.
        device: where the encoder runs.
        operating_point: the threshold asked for (default: the calibrated ones).
    """

    def __init__(
        self,
        loaded: LoadedDetector,
        device: torch.device,
        operating_point: OperatingPoint | None = None,
    ) -> None:
        self.loaded = loaded
        self.device = device
        self.image_size = loaded.detector.settings.image_size
        self.categories = loaded.detector.categories
        self.metadata = loaded.metadata
        self.primary = loaded.detector.settings.primary
        self.operating_point = operating_point or OperatingPoint()
        self.decisions = {c: self._decide(c) for c in self.categories}

    def input_shape(self, category: str) -> tuple[int, int]:
        return self.loaded.detector.input_shape(category)

    def calibration(self, category: str) -> Calibration:
        """The primary scorer's calibration as stored in the bundle."""
        return self.loaded.detector.scorer_set(category).calibrations[self.primary]

    def _decide(self, category: str) -> Decision:
        good = self.loaded.detector.scorer_set(category).good_scores.get(self.primary)
        return decide(
            self.calibration(category),
            self.operating_point,
            None if good is None else good.double().numpy(),
        )

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        detection = self.loaded.detector.detect(
            pixels, category, device=self.device, maps=maps and self.primary == "patch"
        )
        scores = detection.scores[self.primary].numpy()
        anomaly_maps = detection.maps.numpy() if detection.maps is not None else None
        return _predictions(category, self.decision(category), scores, anomaly_maps)


class OnnxPredictor(Predictor):
    """An exported one-category detector (``simclr-ad export``) run through onnxruntime.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime intra-op threads (0: its default).
        operating_point: the threshold asked for (default: the calibrated one); the file holds
            no good scores, so ``target_fpr`` is refused.
    """

    def __init__(
        self, path: Path, threads: int = 0, operating_point: OperatingPoint | None = None
    ) -> None:
        require_extra("export", needed_by=f"the ONNX model {path}")
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
            self.normalization = Normalization.from_metadata(self.metadata.get("preprocessing"))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise UserError(
                f"{path}: malformed simclr_ad metadata ({type(exc).__name__}: {exc})"
            ) from None
        self.operating_point = operating_point or OperatingPoint()
        self.decisions = {
            self.categories[0]: decide(self.calibration, self.operating_point, good_scores=None)
        }

    def input_shape(self, category: str) -> tuple[int, int]:
        return self.shape

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        images = self.normalization(pixels).numpy()
        scores, anomaly_maps = self.session.run(["score", "anomaly_map"], {"image": images})
        decision = self.decision(category)
        return _predictions(category, decision, scores, anomaly_maps if maps else None)


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


def open_predictor(
    path: Path, device: torch.device, operating_point: OperatingPoint | None = None
) -> Predictor:
    """An ``.onnx`` file -> OnnxPredictor; a bundle folder (or the run folder above it) ->
    BundlePredictor; either at ``operating_point`` (default: the calibrated thresholds)."""
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise UserError(f"ONNX model {path} does not exist")
        return OnnxPredictor(path, operating_point=operating_point)
    return open_bundle(path, device, operating_point)


def bundle_folder(path: Path) -> Path:
    """``path`` itself, or ``path/model`` when ``path`` is the run folder above a bundle."""
    if not (path / "model.json").exists() and (path / "model" / "model.json").exists():
        return path / "model"
    return path


def open_bundle(
    path: Path, device: torch.device, operating_point: OperatingPoint | None = None
) -> BundlePredictor:
    """The bundle in ``path`` (``RUN/model``, or the run folder ``RUN`` above it)."""
    return BundlePredictor(load_detector(bundle_folder(path)), device, operating_point)


def stack_images(images: Sequence[np.ndarray]) -> Tensor:
    """H×W×3 uint8 arrays -> uint8 N×3×H×W tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
