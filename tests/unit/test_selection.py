"""auto's choice among candidates: one judging per input size, the paired recall-then-AUROC
rule."""

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from simclr_ad import selection
from simclr_ad.detector import DetectorSettings
from simclr_ad.selection import Candidate, Scoring, choose, finds_more

SETTINGS = DetectorSettings(image_size=512, score_rule="max")
FREE = {"image_size", "score_rule", "positional"}
# the machinery takes any candidates: here a rule, a size and the positional standardisation
CANDIDATES = (
    Candidate("base", {}),
    Candidate("top 1%", {"score_rule": "topk_mean"}),
    Candidate("image size 320", {"image_size": 320}),
    Candidate("positional", {"positional": True}),
)
N = 40  # synthetic defects


def first(k: int) -> list[int]:
    """Found: the first k of the N defects (nested sets: the only discordant ones are extra)."""
    return [1] * k + [0] * (N - k)


Figures = dict[tuple[int, str], tuple[list[int], float]]  # (size, rule or "positional")
Calls = list[tuple[int, list[Scoring]]]


def _fake_judge(figures: Figures, calls: Calls) -> Any:
    """A judge that returns (found per defect, AUROC) per (input size, rule or "positional")."""

    def judge(embedder, pixels, settings, scorings, device):  # type: ignore[no-untyped-def]
        size = int(pixels.shape[-1])
        calls.append((size, list(scorings)))
        keys = {s: (size, "positional" if s.positional else s.rule) for s in scorings}
        return {
            s: {
                "synthetic_recall": sum(figures[keys[s]][0]) / N,
                "synthetic_auroc": figures[keys[s]][1],
                "found": figures[keys[s]][0],
                "n_defects": N,
            }
            for s in scorings
        }

    return judge


def _choose(monkeypatch: pytest.MonkeyPatch, figures: Figures) -> tuple[str, Calls]:
    calls: Calls = []
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
    same = (first(20), 0.9)
    figures = {(512, "max"): same, (512, "topk_mean"): same, (320, "max"): same}
    _, calls = _choose(monkeypatch, figures | {(512, "positional"): same})
    assert calls == [
        (512, [Scoring("max"), Scoring("topk_mean"), Scoring("max", positional=True)]),
        (320, [Scoring("max")]),
    ]


def test_finds_more_counts_only_the_defects_one_side_finds() -> None:
    assert finds_more(first(30), first(20)) == 1  # 10 more, none fewer: beyond 1.96·√10
    assert finds_more(first(20), first(30)) == -1
    assert finds_more(first(22), first(20)) == 0  # 2 more: within chance
    disjoint_a = [1] * 10 + [0] * 30  # 10 found, by a alone
    disjoint_b = [0] * 10 + [1] * 14 + [0] * 16  # 14 found, by b alone: 4 more of 24 discordant
    assert finds_more(disjoint_b, disjoint_a) == 0
    assert finds_more(first(0), first(0)) == 0
    assert finds_more(first(4), first(1)) == 0  # metal plates' 4 vs 1 of 54: noise


@pytest.mark.parametrize(
    ("top1", "small", "chosen"),
    [
        ((first(30), 0.80), (first(20), 0.99), 1),  # clearly more found: recall wins
        ((first(22), 0.95), (first(20), 0.80), 1),  # within chance: the higher AUROC
        ((first(22), 0.80), (first(20), 0.80), 0),  # within chance, AUROC no higher: base stays
        ((first(12), 0.99), (first(20), 0.90), 0),  # clearly fewer: never chosen for its AUROC
        ((first(20), 0.90), (first(35), 0.90), 2),
    ],
)
def test_the_choice_is_recall_then_auroc_then_the_earlier_candidate(
    monkeypatch: pytest.MonkeyPatch,
    top1: tuple[list[int], float],
    small: tuple[list[int], float],
    chosen: int,
) -> None:
    figures = {(512, "max"): (first(20), 0.9), (512, "topk_mean"): top1, (320, "max"): small}
    name, _ = _choose(monkeypatch, figures | {(512, "positional"): (first(0), 0.5)})
    assert name == CANDIDATES[chosen].name


def test_a_positional_candidate_that_finds_clearly_more_is_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same = (first(20), 0.9)
    figures = {(512, "max"): same, (512, "topk_mean"): same, (320, "max"): same}
    name, _ = _choose(monkeypatch, figures | {(512, "positional"): (first(32), 0.85)})
    assert name == "positional"


def test_only_the_fine_candidate_changes_the_score_rule_and_the_stages() -> None:
    fine = selection.CANDIDATES[3]
    assert [c for c in selection.CANDIDATES if {"score_rule", "patch_stages"} & c.keys] == [fine]
    assert fine.keys == {"positional", "score_rule", "patch_stages"}
    assert [c.name for c in selection.usable_candidates({"epochs"})] == ["base"]
    assert len(selection.usable_candidates({"epochs", "image_size"})) == 2
    assert len(selection.usable_candidates({"epochs", "image_size", "positional"})) == 3
    every = {"epochs", "image_size", "positional", "score_rule"}
    assert len(selection.usable_candidates(every)) == 3  # the stages set: no fine candidate
    assert len(selection.usable_candidates(every | {"patch_stages"})) == 4
    positional = selection.CANDIDATES[2]
    assert positional.scoring(SETTINGS) == Scoring("max", positional=True)  # the base's rule
    assert fine.scoring(DetectorSettings(image_size=512)) == Scoring("max", positional=True)


def _backbone(*strides: int) -> Any:
    """A model whose encoder has timm's feature_info at ``strides``."""
    return SimpleNamespace(
        encoder=SimpleNamespace(feature_info=[{"reduction": s} for s in strides])
    )


def test_a_candidate_with_other_stages_is_judged_on_its_own_maps_and_chosen_resolved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, list[Scoring]]] = []

    def judge(embedder, pixels, settings, scorings, device):  # type: ignore[no-untyped-def]
        calls.append((embedder.stages, list(scorings)))
        found = first(30 if embedder.stages == (1, 2) else 10)  # clearly more: stride 4 + 8
        figures = {"synthetic_recall": sum(found) / N, "synthetic_auroc": 0.9, "found": found}
        return {s: figures for s in scorings}

    monkeypatch.setattr(selection, "judge", judge)
    monkeypatch.setattr(selection, "Embedder", FakeEmbedder)
    settings = DetectorSettings(image_size=512)  # top-1% mean, stride 8 + 16
    free = {"image_size", "positional", "score_rule", "patch_stages"}

    def decode(size: int) -> torch.Tensor:
        return torch.zeros(2, 3, size, size, dtype=torch.uint8)

    def run(model: Any) -> tuple[Candidate, list[dict[str, Any]]]:
        calls.clear()
        return choose(FakeEmbedder(model, ()), decode, settings, free, torch.device("cpu"))  # type: ignore[arg-type]

    best, _ = run(_backbone(2, 4, 8, 16, 32))
    assert calls == [
        ((), [Scoring("topk_mean"), Scoring("topk_mean", positional=True)]),
        ((), [Scoring("topk_mean")]),  # 320 px
        ((1, 2), [Scoring("max", positional=True)]),  # stride 4 and 8: indices 1 and 2
    ]
    assert best.name == "fine, positional, max"
    assert dict(best.changes) == {"positional": True, "score_rule": "max", "patch_stages": (1, 2)}
    _, rows = run(_backbone(8, 16, 32))  # no stride-4 stage: no fine candidate
    assert [r["candidate"] for r in rows] == ["base", "image size 320", "positional"]


class FakeEmbedder:
    """What choose asks of an embedder: its model (whose encoder names the stages) and stages."""

    def __init__(self, model: Any, stages: Any) -> None:
        self.model, self.stages = model, tuple(stages or ())


def test_auto_changes_only_keys_left_free_and_only_without_training() -> None:
    from simclr_ad.config import TrainConfig
    from simclr_ad.pipeline import auto_keys

    recipe = {"epochs": 0, "image_size": 512, "positional": False}
    untrained = TrainConfig(epochs=0)
    assert auto_keys(untrained, recipe) == ["image_size", "positional"]
    assert auto_keys(untrained, {"epochs": 0, "positional": False}) == ["positional"]
    assert auto_keys(untrained, {"epochs": 0}) == []  # the base alone: nothing to choose
    assert auto_keys(TrainConfig(epochs=5), recipe) == []
    assert auto_keys(TrainConfig(epochs=0, pooled=True), recipe) == []
