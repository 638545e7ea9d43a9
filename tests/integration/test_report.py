"""The inspection report end to end: written by evaluate, rebuilt without the model, opened in
headless Chromium from disk at a desktop's and a phone's width; its verdict on hand-made
evaluations that beat and that do not beat flagging everything; its weight per category."""

import csv
import datetime
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from simclr_ad.cli import main
from simclr_ad.report.page import build_report
from tests.browser import CHROMIUM_ARGS, require_chromium
from tests.conftest import TINY_TRAIN
from tests.report_evaluation import beating, flag_everything, write_evaluation

DETECTOR = ["--scorers", "patch,knn_h", "--coreset-ratio", "0.5", "--patch-stages", "1,2"]
PHONE = {"width": 390, "height": 844}
# bytes of one category's section: the tiny fixture's 32 px images; a real category's 128 px
TINY_CATEGORY_BYTES = 150_000
CATEGORY_BYTES = 1_000_000


@pytest.fixture(scope="module")
def evaluation(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SimCLR epoch (so there is a loss curve), then evaluate (which writes the report)."""
    base = tmp_path_factory.mktemp("report")
    run, out = base / "run", base / "eval"
    train = ["-q", "train", "--data", str(tiny_data), "--out", str(run), *TINY_TRAIN, *DETECTOR]
    assert main([*train, "--epochs", "1"]) == 0
    evaluate = ["-q", "evaluate", "--model", str(run / "model"), "--data", str(tiny_data)]
    assert main([*evaluate, "--out", str(out), "--device", "cpu"]) == 0
    return out


class _Structure(HTMLParser):
    """Tags with their id/class/alt, and the images' sources, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, str, str, str]] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a.get("id") or "", a.get("class") or "", a.get("alt") or ""))
        if tag == "img":
            self.sources.append(a.get("src") or "")


def _structure(page: Path) -> _Structure:
    parser = _Structure()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_evaluate_writes_a_self_contained_report(evaluation: Path, capsys) -> None:
    page = evaluation / "report.html"
    structure = _structure(page)
    assert structure.sources and all(
        re.match(r"data:image/(png|webp);base64,", s) for s in structure.sources
    )
    assert not re.search(r"(src|href)=\"(https?:)?//", page.read_text()), "no network references"
    figures = sorted(p.name for p in (evaluation / "figures").iterdir())
    assert len(figures) == len(structure.sources)  # every picture of the page, as a file
    assert {"bolt_roc.png", "fabric_confusion.png", "bolt_tsne.png", "training_loss.png"} <= set(
        figures
    )
    for kind in ("image.webp", "map.webp", "truth.png"):
        assert any(re.fullmatch(rf"bolt_\d\d_defect_\w+_{kind}", f) for f in figures), kind
    for role in ("good_highest", "defect_lowest"):
        assert any(re.fullmatch(rf"fabric_\d\d_{role}_nearest.webp", f) for f in figures), role
    assert sorted(p.name for p in (evaluation / "report_data").iterdir()) == [
        "bolt.npz",
        "fabric.npz",
        "run.json",
    ]
    ids = {tag[1] for tag in structure.tags}
    assert {"verdict", "summary", "methods", "run", "per-category", "cat-bolt", "cat-fabric"} <= ids
    assert next(t[1] for t in structure.tags if t[0] == "section") == "verdict"  # first
    evaluated = json.loads((evaluation / "metrics.json").read_text())["evaluated"]
    assert datetime.datetime.fromisoformat(evaluated).utcoffset() == datetime.timedelta(0)


def test_the_report_lists_the_good_training_images_behind_the_threshold(
    evaluation: Path,
) -> None:
    """The highest good training scores of val_scores.csv, in metrics.json and in a table of the
    category's section, highest first."""
    with open(evaluation / "val_scores.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["category"] == "bolt"]
    top = sorted(rows, key=lambda r: -float(r["patch"]))[:5]
    metrics = json.loads((evaluation / "metrics.json").read_text())
    listed = metrics["scorers"]["patch"]["categories"]["bolt"]["image"]["highest_good"]
    assert [g["path"] for g in listed] == [r["path"] for r in top]
    assert [g["score"] for g in listed] == pytest.approx([float(r["patch"]) for r in top], 1e-5)
    table = re.search(
        r'<table id="cat-bolt-highest-good">.*?</table>', (evaluation / "report.html").read_text()
    )
    assert table is not None
    assert re.findall(r"<tr><td>([^<]+)</td>", table.group(0)) == [r["path"] for r in top]


def _category_bytes(page: Path) -> dict[str, int]:
    """Bytes of each category's section of the page."""
    text = page.read_text(encoding="utf-8")
    sections = re.finditer(r'<section id="cat-([^"]+)">.*?</section>', text, re.S)
    return {m.group(1): len(m.group(0).encode("utf-8")) for m in sections}


def test_a_category_weighs_little(evaluation: Path) -> None:
    sizes = _category_bytes(evaluation / "report.html")
    assert set(sizes) == {"bolt", "fabric"}
    assert all(size < TINY_CATEGORY_BYTES for size in sizes.values()), sizes


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report on a category that beats flagging everything (pill: 100 good and 48 defective
    parts at 128 px, four defect types) and one that flags every part (fabric)."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("verdicts") / "eval"
    write_evaluation(folder, {"pill": beating(rng), "fabric": flag_everything(rng)})
    return build_report(folder)


def test_a_real_sized_category_stays_under_a_megabyte(verdicts: Path) -> None:
    sizes = _category_bytes(verdicts)
    assert sizes["pill"] < CATEGORY_BYTES, sizes
    structure = _structure(verdicts)
    assert sum(s.startswith("data:image/webp") for s in structure.sources) >= 30  # the photos


def test_report_rebuilds_without_the_model(evaluation: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "eval"
    shutil.copytree(evaluation, copy)
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "figures")
    model = evaluation.parent / "run" / "model"
    model.rename(model.with_name("hidden"))  # the report reads stored data only
    try:
        assert main(["-q", "report", "--eval", str(copy)]) == 0
    finally:
        model.with_name("hidden").rename(model)
    assert capsys.readouterr().out.strip() == f"report: {copy / 'report.html'}"
    before, after = _structure(evaluation / "report.html"), _structure(copy / "report.html")
    assert after.tags == before.tags
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted(
        p.name for p in (evaluation / "figures").iterdir()
    )


def test_report_bad_eval_folder(tmp_path: Path, capsys) -> None:
    assert main(["report", "--eval", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing is not a folder" in err
    assert main(["report", "--eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an evaluation folder: metrics.json is missing" in err
    (tmp_path / "metrics.json").write_text("{not json")
    assert main(["report", "--eval", str(tmp_path)]) == 2
    assert "is not a simclr-ad metrics file" in capsys.readouterr().err


def test_evaluate_keeps_an_existing_report(evaluation: Path, tiny_data: Path, capsys) -> None:
    folder = evaluation.parent / "other"
    folder.mkdir()
    (folder / "report.html").write_text("mine")
    argv = ["evaluate", "--model", str(evaluation.parent / "run" / "model")]
    assert main([*argv, "--data", str(tiny_data), "--out", str(folder)]) == 2
    assert "already holds report.html" in capsys.readouterr().err
    assert (folder / "report.html").read_text() == "mine"


@pytest.mark.browser
def test_report_opens_in_headless_chromium(evaluation: Path, tmp_path: Path) -> None:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((evaluation / "report.html").resolve().as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            rows = page.eval_on_selector_all("#per-category tbody tr", "rows => rows.length")
            date = page.inner_text("#verdict .meta")
            first = page.eval_on_selector_all(
                "#per-category tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
            )
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            page.set_viewport_size(PHONE)
            phone_fits = _fits(page)
        finally:
            browser.close()
    assert widths and all(w > 0 for w in widths), widths
    assert rows == 2 and first == ["bolt", "fabric"]
    assert re.match(r"Evaluated \d{4}-\d\d-\d\d \d\d:\d\d UTC\.", date)
    assert phone_fits
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _fits(page) -> bool:  # type: ignore[no-untyped-def]
    """No horizontal scrolling: the page is no wider than the window."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.browser
def test_report_verdict_on_top_in_words_and_colour_and_fits_a_phone(verdicts: Path) -> None:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE)
            page.goto(verdicts.resolve().as_uri())
            page.wait_for_load_state("load")
            viewport = page.get_attribute('meta[name="viewport"]', "content")
            fits = _fits(page)
            first_heading = page.inner_text("h2")
            tops = {
                s: page.eval_on_selector(s, "e => e.getBoundingClientRect().top")
                for s in ("#verdict", "nav", "#summary", "#cat-pill")
            }
            cards = page.eval_on_selector_all(
                ".verdict",
                """cards => cards.map(c => [c.dataset.category, c.innerText,
                    getComputedStyle(c).borderLeftColor])""",
            )
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            page.set_viewport_size({"width": 1400, "height": 900})
            wide = _fits(page)
        finally:
            browser.close()
    assert viewport is not None and "width=device-width" in viewport
    assert fits and wide
    assert first_heading == "Verdict"
    assert tops["#verdict"] < tops["nav"] < tops["#summary"] < tops["#cat-pill"]
    (pill, pill_text, pill_colour), (fabric, fabric_text, fabric_colour) = cards
    assert (pill, fabric) == ("pill", "fabric")
    assert "Beats flagging everything" in pill_text
    assert "Meets the false-alarm target: 0 of 100 good test parts flagged" in pill_text
    assert "conformal quantile of 150 leave-one-out good scores" in pill_text
    assert "set by 150 good training images" in pill_text
    assert "Does not beat flagging everything" in fabric_text
    assert "Misses the false-alarm target: 10 of 10 good test parts flagged" in fabric_text
    assert "from 10 good and 12 defective parts: few, read the interval with care" in fabric_text
    assert pill_colour == "rgb(46, 125, 50)" and fabric_colour == "rgb(198, 40, 40)"  # green, red
    assert widths and all(w > 0 for w in widths)  # WebP and PNG decode
