"""Time to rebuild the inspection report of an evaluation (``simclr-ad report --eval EVAL``).

Usage: ``.venv/bin/python benchmarks/report_time.py EVAL [--repeat 3]``, e.g. on the demo's
evaluation (``simclr-ad demo --out /tmp/rdemo`` then ``EVAL = /tmp/rdemo/eval``). Prints the
fastest of the repeats, the number of images and the page's size. Rewrites EVAL/report.html and
EVAL/figures/ (the same content).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from simclr_ad.report.page import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        page = build_report(args.eval)
        times.append(time.perf_counter() - started)
    metrics = json.loads((args.eval / "metrics.json").read_text())
    categories = len(metrics["scorers"][metrics["primary"]]["categories"])
    print(
        f"report of {categories} categories: {min(times):.1f} s (best of {args.repeat}), "
        f"{len(list((args.eval / 'figures').iterdir()))} images, "
        f"{page.stat().st_size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
