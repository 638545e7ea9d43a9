"""``EVAL/report.html``: one self-contained page (images inlined as base64, inline CSS, no
network), built from ``metrics.json``, ``scores.csv`` and ``report_data/`` only, plus the same
images as files in ``EVAL/figures/``: charts as PNG, gallery photos as WebP, masks as PNG.
Every text from data or files is HTML-escaped. The page opens with the verdict, fits a phone's
width (viewport, wrapping grids, tables that scroll in their box) and keeps a category's share
to a few hundred KB.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from PIL import Image

from simclr_ad.errors import UserError
from simclr_ad.report.charts import curve_figures, embedding_figures
from simclr_ad.report.data import (
    DATA_DIR,
    CategoryRows,
    load_category_data,
    read_run_data,
    read_scores_csv,
)
from simclr_ad.report.figures import loss_figure
from simclr_ad.report.gallery import (
    WORST_CASES,
    Case,
    cases_html,
    colour_bar_html,
    gallery_cases,
    role_title,
)
from simclr_ad.report.summary import (
    highest_good_table,
    method_table,
    per_category_table,
    run_table,
)
from simclr_ad.report.verdict import Verdict, calibration_sentence, judge, verdict_html

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
DPI = 90
CHART_COLOURS = 256  # charts are line art: a palette PNG of this many colours looks the same

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif;
       margin: 0 auto; max-width: 1400px; padding: 1rem 2rem 4rem; color: #222;
       line-height: 1.4; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem;
     margin-top: 2.5rem; } h3 { margin-top: 1.6rem; color: #333; } h4 { margin: 1rem 0 .4rem; }
.meta, .note { color: #555; font-size: .9rem; }
nav { background: #f6f6f6; padding: .5rem 1.2rem; border-radius: 6px; display: inline-block;
      margin-top: 1rem; }
nav ol { margin: .3rem 0; padding-left: 1.2rem; } nav li { margin: .1rem 0; }
.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.primary td { font-weight: 600; }
table.kv th { text-align: left; font-weight: normal; }
table.kv td { text-align: left; overflow-wrap: anywhere; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #444; text-align: center; }
pre { background: #f6f6f6; padding: .6rem; font-size: .8rem; overflow-x: auto; }
#verdict h2 { margin-top: 1.2rem; }
.verdicts { display: grid; gap: .8rem;
            grid-template-columns: repeat(auto-fill, minmax(min(100%, 24rem), 1fr)); }
.verdict { border-left: .5rem solid; border-radius: 6px; padding: .4rem 1rem; }
.verdict h3 { margin: .3rem 0; } .verdict ul { margin: .3rem 0; padding-left: 0; }
.verdict li { list-style: none; margin: .25rem 0; }
.verdict li.detail { color: #444; font-size: .9rem; padding-left: 1.4rem; }
.mark { display: inline-block; width: 1.2rem; font-weight: 700; }
.verdict-pass { border-color: #2e7d32; background: #edf7ee; }
.verdict-warn { border-color: #b26a00; background: #fff5e0; }
.verdict-fail { border-color: #c62828; background: #fdecea; }
.verdict-unknown { border-color: #777; background: #f3f3f3; }
.check-yes { color: #1b5e20; } .check-no { color: #b71c1c; font-weight: 600; }
.check-unconfirmed { color: #8a5300; } .check-unknown { color: #555; }
.gallery { display: grid; gap: 1rem;
           grid-template-columns: repeat(auto-fill, minmax(min(100%, 19rem), 1fr)); }
.case-title { margin: 0 0 .2rem; font-size: .9rem; overflow-wrap: anywhere; }
.panels { display: grid; grid-template-columns: repeat(3, 1fr); gap: .3rem; }
.panels img { width: 100%; image-rendering: auto; }
.wrong { color: #b71c1c; font-weight: 700; }
.colour-bar { max-width: 24rem; margin: .4rem 0 1rem; font-size: .8rem; color: #444; }
.colour-bar .bar { height: .8rem; border: 1px solid #ccc; }
.colour-bar .ticks { display: flex; justify-content: space-between; }
@media (max-width: 600px) { body { padding: .5rem .8rem 3rem; } h1 { font-size: 1.5rem; }
  nav { display: block; } }
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
    """Saves images under ``figures/`` and returns what the page shows of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, caption: str, fig: Figure) -> str:
        """A chart as ``figures/<name>.png``; its inline ``<figure>`` HTML."""
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="png")
        chart = Image.open(buffer).convert("RGB").quantize(CHART_COLOURS)
        encoded = io.BytesIO()
        chart.save(encoded, format="PNG", optimize=True)
        source = self.save(f"{name}.png", encoded.getvalue(), "image/png")
        text = html.escape(caption)
        return f'<figure><img src="{source}" alt="{text}"><figcaption>{text}</figcaption></figure>'

    def save(self, name: str, data: bytes, media_type: str) -> str:
        """``data`` as ``figures/<name>``; its ``data:`` URI."""
        (self.folder / name).write_bytes(data)
        self.names.append(name)
        return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _gallery_html(slug: str, groups: dict[str, list[Case]], write: FigureWriter) -> list[str]:
    """Each role's heading and cases, the pictures saved as ``figures/<slug>_<picture>``."""
    parts = []
    for role, cases in groups.items():
        sources = {
            p.name: write.save(f"{slug}_{p.name}", p.data, p.media_type)
            for case in cases
            for p in case.pictures
        }
        parts.append(f"<h4>{html.escape(role_title(role))}</h4>{cases_html(cases, sources)}")
    return parts


def _category_section(
    category: str,
    rows: CategoryRows,
    metrics: dict[str, Any],
    verdict: Verdict,
    eval_dir: Path,
    write: FigureWriter,
) -> str:
    primary = metrics["primary"]
    threshold = verdict.threshold
    patch = metrics["scorers"].get("patch", {}).get("categories", {}).get(category)
    highest = metrics["scorers"][primary]["categories"][category]["image"].get("highest_good", [])
    map_threshold = float(patch["image"]["threshold"]) if patch else threshold
    data = load_category_data(eval_dir / DATA_DIR / f"{category}.npz")
    if list(data.paths) != rows.paths:
        raise UserError(
            f"{eval_dir / DATA_DIR / (category + '.npz')} does not match scores.csv "
            "(another evaluation?); rerun evaluate"
        )
    slug, anchor = _slug(category), f"cat-{_slug(category)}"
    curves = curve_figures(rows, primary, threshold)
    curves |= embedding_figures(rows, data)
    groups = gallery_cases(rows, data, primary, threshold, map_threshold)
    examples = {r: c for r, c in groups.items() if r not in WORST_CASES}
    worst = {r: c for r, c in groups.items() if r in WORST_CASES}
    name = html.escape(category)
    parts = [
        f'<section id="{anchor}"><h2>{name}</h2>',
        f'<p class="meta">{len(rows.paths)} test images; {html.escape(primary)} scorer. '
        f"{html.escape(calibration_sentence(verdict))} {verdict.false_alarms} of "
        f"{verdict.n_good} good test parts flagged.</p>",
        highest_good_table(f"{anchor}-highest-good", highest, threshold),
        f'<h3 id="{anchor}-curves">Curves, scores and embeddings</h3><div class="grid">',
        *(write(f"{slug}_{k}", f"{category}: {title}", fig) for k, (title, fig) in curves.items()),
        "</div>",
        f'<h3 id="{anchor}-gallery">Gallery</h3>',
        '<p class="note">Anomaly map over the image, coloured relative to the threshold on the '
        "scale of <code>predict --heatmaps</code> and the service:</p>",
        colour_bar_html(),
        *_gallery_html(slug, examples, write),
        f'<h3 id="{anchor}-worst">Worst cases</h3>',
        '<p class="note">Each beside its nearest good training image (by global embedding h).</p>',
        *_gallery_html(slug, worst, write),
        "</section>",
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
        '<li><a href="#verdict">Verdict</a></li>',
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


def evaluation_date(metrics: dict[str, Any], metrics_path: Path) -> str:
    """When the evaluation ran: ``metrics.json``'s ``evaluated`` time (UTC), or for evaluations
    that did not record it, the file's modification time, said so."""
    recorded = metrics.get("evaluated")
    if isinstance(recorded, str):
        try:
            moment = datetime.datetime.fromisoformat(recorded)
        except ValueError:
            return recorded
        return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mtime = datetime.datetime.fromtimestamp(metrics_path.stat().st_mtime, tz=datetime.timezone.utc)
    return mtime.strftime("%Y-%m-%d %H:%M UTC") + " (metrics.json last written)"


def build_report(eval_dir: Path) -> Path:
    """Write ``eval_dir/report.html`` and ``eval_dir/figures/*``; return the page's path."""
    started = time.perf_counter()
    metrics = _read_metrics(eval_dir / "metrics.json")
    primary = metrics["primary"]
    entries = metrics["scorers"][primary]["categories"]
    categories = list(entries)
    rows = read_scores_csv(eval_dir / "scores.csv", list(metrics["scorers"]))
    missing = [c for c in categories if c not in rows]
    if missing:
        raise UserError(f"{eval_dir / 'scores.csv'} has no rows for {', '.join(missing)}")
    verdicts = [
        judge(c, entries[c]["image"], labels=rows[c].labels, scores=rows[c].scores[primary])
        for c in categories
    ]
    write = FigureWriter(eval_dir / FIGURES_DIR)
    sections = [
        _category_section(c, rows[c], metrics, v, eval_dir, write)
        for c, v in zip(categories, verdicts, strict=True)
    ]
    history = read_run_data(eval_dir / DATA_DIR / "run.json")
    body = [
        "<h1>Inspection report</h1>",
        f'<p class="meta">Evaluation {html.escape(str(eval_dir))}: {len(categories)} '
        f"categories, primary scorer {html.escape(primary)}. Thresholds come from good training "
        "images the detector never saw (cross-fitted or held out); the test set was only "
        "scored.</p>",
        verdict_html(verdicts, evaluation_date(metrics, eval_dir / "metrics.json")),
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
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>simclr-ad report: {html.escape(', '.join(categories))}</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    path = eval_dir / REPORT_FILE
    partial = path.with_name(f".{REPORT_FILE}.{os.getpid()}")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    log.info("report with %d images in %.1f s", len(write.names), time.perf_counter() - started)
    return path


def _detector(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"detector": metrics["detector"]} if "detector" in metrics else {}
