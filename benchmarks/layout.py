"""Memory layout on the CPU: resnet18 at 224 px, NCHW vs channels-last, side by side.

Usage:
    .venv/bin/python benchmarks/layout.py [--reps 5]

Times one training step (forward, backward, AdamW) on 32 images and inference of the patch
stages on 1 and 32 images, alternating the two layouts rep by rep; prints medians in ms.
"""

import simclr_ad  # noqa: F401  # first: sets OpenMP's wait policy before torch loads libgomp

# isort: split

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import timm
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=0)
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.randn(32, 3, 224, 224)
    layouts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    times: dict[tuple[str, str], list[float]] = {}

    def timed(key: tuple[str, str], run: Callable[[], None]) -> None:
        started = time.perf_counter()
        run()
        times.setdefault(key, []).append((time.perf_counter() - started) * 1000)

    def train_step(x: torch.Tensor) -> None:
        loss = model.train()(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer(x: torch.Tensor) -> None:
        encoder: Any = model.eval()
        encoder.forward_intermediates(x, indices=[2, 3], intermediates_only=True)

    for _ in range(args.reps + 1):  # the first rep warms up
        for name, layout in layouts.items():
            model.to(memory_format=layout)
            x = images.contiguous(memory_format=layout)
            timed((name, "train step, 32 images"), functools.partial(train_step, x))
            timed((name, "inference, 1 image"), functools.partial(infer, x[:1]))
            timed((name, "inference, 32 images"), functools.partial(infer, x))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.reps} reps")
    print("| what | NCHW ms | channels-last ms | ratio |\n|---|---|---|---|")
    for what in ("train step, 32 images", "inference, 1 image", "inference, 32 images"):
        a = statistics.median(times[("nchw", what)][1:])
        b = statistics.median(times[("channels_last", what)][1:])
        print(f"| {what} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
