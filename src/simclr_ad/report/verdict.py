"""The verdict at the top of a report: per category, does the calibrated detector beat flagging
every part, and does it keep the false-alarm rate its threshold promises?

Flagging every part catches every defect, with F1 = 2p / (1 + p) (``trivial_f1``, p the share of
defective test parts): a detector is worth its threshold only when its F1 beats that. The
threshold was calibrated on good training images for a target false-alarm rate; the measured rate
on the good test parts says whether that promise held, as far as their number can show it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from numpy.typing import NDArray

from simclr_ad.calibration import Calibration

# Below this many good or defective test parts, an AUROC interval moves a lot with one part.
FEW_PARTS = 30
TOLERANCE = 1e-9  # F1s equal up to rounding do not "beat" each other

Check = Literal["yes", "no", "unconfirmed", "unknown"]
Level = Literal["pass", "warn", "fail", "unknown"]


@dataclass(frozen=True)
class Verdict:
    """One category's verdict at its calibrated threshold (primary scorer).

    Attributes:
        category: the category.
        f1: F1 at the calibrated threshold.
        trivial_f1: F1 of flagging every test part.
        beats_trivial: ``"yes"``/``"no"``; ``"unknown"`` without defective test parts.
        false_alarms: good test parts flagged.
        n_good: good test parts.
        n_defect: defective test parts.
        target_fpr: the false-alarm rate the threshold aims at (None if not recorded).
        meets_target: ``"yes"``/``"no"``; ``"unconfirmed"`` when the measured rate is within the
            target but too few good parts could show a rate that low; ``"unknown"`` without good
            test parts or a target.
        threshold: the calibrated threshold.
        auroc: image AUROC (None with one class).
        auroc_ci95: its bootstrap 95% interval.
        calibration: how the threshold was set, in words (None if not recorded).
        n_calibration: how many good training images set it (None if not recorded).
    """

    category: str
    f1: float
    trivial_f1: float
    beats_trivial: Check
    false_alarms: int
    n_good: int
    n_defect: int
    target_fpr: float | None
    meets_target: Check
    threshold: float
    auroc: float | None
    auroc_ci95: tuple[float, float] | None
    calibration: str | None
    n_calibration: int | None

    @property
    def level(self) -> Level:
        """``fail`` when it does not beat flagging everything, ``pass`` when it also meets the
        false-alarm target, ``warn`` in between, ``unknown`` without defective test parts."""
        if self.beats_trivial == "no":
            return "fail"
        if self.beats_trivial == "unknown":
            return "unknown"
        return "pass" if self.meets_target == "yes" else "warn"


def false_alarms(labels: NDArray[Any], scores: NDArray[Any], threshold: float) -> tuple[int, int]:
    """(good test parts flagged, good test parts) at ``threshold``."""
    good = labels == 0
    return int((scores[good] >= threshold).sum()), int(good.sum())


def _meets_target(flagged: int, n_good: int, target_fpr: float | None) -> Check:
    if target_fpr is None or n_good == 0:
        return "unknown"
    if flagged / n_good > target_fpr:
        return "no"
    # one false alarm would already exceed the target: zero says little
    return "yes" if n_good * target_fpr >= 1 else "unconfirmed"


def judge(
    category: str, image: Mapping[str, Any], labels: NDArray[Any], scores: NDArray[Any]
) -> Verdict:
    """The verdict of one category from its ``metrics.json`` image entry and its test scores.

    Args:
        category: the category.
        image: ``scorers.<primary>.categories.<category>.image`` of ``metrics.json``.
        labels: 0/1 labels of the test parts (N,).
        scores: their primary scores (N,).
    """
    threshold = float(image["threshold"])
    flagged, n_good = false_alarms(labels, scores, threshold)
    n_defect = int((labels == 1).sum())
    f1, trivial = float(image["f1"]), float(image["trivial_f1"])
    beats: Check = "unknown" if n_defect == 0 else "yes" if f1 > trivial + TOLERANCE else "no"
    calibration = image.get("calibration")
    target = float(calibration["target_fpr"]) if calibration else None
    ci = image.get("auroc_ci95")
    return Verdict(
        category=category,
        f1=f1,
        trivial_f1=trivial,
        beats_trivial=beats,
        false_alarms=flagged,
        n_good=n_good,
        n_defect=n_defect,
        target_fpr=target,
        meets_target=_meets_target(flagged, n_good, target),
        threshold=threshold,
        auroc=image.get("auroc"),
        auroc_ci95=(float(ci[0]), float(ci[1])) if ci else None,
        calibration=_promise(calibration) if calibration else None,
        n_calibration=int(calibration["n"]) if calibration else None,
    )


def _promise(calibration: Mapping[str, Any]) -> str:
    """The rule behind a threshold in words (evaluations before ``promise`` was stored: rebuilt
    from the recorded fields)."""
    if "promise" in calibration:
        return str(calibration["promise"])
    return Calibration.from_dict(calibration).promise


def parts_note(n_good: int, n_defect: int) -> str:
    """What an interval rests on: ``from 8 good and 12 defective parts``, with a warning below
    FEW_PARTS of either."""
    note = f"from {n_good} good and {n_defect} defective parts"
    if min(n_good, n_defect) < FEW_PARTS:
        note += ": few, read the interval with care"
    return note


def _percent(rate: float) -> str:
    return f"{100 * rate:.1f}%".replace(".0%", "%")


def beat_sentence(v: Verdict) -> str:
    """Whether the detector beats flagging everything, in words."""
    if v.beats_trivial == "unknown":
        return "No defective test parts: cannot compare with flagging everything."
    head = "Beats" if v.beats_trivial == "yes" else "Does not beat"
    return (
        f"{head} flagging everything: F1 {v.f1:.3f} at the calibrated threshold against "
        f"{v.trivial_f1:.3f} for flagging every part."
    )


def false_alarm_sentence(v: Verdict) -> str:
    """Whether the measured false-alarm rate meets the target, in words."""
    if v.n_good == 0:
        return "No good test parts: the false-alarm rate cannot be measured."
    measured = (
        f"{v.false_alarms} of {v.n_good} good test parts flagged "
        f"({_percent(v.false_alarms / v.n_good)})"
    )
    if v.target_fpr is None:
        return f"No false-alarm target recorded: {measured}."
    target = f"target {_percent(v.target_fpr)}"
    if v.meets_target == "yes":
        return f"Meets the false-alarm target: {measured}, {target}."
    if v.meets_target == "no":
        return f"Misses the false-alarm target: {measured}, {target}."
    return (
        f"False-alarm target not confirmed: {measured}, {target}; {v.n_good} good parts are too "
        f"few to show a rate that low (one false alarm would be {_percent(1 / v.n_good)})."
    )


def auroc_sentence(v: Verdict) -> str:
    """The AUROC, its interval and what the interval rests on."""
    if v.auroc is None:
        return "Image AUROC: needs good and defective test parts."
    interval = f" [{v.auroc_ci95[0]:.3f}, {v.auroc_ci95[1]:.3f}]" if v.auroc_ci95 else ""
    return f"Image AUROC {v.auroc:.3f}{interval} {parts_note(v.n_good, v.n_defect)}."


def calibration_sentence(v: Verdict) -> str:
    """The threshold, the rule that set it and how many good images it rests on."""
    if v.calibration is None:
        return f"Threshold {v.threshold:.4g} (its calibration is not recorded)."
    return (
        f"Threshold {v.threshold:.4g}, set by {v.n_calibration} good training images (never "
        f"the test set): {v.calibration}."
    )


MARKS = {"yes": "✓", "no": "✗", "unconfirmed": "?", "unknown": "–"}


def verdict_html(verdicts: Sequence[Verdict], evaluated: str) -> str:
    """The verdict block: one coloured card per category, the date of the evaluation above."""
    cards = []
    for v in verdicts:
        lines = [
            (v.beats_trivial, beat_sentence(v)),
            (v.meets_target, false_alarm_sentence(v)),
        ]
        checks = "".join(
            f'<li class="check-{state}"><span class="mark" aria-hidden="true">{MARKS[state]}'
            f"</span> {html.escape(text)}</li>"
            for state, text in lines
        )
        notes = "".join(
            f'<li class="detail">{html.escape(text)}</li>'
            for text in (calibration_sentence(v), auroc_sentence(v))
        )
        cards.append(
            f'<div class="verdict verdict-{v.level}" data-category="{html.escape(v.category)}">'
            f"<h3>{html.escape(v.category)}</h3><ul>{checks}{notes}</ul></div>"
        )
    return (
        '<section id="verdict"><h2>Verdict</h2>'
        f'<p class="meta">Evaluated {html.escape(evaluated)}. Flagging every part catches every '
        "defect: a detector is worth its threshold only when its F1 beats that. The false-alarm "
        "target is what the threshold promises on good parts; the good test parts measure it."
        f'</p><div class="verdicts">{"".join(cards)}</div></section>'
    )
