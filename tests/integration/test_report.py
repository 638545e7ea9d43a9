"""The inspection report end to end: written by evaluate, rebuilt without the model, opened in
headless Chromium from disk."""

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from simclr_ad.cli import main
from tests.browser import CHROMIUM_ARGS, require_chromium
from tests.conftest import TINY_TRAIN

DETECTOR = ["--scorers", "patch,knn_h", "--coreset-ratio", "0.5", "--patch-stages", "1,2"]


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
        s.startswith("data:image/png;base64,") for s in structure.sources
    )
    assert not re.search(r"(src|href)=\"(https?:)?//", page.read_text()), "no network references"
    figures = sorted(p.name for p in (evaluation / "figures").glob("*.png"))
    assert len(figures) == len(structure.sources)
    assert {"bolt_roc.png", "fabric_confusion.png", "bolt_tsne.png", "training_loss.png"} <= set(
        figures
    )
    assert any(f.startswith("bolt_gallery_defect_") for f in figures)
    assert {"bolt_gallery_good_highest.png", "bolt_gallery_defect_lowest.png"} <= set(figures)
    assert sorted(p.name for p in (evaluation / "report_data").iterdir()) == [
        "bolt.npz",
        "fabric.npz",
        "run.json",
    ]
    ids = {tag[1] for tag in structure.tags}
    assert {"summary", "methods", "run", "per-category", "cat-bolt", "cat-fabric"} <= ids


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
            first = page.eval_on_selector_all(
                "#per-category tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
            )
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert widths and all(w > 0 for w in widths), widths
    assert rows == 2 and first == ["bolt", "fabric"]
    assert (tmp_path / "report.png").stat().st_size > 10_000
