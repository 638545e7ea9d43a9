"""Issue 16, item 5 (ONNX): an exported file's graph and ``simclr_ad`` metadata are signed.

Before the fix an edited threshold in the metadata (or an edited weight) was accepted silently,
and malformed metadata raised ``JSONDecodeError`` / ``KeyError`` tracebacks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from simclr_ad.cli import main
from simclr_ad.errors import UserError
from simclr_ad.predictor import ONNX_METADATA_KEY, ONNX_SIGNATURE_KEY, OnnxPredictor, onnx_signature


@pytest.fixture(scope="module")
def exported(tiny_fabric_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "fabric.onnx"
    assert main(["-q", "export", "--model", str(tiny_fabric_model), "--out", str(out)]) == 0
    return out


def _edited(
    source: Path,
    target: Path,
    edit: Callable[[onnx.ModelProto, dict[str, str]], None],
    *,
    resign: bool = False,
) -> Path:
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    edit(model, props)
    if resign:
        props[ONNX_SIGNATURE_KEY] = onnx_signature(
            model.graph.SerializeToString(deterministic=True), props
        )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))
    return target


def _threshold_halved(_model: onnx.ModelProto, props: dict[str, str]) -> None:
    meta = json.loads(props[ONNX_METADATA_KEY])
    meta["threshold"] /= 2
    meta["calibration"]["threshold"] /= 2
    props[ONNX_METADATA_KEY] = json.dumps(meta)


def _weight_nudged(model: onnx.ModelProto, _props: dict[str, str]) -> None:
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    values = numpy_helper.to_array(tensor).copy()
    values.flat[0] += np.float32(0.5)
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def test_exported_file_is_signed_and_loads(exported: Path) -> None:
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert len(props[ONNX_SIGNATURE_KEY]) == 64
    assert OnnxPredictor(exported).categories == ["fabric"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_threshold_halved, "does not match its signature"),
        (_weight_nudged, "does not match its signature"),
        (lambda _m, p: p.pop(ONNX_SIGNATURE_KEY), "carries no signature"),
    ],
    ids=["threshold", "weight", "unsigned"],
)
def test_edited_or_unsigned_export_is_refused(
    exported: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[onnx.ModelProto, dict[str, str]], None],
    expected: str,
) -> None:
    edited = _edited(exported, tmp_path / "edited.onnx", edit)
    with pytest.raises(UserError, match=expected):
        OnnxPredictor(edited)
    images = tmp_path / "in"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "a.png")
    argv = ["-q", "predict", "--model", str(edited), str(images)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", json.dumps({"category": "fabric"}), json.dumps({"image_size": "x"})],
)
def test_malformed_metadata_is_one_line(exported: Path, tmp_path: Path, text: str) -> None:
    def replace(_model: onnx.ModelProto, props: dict[str, str]) -> None:
        props[ONNX_METADATA_KEY] = text

    edited = _edited(exported, tmp_path / "odd.onnx", replace, resign=True)  # signed as is
    with pytest.raises(UserError, match="malformed simclr_ad metadata"):
        OnnxPredictor(edited)
