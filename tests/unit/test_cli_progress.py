"""Progress bars: on standard error, only on a terminal, only rank 0, never between the rows a
command streams to the terminal; and one on every long step of train, evaluate and predict."""

import csv
import io
import logging
import sys
from pathlib import Path

import pytest

from simclr_ad.cli import main
from simclr_ad.progress import log_above_bars, progress_bar, progress_enabled
from tests.conftest import TINY_TRAIN


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal and keeps what was written to it."""

    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> FakeTerminal:
    """Standard error a terminal, the package's INFO messages shown (as without ``-q``).

    Called inside each test: pytest's output capture resets ``sys.stderr`` after fixtures."""
    stream = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv("RANK", raising=False)
    caplog.set_level(logging.INFO, logger="simclr_ad")
    return stream


def test_a_bar_is_drawn_on_a_terminal_to_standard_error(monkeypatch, caplog) -> None:
    terminal = _terminal(monkeypatch, caplog)
    assert progress_enabled()
    with progress_bar(total=3, desc="scoring bolt", unit="img") as bar:
        assert not bar.disable
        bar.update(3)
    shown = terminal.getvalue()
    assert "scoring bolt" in shown and "0/3" in shown
    assert shown.endswith("\r") and shown.rstrip("\r ").endswith("]")  # cleared when done


def test_no_bar_where_standard_error_is_not_a_terminal(monkeypatch, caplog) -> None:
    _terminal(monkeypatch, caplog)
    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)  # a log file, a pipe
    assert not progress_enabled()
    with progress_bar(total=3, desc="scoring bolt") as bar:
        bar.update(3)
    assert log_file.getvalue() == ""


@pytest.mark.parametrize(("rank", "drawn"), [("0", True), ("1", False), ("3", False)])
def test_only_rank_zero_draws_under_torchrun(monkeypatch, caplog, rank: str, drawn: bool) -> None:
    terminal = _terminal(monkeypatch, caplog)
    monkeypatch.setenv("RANK", rank)
    assert progress_enabled() is drawn
    with progress_bar(range(2), desc="features") as bar:
        list(bar)
    assert ("features" in terminal.getvalue()) is drawn


def test_quiet_and_the_callers_own_condition_turn_it_off(monkeypatch, caplog) -> None:
    terminal = _terminal(monkeypatch, caplog)
    with progress_bar(desc="x", total=1, enabled=False) as bar:
        assert bar.disable
    caplog.set_level(logging.WARNING, logger="simclr_ad")  # what -q sets
    assert not progress_enabled()
    with progress_bar(desc="x", total=1) as bar:
        assert bar.disable
    assert terminal.getvalue() == ""


def test_log_lines_are_written_above_an_active_bar(monkeypatch, caplog) -> None:
    terminal = _terminal(monkeypatch, caplog)
    console = logging.StreamHandler(sys.stderr)
    logging.root.addHandler(console)
    try:
        with log_above_bars(), progress_bar(total=2, desc="fitting") as bar:
            bar.update(1)
            logging.getLogger("simclr_ad.test").info("patch memory bank: 10 of 100 patches")
            bar.update(1)
    finally:
        logging.root.removeHandler(console)
    before, line, after = terminal.getvalue().partition("patch memory bank: 10 of 100 patches\n")
    assert line and "fitting" in before and "fitting" in after
    assert before.endswith("\r")  # the bar was cleared first, not written through


def test_log_above_bars_leaves_a_library_callers_logging_alone() -> None:
    handlers = list(logging.root.handlers)  # pytest's own: none to the console
    with log_above_bars():
        assert logging.root.handlers == handlers


@pytest.mark.slow
def test_train_shows_the_epochs_and_every_step_of_the_detector_fit(
    monkeypatch, caplog, tiny_data: Path, tmp_path: Path
) -> None:
    terminal = _terminal(monkeypatch, caplog)
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *TINY_TRAIN]
    assert main([*argv, "--categories", "fabric", "--epochs", "1", "--coreset-ratio", "0.5"]) == 0
    shown = terminal.getvalue()
    steps = ("epoch 1/1", "fabric: features", "fabric: scorers", "coreset of", "cross-fitted")
    assert [step for step in steps if step not in shown] == []


def test_evaluate_shows_scoring_metrics_and_report(
    monkeypatch, caplog, tiny_fabric_model: Path, tiny_data: Path, tmp_path: Path
) -> None:
    terminal = _terminal(monkeypatch, caplog)
    argv = ["evaluate", "--model", str(tiny_fabric_model), "--data", str(tiny_data)]
    assert main([*argv, "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    shown = terminal.getvalue()
    assert [step for step in ("fabric: scoring", "metrics", "report") if step not in shown] == []


def _predict(model: Path, data: Path, *extra: str) -> int:
    images = data / "fabric" / "test"
    return main(["predict", "--model", str(model), "--device", "cpu", str(images), *extra])


def test_predict_shows_progress_while_its_rows_go_to_a_pipe(
    monkeypatch, caplog, tiny_fabric_model: Path, tiny_data: Path
) -> None:
    terminal = _terminal(monkeypatch, caplog)
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)
    assert _predict(tiny_fabric_model, tiny_data, "--format", "csv") == 0
    assert "predict" in terminal.getvalue()
    rows = list(csv.reader(io.StringIO(piped.getvalue())))
    images = sorted((tiny_data / "fabric" / "test").rglob("*.png"))
    assert rows[0][0] == "path" and len(rows) == 1 + len(images)
    assert all(len(row) == len(rows[0]) for row in rows)


def test_predict_draws_no_bar_between_rows_streamed_to_the_terminal(
    monkeypatch, caplog, tiny_fabric_model: Path, tiny_data: Path
) -> None:
    terminal = _terminal(monkeypatch, caplog)
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert _predict(tiny_fabric_model, tiny_data, "--format", "csv") == 0
    assert "predict" not in terminal.getvalue() and "\r" not in terminal.getvalue()
    rows = list(csv.reader(io.StringIO(screen.getvalue())))
    assert rows[0][0] == "path" and all(len(row) == len(rows[0]) for row in rows)


def test_predict_keeps_its_bar_before_a_table_printed_at_the_end(
    monkeypatch, caplog, tiny_fabric_model: Path, tiny_data: Path
) -> None:
    terminal = _terminal(monkeypatch, caplog)
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert _predict(tiny_fabric_model, tiny_data) == 0  # a terminal: a table by default
    assert "predict" in terminal.getvalue()
    assert "\r" not in screen.getvalue() and "path" in screen.getvalue()
