"""Load test: many concurrent clients against a real ``simclr-ad serve``, every answer checked.

    .venv/bin/python benchmarks/load.py --out /tmp/load-bench [--requests 2000 --clients 16]

Builds a resnet18 (random init) patch detector on synthetic data (or takes ``--model`` with
``--images``), scores the images once with ``simclr-ad predict`` as the reference, starts
``simclr-ad serve`` on loopback and sends ``--requests`` uploads from ``--clients`` threads,
cycling over the images. Each answer must be HTTP 200 with the same score as ``predict`` gave
for that image (relative difference <= 1e-4; micro-batches change float summation order).
The server's resident memory (RSS, from /proc) is sampled every 0.25 s. Prints a summary and
writes ``load.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from simclr_ad.cli import main as cli
from simclr_ad.data.synthetic import generate_dataset

TOLERANCE = 1e-4


def build_detector(out: Path, size: int) -> tuple[Path, Path]:
    """Synthetic fabric images and a fitted patch detector; returns (images folder, model)."""
    data, run = out / "data", out / "run"
    if not data.exists():
        generate_dataset(data, categories=("fabric",), image_size=size, n_train=24, n_test=4)
    if not (run / "model" / "model.json").exists():
        argv = ["-q", "train", "--data", str(data), "--out", str(run), "--epochs", "0"]
        argv += ["--image-size", str(size), "--weights", "none", "--device", "cpu"]
        assert cli([*argv, "--scorers", "patch"]) == 0
    return data / "fabric" / "test", run / "model"


def reference_scores(model: Path, images: Path, out: Path) -> dict[str, float]:
    """``simclr-ad predict`` over the images: score by path."""
    csv_path = out / "predict.csv"
    argv = ["-q", "predict", "--model", str(model), str(images), "--out", str(csv_path)]
    assert cli([*argv, "--overwrite", "--device", "cpu"]) == 0
    with open(csv_path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemorySampler(threading.Thread):
    """RSS of ``pid`` every ``interval`` seconds until stopped: (seconds since start, MiB)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.wait(self.interval):
            self.samples.append((time.monotonic() - started, rss_mb(self.pid)))


def start_server(model: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "simclr_ad", "serve", "--model", str(model)]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"simclr-ad serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("simclr-ad serve did not answer /health within 120 s")
        time.sleep(0.2)


def run_load(
    url: str, uploads: list[tuple[str, bytes, float]], n_requests: int, n_clients: int
) -> dict[str, object]:
    """Send the requests; latencies of the correct answers and a list of failures."""
    local = threading.local()
    latencies: list[float] = []
    failures: list[str] = []

    def one(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
        path, data, expected = uploads[i % len(uploads)]
        started = time.perf_counter()
        try:
            response = client.post(
                f"{url}/v1/predict",
                files={"image": (Path(path).name, data, "image/png")},
                data={"category": "fabric"},
            )
        except httpx.HTTPError as exc:
            failures.append(f"{path}: {type(exc).__name__}")
            return
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status_code != 200:
            failures.append(f"{path}: HTTP {response.status_code}")
            return
        score = float(response.json()["score"])
        if abs(score - expected) > TOLERANCE * max(abs(expected), 1e-12):
            failures.append(f"{path}: score {score} != predict's {expected}")
            return
        latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n_clients) as pool:
        list(pool.map(one, range(n_requests)))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": n_requests,
        "correct": len(latencies),
        "failures": len(failures),
        "failure_examples": failures[:10],
        "seconds": round(seconds, 2),
        "requests_per_second": round(n_requests / seconds, 1),
        "p50_ms": round(statistics.median(ordered), 1) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)
        if ordered
        else None,
        "max_ms": round(ordered[-1], 1) if ordered else None,
    }


def memory_summary(samples: list[tuple[float, float]]) -> dict[str, object]:
    """RSS at the start and end of the run, its range, and the mean of each quarter."""
    values = [mb for _, mb in samples]
    quarter = max(1, len(values) // 4)
    return {
        "samples": len(values),
        "start_mb": round(values[0], 1),
        "end_mb": round(values[-1], 1),
        "min_mb": round(min(values), 1),
        "max_mb": round(max(values), 1),
        "quarter_means_mb": [
            round(statistics.fmean(values[i : i + quarter]), 1)
            for i in range(0, quarter * 4, quarter)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/load-bench"))
    parser.add_argument("--model", type=Path, help="bundle (default: build one)")
    parser.add_argument("--images", type=Path, help="images of category fabric, with --model")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=64, help="requests before measuring")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.model:
        images, model = args.images, args.model
    else:
        images, model = build_detector(args.out, args.image_size)
    expected = reference_scores(model, images, args.out)
    uploads = [(p, Path(p).read_bytes(), s) for p, s in sorted(expected.items())]
    port = _free_port()
    server = start_server(model, port)
    url = f"http://127.0.0.1:{port}"
    try:
        warmup = run_load(url, uploads, args.warmup, args.clients)
        sampler = MemorySampler(server.pid)
        sampler.start()
        result = run_load(url, uploads, args.requests, args.clients)
        sampler.stopped.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {
        "model": str(model),
        "images": len(uploads),
        "clients": args.clients,
        "cpu_count": os.cpu_count(),
        "warmup_failures": warmup["failures"],
        **result,
        "server_rss": memory_summary(sampler.samples),
    }
    (args.out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
