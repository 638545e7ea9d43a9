"""``EVAL/report.html``: one self-contained page (figures inlined as base64 PNG, inline CSS, no
network), built from ``metrics.json``, ``scores.csv`` and ``report_data/`` only, plus the same
figures as PNG files in ``EVAL/figures/``. Every text from data or files is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from simclr_ad.errors import UserError
from simclr_ad.report.charts import (
    curve_figures,
    embedding_figures,
    false_alarms,
    gallery_figures,
)
from simclr_ad.report.data import (
    DATA_DIR,
    DEFECT_LOWEST,
    GOOD_HIGHEST,
    CategoryRows,
    load_category_data,
    read_run_data,
    read_scores_csv,
)
from simclr_ad.report.figures import loss_figure
from simclr_ad.report.summary import method_table, per_category_table, run_table

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
DPI = 90
WORST_CASES = (f"gallery_{GOOD_HIGHEST}", f"gallery_{DEFECT_LOWEST}")

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif;
       margin: 0 auto; max-width: 1400px; padding: 1rem 2rem 4rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem;
     margin-top: 2.5rem; } h3 { margin-top: 1.6rem; color: #333; }
.meta, .note { color: #555; font-size: .9rem; }
nav { background: #f6f6f6; padding: .5rem 1.2rem; border-radius: 6px; display: inline-block; }
nav ol { margin: .3rem 0; padding-left: 1.2rem; } nav li { margin: .1rem 0; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.primary td { font-weight: 600; }
table.kv th { text-align: left; font-weight: normal; } table.kv td { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; text-align: center; }
pre { background: #f6f6f6; padding: .6rem; font-size: .8rem; overflow-x: auto; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def _read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path.parent} is not an evaluation folder: {path.name} is missing")
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics["scorers"][metrics["primary"]]["categories"], dict):
            raise TypeError("no categories")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a simclr-ad metrics file: {exc}") from None
    return dict(metrics)


class FigureWriter:
    """Saves figures as ``figures/<name>.png`` and returns their inline ``<figure>`` HTML."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, caption: str, fig: Figure) -> str:
        path = self.folder / f"{name}.png"
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
        self.names.append(path.name)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        text = html.escape(caption)
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>"
        )


def _category_section(
    category: str,
    rows: CategoryRows,
    metrics: dict[str, Any],
    eval_dir: Path,
    write: FigureWriter,
) -> str:
    primary = metrics["primary"]
    threshold = float(metrics["scorers"][primary]["categories"][category]["image"]["threshold"])
    patch = metrics["scorers"].get("patch", {}).get("categories", {}).get(category)
    patch_threshold = float(patch["image"]["threshold"]) if patch else None
    data = load_category_data(eval_dir / DATA_DIR / f"{category}.npz")
    if list(data.paths) != rows.paths:
        raise UserError(
            f"{eval_dir / DATA_DIR / (category + '.npz')} does not match scores.csv "
            "(another evaluation?); rerun evaluate"
        )
    slug, anchor = _slug(category), f"cat-{_slug(category)}"
    curves = curve_figures(rows, primary, threshold)
    curves |= embedding_figures(rows, data)
    gallery = gallery_figures(rows, data, primary, threshold, patch_threshold)
    flagged, n_good = false_alarms(rows.labels, rows.scores[primary], threshold)
    name = html.escape(category)
    parts = [
        f'<section id="{anchor}"><h2>{name}</h2>',
        f'<p class="meta">{len(rows.paths)} test images; {primary} scorer, threshold '
        f"{threshold:.4g} (calibrated on held-out good images); {flagged} of {n_good} good "
        "test parts flagged.</p>",
        f'<h3 id="{anchor}-curves">Curves, scores and embeddings</h3><div class="grid">',
        *(write(f"{slug}_{k}", f"{category}: {title}", fig) for k, (title, fig) in curves.items()),
        "</div>",
        f'<h3 id="{anchor}-gallery">Gallery</h3>',
        '<p class="note">Heatmap: patch anomaly map, from the usual level (dark) to the '
        "calibrated threshold (bright). Worst cases are shown next to their nearest good "
        "training image (by global embedding h).</p>",
        '<div class="grid">',
        *(
            write(f"{slug}_{k}", f"{category}: {title}", fig)
            for k, (title, fig) in gallery.items()
            if k not in WORST_CASES
        ),
        "</div>",
        f'<h3 id="{anchor}-worst">Worst cases</h3><div class="grid">',
        *(
            write(f"{slug}_{k}", f"{category}: {title}", fig)
            for k, (title, fig) in gallery.items()
            if k in WORST_CASES
        ),
        "</div></section>",
    ]
    return "\n".join(parts)


def _training_html(history: list[dict[str, float]], write: FigureWriter) -> str:
    if not history:
        return '<p class="note">No SimCLR epochs in this run (encoder used as initialised).</p>'
    fig = loss_figure([r["epoch"] for r in history], [r["loss"] for r in history])
    return (
        f'<div class="grid">{write("training_loss", "Training loss (all categories)", fig)}</div>'
    )


def _toc(categories: list[str]) -> str:
    items = [
        '<li><a href="#summary">Summary</a></li>',
        '<li><a href="#methods">Method comparison</a></li>',
        '<li><a href="#run">What was run</a></li>',
    ]
    for c in categories:
        a = f"cat-{_slug(c)}"
        items.append(
            f'<li><a href="#{a}">{html.escape(c)}</a>: <a href="#{a}-curves">curves</a>, '
            f'<a href="#{a}-gallery">gallery</a>, <a href="#{a}-worst">worst cases</a></li>'
        )
    return f"<nav><strong>Contents</strong><ol>{''.join(items)}</ol></nav>"


def build_report(eval_dir: Path) -> Path:
    """Write ``eval_dir/report.html`` and ``eval_dir/figures/*.png``; return the page's path."""
    started = time.perf_counter()
    metrics = _read_metrics(eval_dir / "metrics.json")
    primary = metrics["primary"]
    categories = list(metrics["scorers"][primary]["categories"])
    rows = read_scores_csv(eval_dir / "scores.csv", list(metrics["scorers"]))
    missing = [c for c in categories if c not in rows]
    if missing:
        raise UserError(f"{eval_dir / 'scores.csv'} has no rows for {', '.join(missing)}")
    write = FigureWriter(eval_dir / FIGURES_DIR)
    sections = [_category_section(c, rows[c], metrics, eval_dir, write) for c in categories]
    history = read_run_data(eval_dir / DATA_DIR / "run.json")
    body = [
        "<h1>Inspection report</h1>",
        f'<p class="meta">Evaluation {html.escape(str(eval_dir))}: {len(categories)} '
        f"categories, primary scorer {html.escape(primary)}. Thresholds come from held-out good "
        "training images; the test set was only scored.</p>",
        _toc(categories),
        '<section id="summary"><h2>Summary</h2>',
        per_category_table(metrics, rows),
        "</section>",
        '<section id="methods"><h2>Method comparison</h2>',
        method_table(metrics),
        "</section>",
        '<section id="run"><h2>What was run</h2>',
        run_table(metrics),
        "<h3>Training</h3>",
        _training_html(history, write),
        "<details><summary>Full configuration</summary><pre>",
        html.escape(json.dumps({"config": metrics.get("config"), **_detector(metrics)}, indent=2)),
        "</pre></details></section>",
        *sections,
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>simclr-ad report: {html.escape(', '.join(categories))}</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    path = eval_dir / REPORT_FILE
    partial = path.with_name(f".{REPORT_FILE}.{os.getpid()}")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    log.info("report with %d figures in %.1f s", len(write.names), time.perf_counter() - started)
    return path


def _detector(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"detector": metrics["detector"]} if "detector" in metrics else {}
