"""auto's choice among candidates: one judging per input size, the recall-then-AUROC rule."""

from typing import Any

import pytest
import torch

from simclr_ad import selection
from simclr_ad.detector import DetectorSettings
from simclr_ad.selection import Candidate, choose

SETTINGS = DetectorSettings(image_size=512, score_rule="max")
FREE = {"image_size", "score_rule"}
# the machinery takes any candidates: here one of each kind, a rule and a size
CANDIDATES = (
    Candidate("base", {}),
    Candidate("top 1%", {"score_rule": "topk_mean"}),
    Candidate("image size 320", {"image_size": 320}),
)


def _fake_judge(
    figures: dict[tuple[int, str], tuple[float, float]], calls: list[tuple[int, list[str]]]
) -> Any:
    """A judge that returns (recall, AUROC) per (input size, rule) for 40 defects."""

    def judge(embedder, pixels, settings, rules, device):  # type: ignore[no-untyped-def]
        size = int(pixels.shape[-1])
        calls.append((size, list(rules)))
        return {
            rule: {
                "synthetic_recall": figures[(size, rule)][0],
                "synthetic_auroc": figures[(size, rule)][1],
                "n_defects": 40,
            }
            for rule in rules
        }

    return judge


def _choose(
    monkeypatch: pytest.MonkeyPatch, figures: dict[tuple[int, str], tuple[float, float]]
) -> tuple[str, list[tuple[int, list[str]]]]:
    calls: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(selection, "judge", _fake_judge(figures, calls))
    monkeypatch.setattr(selection, "CANDIDATES", CANDIDATES)

    def decode(size: int) -> torch.Tensor:
        return torch.zeros(2, 3, size, size, dtype=torch.uint8)

    best, rows = choose(None, decode, SETTINGS, FREE, torch.device("cpu"))  # type: ignore[arg-type]
    assert [row["candidate"] for row in rows] == [c.name for c in CANDIDATES]
    return best.name, calls


def test_candidates_of_one_input_size_are_judged_from_one_set_of_maps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures = {(512, "max"): (0.5, 0.9), (512, "topk_mean"): (0.5, 0.9), (320, "max"): (0.5, 0.9)}
    _, calls = _choose(monkeypatch, figures)
    assert calls == [(512, ["max", "topk_mean"]), (320, ["max"])]


@pytest.mark.parametrize(
    ("top1", "small", "chosen"),
    [
        ((0.60, 0.90), (0.50, 0.99), 1),  # more than one defect more found: recall wins
        ((0.525, 0.95), (0.50, 0.80), 1),  # within one defect (1/40): the higher AUROC
        ((0.525, 0.80), (0.50, 0.80), 0),  # within one defect, AUROC no higher: the base stays
        ((0.40, 0.99), (0.45, 0.99), 0),  # fewer found: never chosen for its AUROC
        ((0.50, 0.90), (0.70, 0.90), 2),
    ],
)
def test_the_choice_is_recall_then_auroc_then_the_earlier_candidate(
    monkeypatch: pytest.MonkeyPatch,
    top1: tuple[float, float],
    small: tuple[float, float],
    chosen: int,
) -> None:
    figures = {(512, "max"): (0.5, 0.9), (512, "topk_mean"): top1, (320, "max"): small}
    name, _ = _choose(monkeypatch, figures)
    assert name == CANDIDATES[chosen].name


def test_the_shipped_candidates_leave_the_score_rule_alone() -> None:
    assert all("score_rule" not in c.changes for c in selection.CANDIDATES)
    assert [c.name for c in selection.usable_candidates({"epochs"})] == ["base"]
    assert len(selection.usable_candidates({"epochs", "image_size"})) == 2
