"""The report page's date of evaluation: recorded by evaluate, or the file's date, said so."""

import os
from pathlib import Path

from simclr_ad.report.page import evaluation_date


def test_the_recorded_date_is_shown_in_utc(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    recorded = {"evaluated": "2024-05-06T09:08:09+02:00"}
    assert evaluation_date(recorded, path) == "2024-05-06 07:08 UTC"
    assert evaluation_date({"evaluated": "last Tuesday"}, path) == "last Tuesday"


def test_without_a_recorded_date_the_file_date_is_shown_and_named(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    os.utime(path, (1_700_000_000, 1_700_000_000))  # 2023-11-14 22:13:20 UTC
    assert evaluation_date({}, path) == "2023-11-14 22:13 UTC (metrics.json last written)"
