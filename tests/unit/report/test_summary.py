"""The report's tables: one row per category, counts of false alarms, everything escaped."""

import numpy as np

from simclr_ad.report.data import CategoryRows
from simclr_ad.report.summary import method_table, per_category_table, run_table

NAME = "<b>x&y</b>"


def _metrics() -> dict:
    image = {
        "auroc": 0.9,
        "auroc_ci95": [0.8, 1.0],
        "f1": 0.5,
        "precision": 0.5,
        "recall": 0.5,
        "trivial_f1": 0.4,
        "tpr_at_fpr": {"0.01": 0.125, "0.05": 0.75},
        "threshold": 0.5,
        "n_good": 4,
        "n_defect": 2,
    }
    entry = {"image": image, "pixel": {"auroc": None, "aupro": None}}
    mean = {"image_auroc": 0.9, "pixel_auroc": None, "aupro": None, "f1": 0.5}
    return {
        "primary": "patch",
        "scorers": {"patch": {"categories": {NAME: entry}, "mean": mean}},
        "run": {"model_path": "<script>", "versions": {"torch": "2"}},
    }


def test_per_category_table_counts_false_alarms_and_escapes_names() -> None:
    rows = {
        NAME: CategoryRows(
            paths=["a"] * 6,
            defects=["good"] * 4 + ["hole"] * 2,
            labels=np.array([0, 0, 0, 0, 1, 1]),
            scores={"patch": np.array([0.1, 0.6, 0.2, 0.3, 0.9, 0.4])},
        )
    }
    table = per_category_table(_metrics(), rows)
    assert table.count("<tr>") == 2  # header + one category
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;" in table and NAME not in table
    assert "250 (1 of 4)" in table
    assert "<td>0.400</td><td>0.125</td><td>250 (1 of 4)</td>" in table  # recall at 1% by F1
    assert "0.900 [0.800, 1.000] from 4 good and 2 defective parts: few, read the interval" in table
    assert table.startswith('<div class="scroll">')  # scrolls in its box on a phone


def test_method_and_run_tables_escape_and_mark_the_primary() -> None:
    assert '<tr class="primary"><td>patch (primary)</td>' in method_table(_metrics())
    run = run_table(_metrics())
    assert "&lt;script&gt;" in run and "<script>" not in run and "torch 2" in run


def test_calibration_column_says_leave_one_out() -> None:
    from simclr_ad.report.summary import _calibration

    loo = {"method": "conformal", "n": 120, "source": "cross-fitted", "folds": 120}
    assert (
        _calibration({**loo, "target_fpr": 0.01})
        == "conformal, 120 leave-one-out good, target 0.01"
    )
    folds = {**loo, "folds": 5, "target_fpr": 0.01}
    assert _calibration(folds) == "conformal, 120 5-fold cross-fitted good, target 0.01"


def test_run_table_says_what_auto_chose_and_what_each_kind_of_defect_found() -> None:
    metrics = _metrics()
    candidates = [
        {"candidate": "base", "synthetic_recall": 0.5, "recall_by_family": {"speck": 0.25}},
        {"candidate": "image size 320", "synthetic_recall": 0.75},
    ]
    metrics["run"]["auto_selection"] = {
        "bolt": {"chosen": "base", "candidates": candidates},
        "nut": {"chosen": "image size 320", "candidates": candidates},  # an older bundle's row
    }
    run = run_table(metrics)
    assert (
        "bolt: base (synthetic recall: base 0.50, image size 320 0.75; found by kind: speck 0.25)"
        in run
    )
    assert "nut: image size 320 (synthetic recall: base 0.50, image size 320 0.75)" in run
    assert "off (settings as given)" in run_table(_metrics())
