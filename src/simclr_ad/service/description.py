"""What ``GET /v1/model`` tells a client: only what it needs to send images and read verdicts.

The bundle's metadata also records how the model was trained (the data root, the run folder, the
whole config); none of that is shown. The description is built from named fields, so a field
added to the metadata later stays private until it is added here.
"""

from __future__ import annotations

from typing import Any

from simclr_ad.predictor import Predictor

PREPROCESSING_FIELDS = ("image_size", "decode", "resize", "mean", "std")
ARCHITECTURE_FIELDS = ("backbone", "head_hidden", "head_out")


def describe_model(predictor: Predictor) -> dict[str, Any]:
    """Categories, image size, preprocessing, primary scorer, target FPR, the threshold of each
    category (as the predictor applies them: calibrated, or moved by ``--threshold`` /
    ``--target-fpr``, said by ``threshold_source``), the model's identity (architecture,
    hashes) and versions; no filesystem paths."""
    meta = predictor.metadata
    onnx = "category" in meta  # an exported model's description holds its one category
    detector = _onnx_decision(meta) if onnx else _bundle_decision(meta, predictor.categories)
    if not predictor.operating_point.is_calibrated:  # --threshold / --target-fpr moved them
        decisions = {c: predictor.decision(c) for c in predictor.categories}
        first = decisions[predictor.categories[0]]
        detector |= {
            "target_fpr": first.target_fpr,
            "thresholds": {c: d.threshold for c, d in decisions.items()},
        }
    detector["threshold_source"] = predictor.operating_point.source
    return {
        "kind": "onnx" if onnx else "bundle",
        "categories": list(predictor.categories),
        "image_size": predictor.image_size,
        "preprocessing": _named(meta.get("preprocessing", {}), PREPROCESSING_FIELDS),
        "detector": detector,
        "model": _onnx_identity(meta) if onnx else _bundle_identity(meta),
        "versions": dict(meta.get("versions", {})),
    }


def _bundle_decision(meta: dict[str, Any], categories: list[str]) -> dict[str, Any]:
    decision = meta.get("decision", {})
    primary = decision.get("primary_scorer")
    thresholds = meta.get("detector", {}).get("thresholds", {})
    return {
        "primary_scorer": primary,
        "target_fpr": decision.get("target_fpr"),
        "thresholds": {c: thresholds.get(c, {}).get(primary) for c in categories},
    }


def _onnx_decision(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "primary_scorer": meta.get("scorer"),
        "target_fpr": meta.get("calibration", {}).get("target_fpr"),
        "thresholds": {meta["category"]: meta.get("threshold")},
    }


def _bundle_identity(meta: dict[str, Any]) -> dict[str, Any]:
    spec = meta.get("model", {})
    return {
        "architecture": _named(spec, ARCHITECTURE_FIELDS),
        "format_version": meta.get("format_version"),
        "tensors_sha256": meta.get("tensors_sha256"),
        "metadata_sha256": meta.get("metadata_sha256"),
    }


def _onnx_identity(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": meta.get("format"),
        "bundle_tensors_sha256": meta.get("bundle_tensors_sha256"),
    }


def _named(values: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: values[k] for k in fields if k in values}
