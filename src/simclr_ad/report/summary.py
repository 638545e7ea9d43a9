"""The report's tables, as escaped HTML: per category, method comparison, what was run."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from simclr_ad.calibration import scores_kind
from simclr_ad.report.data import CategoryRows
from simclr_ad.report.verdict import false_alarms, parts_note


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(
    table_id: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] = (),
) -> str:
    """An HTML table in a box that scrolls sideways on a narrow screen; every cell is escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    classes = list(row_classes) or [""] * len(rows)
    body = "".join(
        (f'<tr class="{html.escape(css)}">' if css else "<tr>")
        + "".join(f"<td>{html.escape(c)}</td>" for c in row)
        + "</tr>"
        for row, css in zip(rows, classes, strict=True)
    )
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def per_category_table(metrics: Mapping[str, Any], rows: Mapping[str, CategoryRows]) -> str:
    """One row per category: the primary scorer at its calibrated threshold."""
    primary = metrics["primary"]
    header = [
        "category",
        "image AUROC [95% CI]",
        "pixel AUROC",
        "AUPRO",
        "F1",
        "precision",
        "recall",
        "trivial F1",
        "recall at 1% false alarms (test)",
        "false alarms / 1,000 good",
        "test good / defective",
        "threshold set by",
    ]
    body = []
    for category, entry in metrics["scorers"][primary]["categories"].items():
        image, pixel = entry["image"], entry["pixel"]
        ci = image.get("auroc_ci95")
        auroc = _num(image["auroc"])
        if ci:
            auroc += f" [{ci[0]:.3f}, {ci[1]:.3f}] {parts_note(image['n_good'], image['n_defect'])}"
        flagged, n_good = false_alarms(
            rows[category].labels, rows[category].scores[primary], float(image["threshold"])
        )
        rate = f"{1000 * flagged / n_good:.0f} ({flagged} of {n_good})" if n_good else "–"
        body.append(
            [
                category,
                auroc,
                _num(pixel["auroc"]),
                _num(pixel["aupro"]),
                _num(image["f1"]),
                _num(image["precision"]),
                _num(image["recall"]),
                _num(image["trivial_f1"]),
                _num((image.get("tpr_at_fpr") or {}).get("0.01")),
                rate,
                f"{image['n_good']} / {image['n_defect']}",
                _calibration(image.get("calibration")),
            ]
        )
    note = (
        '<p class="note">F1, precision, recall and false alarms at the threshold calibrated on '
        f"good training images only ({html.escape(primary)} scorer): cross-fitted scores "
        "(each image scored by a detector fitted without it) or a held-out split; never the "
        "test set. Trivial F1: flag every part. Recall at 1% false alarms: the share of defects "
        "above the test's own 1%-false-alarm point, the ranking's low-false-alarm end (not a "
        "deployable threshold). "
        "With few good test parts a false-alarm rate is coarse: see the counts.</p>"
    )
    return _table("per-category", header, body) + note


def _calibration(calibration: Mapping[str, Any] | None) -> str:
    """The rule and the number of good scores behind a threshold, in a few words."""
    if not calibration:
        return "–"
    source = scores_kind(
        calibration.get("source", "held-out"), calibration.get("folds", 0), calibration["n"]
    )
    rule = calibration["method"]
    return f"{rule}, {calibration['n']} {source} good, target {calibration['target_fpr']:g}"


def method_table(metrics: Mapping[str, Any]) -> str:
    """One row per scorer: means over categories (the primary scorer in bold)."""
    header = ["scorer", "image AUROC", "pixel AUROC", "AUPRO", "F1", "precision", "recall"]
    body: list[list[str]] = []
    classes: list[str] = []
    for name, entry in metrics["scorers"].items():
        images = [m["image"] for m in entry["categories"].values()]
        mean = entry["mean"]

        def avg(key: str, images: list[dict[str, Any]] = images) -> str:
            values = [i[key] for i in images if i.get(key) is not None]
            return _num(sum(values) / len(values)) if values else "–"

        label = f"{name} (primary)" if name == metrics["primary"] else name
        classes.append("primary" if name == metrics["primary"] else "")
        body.append(
            [
                label,
                _num(mean["image_auroc"]),
                _num(mean["pixel_auroc"]),
                _num(mean["aupro"]),
                _num(mean["f1"]),
                avg("precision"),
                avg("recall"),
            ]
        )
    return _table("methods-table", header, body, classes) + (
        '<p class="note">Means over categories; pixel metrics only for scorers with maps.</p>'
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _shapes(shapes: Mapping[str, Sequence[int]] | None) -> str:
    if not shapes:
        return "–"
    return "; ".join(f"{c} {hw[0]} × {hw[1]}" for c, hw in shapes.items())


def _auto(run: Mapping[str, Any]) -> str:
    """Per category the chosen candidate, every candidate's synthetic recall and the chosen
    one's recall per kind of synthetic defect (bundles before the kinds were recorded: none)."""
    selection = run.get("auto_selection") or {}
    if not selection:
        return "off (settings as given)"
    parts = []
    for category, entry in selection.items():
        rows = entry["candidates"]
        figures = ", ".join(f"{row['candidate']} {row['synthetic_recall']:.2f}" for row in rows)
        chosen: Mapping[str, Any] = next(
            (row for row in rows if row["candidate"] == entry["chosen"]), {}
        )
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in chosen.get("recall_by_family", {}).items())
        by_kind = f"; found by kind: {kinds}" if kinds else ""
        parts.append(f"{category}: {entry['chosen']} (synthetic recall: {figures}{by_kind})")
    return "; ".join(parts)


def run_table(metrics: Mapping[str, Any]) -> str:
    """Config highlights, model and data identity, versions, training time."""
    run = metrics.get("run", {})
    config = metrics.get("config", {})
    timing = metrics.get("timing", {})
    versions = ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
    items = [
        ("model bundle", run.get("model_path", "–")),
        ("model identity (SHA-256 of model.safetensors)", run.get("model_sha256", "–")),
        ("training data identity (hash of the file list)", run.get("train_files_hash", "–")),
        ("test data identity (hash of the file list)", run.get("test_files_hash", "–")),
        ("data root", str(config.get("data", "–"))),
        ("backbone / weights", f"{config.get('backbone', '–')} / {config.get('weights', '–')}"),
        ("image size", str(config.get("image_size", "–"))),
        ("input shape per category (H × W)", _shapes(run.get("input_shapes"))),
        ("auto choice per category (synthetic defects, no test data)", _auto(run)),
        ("SimCLR epochs", str(run.get("epochs_trained", config.get("epochs", "–")))),
        ("training time (incl. fitting the detector)", _duration(run.get("training_seconds"))),
        ("scoring time", f"{timing.get('ms_per_image', '–')} ms/image on {timing.get('device')}"),
        ("library versions", versions or "–"),
    ]
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items
    )
    return (
        f'<div class="scroll"><table id="run-table" class="kv"><tbody>{body}</tbody></table></div>'
    )


def highest_good_table(
    table_id: str, entries: Sequence[Mapping[str, Any]], threshold: float
) -> str:
    """The good training images that score highest, with what the threshold would be without
    each and those above it (``calibration.highest_good``); empty without them."""
    if not entries:
        return ""
    rows = [
        [
            e["path"],
            f"{e['score']:.4g}",
            f"{e['score'] / threshold:.2f}" if threshold > 0 else "–",
            "–" if e["threshold_without"] is None else f"{e['threshold_without']:.4g}",
        ]
        for e in entries
    ]
    header = ["good training image", "score", "× threshold", "threshold without it and those above"]
    note = (
        '<p class="note">The good training images that score highest, each scored by a detector '
        "that never saw it: they set the threshold. If one of them is not a good part after all "
        "(a defect nobody saw, dirt, a wrong part), take it out of the good images and train "
        "again: the threshold falls to about the last column, and more defects are flagged.</p>"
    )
    return note + _table(table_id, header, rows)
