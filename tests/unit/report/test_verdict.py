"""The report's verdict: beating "flag everything", the false-alarm target, and what an
interval rests on."""

import numpy as np
import pytest

from simclr_ad.calibration import calibrate_threshold
from simclr_ad.metrics import image_metrics
from simclr_ad.report.verdict import (
    FEW_PARTS,
    Verdict,
    auroc_sentence,
    beat_sentence,
    calibration_sentence,
    false_alarm_sentence,
    judge,
    parts_note,
    verdict_html,
)


def _calibration(**changes: object) -> dict[str, object]:
    """A recorded calibration: conformal, 150 cross-fitted good scores, target 1%."""
    recorded = {
        "threshold": 1.0,
        "method": "conformal",
        "n": 150,
        "target_fpr": 0.01,
        "mean": 0.5,
        "std": 0.1,
        "max_score": 0.9,
        "source": "cross-fitted",
        "folds": 150,
    }
    return recorded | changes


def _judge(
    good: list[float],
    defective: list[float],
    threshold: float = 1.0,
    calibration: dict[str, object] | None = None,
) -> Verdict:
    """The verdict of hand-made scores, with metrics computed as evaluate computes them."""
    scores = np.array(good + defective)
    labels = np.array([0] * len(good) + [1] * len(defective))
    image = image_metrics(scores, labels, threshold, n_boot=50).to_dict()
    image["calibration"] = calibration or _calibration()
    return judge("cat", image, labels=labels, scores=scores)


def test_a_detector_that_separates_beats_flagging_everything() -> None:
    v = _judge(good=[0.1] * 100, defective=[2.0] * 9 + [0.5])  # one defect missed
    assert v.beats_trivial == "yes" and v.f1 == pytest.approx(2 * 9 / (2 * 9 + 1))
    assert v.trivial_f1 == pytest.approx(2 * (10 / 110) / (1 + 10 / 110))
    assert v.meets_target == "yes" and v.level == "pass"
    assert beat_sentence(v).startswith("Beats flagging everything: F1 0.947")


def test_flagging_every_part_does_not_beat_itself() -> None:
    v = _judge(good=[2.0] * 10, defective=[3.0] * 10)  # every part above the threshold
    assert v.f1 == pytest.approx(v.trivial_f1) and v.beats_trivial == "no"
    assert v.level == "fail"
    assert beat_sentence(v).startswith("Does not beat flagging everything: F1 0.667")


def test_a_detector_worse_than_flagging_everything_fails_even_without_false_alarms() -> None:
    v = _judge(good=[0.1] * 100, defective=[2.0] * 2 + [0.5] * 38)  # catches 2 defects of 40
    assert v.beats_trivial == "no" and v.meets_target == "yes" and v.level == "fail"


def test_false_alarm_target_met_missed_or_unconfirmed() -> None:
    assert _judge(good=[0.1] * 100, defective=[2.0]).meets_target == "yes"  # 0 of 100, α 1%
    assert _judge(good=[0.1] * 99 + [1.5], defective=[2.0]).meets_target == "yes"  # 1% exactly
    two = _judge(good=[0.1] * 98 + [1.5] * 2, defective=[2.0])
    assert two.meets_target == "no" and two.false_alarms == 2 and two.level == "warn"
    few = _judge(good=[0.1] * 8, defective=[2.0] * 12)
    assert few.meets_target == "unconfirmed" and few.level == "warn"  # 8 parts cannot show 1%
    text = false_alarm_sentence(few)
    assert text.startswith("False-alarm target not confirmed: 0 of 8 good test parts flagged")
    assert "one false alarm would be 12.5%" in text
    assert false_alarm_sentence(two) == (
        "Misses the false-alarm target: 2 of 100 good test parts flagged (2%), target 1%."
    )
    assert (
        _judge([0.1] * 20, [2.0], calibration=_calibration(target_fpr=0.05)).meets_target == "yes"
    )


def test_without_defects_good_parts_or_a_target_the_verdict_says_it_cannot_tell() -> None:
    no_defects = _judge(good=[0.1] * 50, defective=[])
    assert no_defects.beats_trivial == "unknown" and no_defects.level == "unknown"
    assert beat_sentence(no_defects).startswith("No defective test parts")
    no_good = _judge(good=[], defective=[2.0] * 5)
    assert no_good.meets_target == "unknown"
    assert false_alarm_sentence(no_good).startswith("No good test parts")
    scores, labels = np.array([0.1, 2.0]), np.array([0, 1])
    bare = image_metrics(scores, labels, 1.0, n_boot=10).to_dict()  # no calibration recorded
    v = judge("cat", bare, labels=labels, scores=scores)
    assert v.target_fpr is None and v.meets_target == "unknown" and v.level == "warn"
    assert "not recorded" in calibration_sentence(v)


def test_calibration_sentence_names_the_rule_and_how_many_good_images_set_it() -> None:
    calibration = calibrate_threshold(np.linspace(0.0, 1.0, 12), 0.01, folds=12)
    recorded = {**calibration.to_dict(), "promise": calibration.promise}
    for stored in (recorded, calibration.to_dict()):  # older metrics: no promise stored
        v = _judge([0.1] * 5, [2.0], threshold=calibration.threshold, calibration=stored)
        assert calibration_sentence(v) == (
            f"Threshold {calibration.threshold:.4g}, set by 12 good training images (never the "
            "test set): Student-t prediction bound of 12 leave-one-out good scores, target "
            "false-alarm rate 0.01."
        )


def test_intervals_say_how_few_parts_they_rest_on() -> None:
    assert (
        parts_note(8, 12) == "from 8 good and 12 defective parts: few, read the interval with care"
    )
    assert (
        parts_note(FEW_PARTS, FEW_PARTS) == f"from {FEW_PARTS} good and {FEW_PARTS} defective parts"
    )
    assert parts_note(100, FEW_PARTS - 1).endswith("few, read the interval with care")
    v = _judge(good=[0.1] * 8, defective=[2.0] * 12)
    assert auroc_sentence(v) == (
        "Image AUROC 1.000 [1.000, 1.000] from 8 good and 12 defective parts: few, read the "
        "interval with care."
    )


def test_verdict_html_colours_each_category_and_escapes_names() -> None:
    good = _judge(good=[0.1] * 100, defective=[2.0] * 10)
    bad = _judge(good=[2.0] * 10, defective=[3.0] * 10)
    bad = type(bad)(**{**bad.__dict__, "category": "<b>x&y</b>"})
    page = verdict_html([good, bad], evaluated="2024-05-06 07:08 UTC")
    assert page.startswith('<section id="verdict">') and "Evaluated 2024-05-06 07:08 UTC" in page
    assert '<div class="verdict verdict-pass" data-category="cat">' in page
    assert 'class="verdict verdict-fail" data-category="&lt;b&gt;x&amp;y&lt;/b&gt;"' in page
    assert "<b>x&y</b>" not in page
    assert page.index("Beats flagging everything") < page.index("Does not beat flagging")
    assert page.count('class="check-yes"') == 2 and page.count('class="check-no"') == 2
