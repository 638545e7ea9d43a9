"""Serving imports no training: predicting, serving, exporting, recalibrating and evaluating a
saved detector load none of the training modules (checked in a fresh interpreter)."""

import importlib
import json
import subprocess
import sys

import pytest

TRAINING_MODULES = {
    "simclr_ad.pipeline",
    "simclr_ad.training",
    "simclr_ad.objectives",
    "simclr_ad.distributed",
    "simclr_ad.losses",
    "simclr_ad.data.augment",  # the SimCLR views
    "simclr_ad.data.cutpaste",  # the cutpaste objective's defects
}
SERVING_MODULES = (
    "simclr_ad.predictor",
    "simclr_ad.predict",
    "simclr_ad.service.app",
    "simclr_ad.service.server",
    "simclr_ad.export_onnx",
    "simclr_ad.recalibrate",
    "simclr_ad.evaluation",  # not serving, but a saved model's evaluation needs no training either
)


def _loaded_after(statements: str) -> set[str]:
    """The ``simclr_ad`` modules a fresh interpreter holds after running ``statements``."""
    code = f"import json, sys\n{statements}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    return {m for m in json.loads(result.stdout.splitlines()[-1]) if m.startswith("simclr_ad")}


def test_using_a_saved_detector_imports_no_training(tmp_path) -> None:
    missing = tmp_path / "missing"
    loaded = _loaded_after(
        f"import {', '.join(SERVING_MODULES)}\n"
        "from simclr_ad.cli import main\n"  # the commands, as far as their first check
        f"assert main(['predict', '--model', {str(missing)!r}, {str(missing)!r}]) == 2\n"
        f"assert main(['serve', '--model', {str(missing)!r}, '--port', '70000']) == 2\n"
        f"assert main(['calibrate', '--model', {str(missing)!r}, '--data', {str(missing)!r}, "
        f"'--out', {str(tmp_path / 'out')!r}]) == 2"
    )
    assert set(SERVING_MODULES) <= loaded  # the probe sees what it imported
    assert not TRAINING_MODULES & loaded, sorted(TRAINING_MODULES & loaded)


@pytest.mark.parametrize("name", sorted(TRAINING_MODULES))
def test_training_modules_named_above_exist(name: str) -> None:
    """A misspelt name would make the probe above pass vacuously."""
    importlib.import_module(name)
