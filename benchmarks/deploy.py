"""Deployment speed: predict latency/throughput (PyTorch vs ONNX Runtime) and the HTTP service.

    .venv/bin/python benchmarks/deploy.py --out /tmp/deploy-bench

Builds a resnet18 (random init, ``--weights none``) patch detector at 224 px on synthetic data,
exports it to ONNX, then measures, in one run and side by side:
- predict latency per image at batch 1 and throughput at batch 32, PyTorch and ONNX Runtime
  (repetitions alternate between the two, so background load hits both alike);
- ``simclr-ad serve`` (a real uvicorn process on loopback) under 16 concurrent clients, with
  micro-batching off (``--max-batch 1``) and on (``--max-batch 8``), and serving the ONNX file:
  requests/s, p50/p99 latency.
Prints a Markdown table and writes ``results.json`` into ``--out``.
"""

from __future__ import annotations

import simclr_ad  # noqa: F401  # first: sets OpenMP's wait policy before torch loads libgomp

# isort: split

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

from simclr_ad.cli import main as cli
from simclr_ad.data.images import read_rgb
from simclr_ad.data.synthetic import generate_dataset
from simclr_ad.predictor import BundlePredictor, OnnxPredictor, open_bundle, stack_images

SIZE = 224


def build_detector(out: Path) -> tuple[Path, Path, Path]:
    """Synthetic data, a fitted resnet18 patch detector and its ONNX export."""
    data, run, onnx_file = out / "data", out / "run", out / "fabric.onnx"
    if not data.exists():
        generate_dataset(data, categories=("fabric",), image_size=SIZE, n_train=24, n_test=4)
    if not (run / "model" / "model.json").exists():
        argv = ["-q", "train", "--data", str(data), "--out", str(run), "--epochs", "0"]
        argv += ["--image-size", str(SIZE), "--weights", "none", "--device", "cpu"]
        assert cli([*argv, "--backbone", "resnet18", "--scorers", "patch"]) == 0
    if not onnx_file.exists():
        assert cli(["export", "--model", str(run / "model"), "--out", str(onnx_file)]) == 0
    return data, run / "model", onnx_file


def time_predict(
    torch_predictor: BundlePredictor, onnx_predictor: OnnxPredictor, data: Path, reps: int
) -> dict[str, float]:
    """Median ms per image at batch 1 and images/s at batch 32, both runtimes interleaved.

    The inputs are the synthetic test images. (The 0.4-1.9 s batch-1 figures of earlier runs
    were not subnormal floats but OpenMP threads spin-waiting on shared cores; see
    ``simclr_ad/__init__.py``.)
    """
    files = sorted((data / "fabric" / "test").rglob("*.png"))
    batch = stack_images([read_rgb(files[i % len(files)], SIZE) for i in range(32)])
    runtimes = {"pytorch": torch_predictor, "onnxruntime": onnx_predictor}
    single: dict[str, list[float]] = {name: [] for name in runtimes}
    full: dict[str, list[float]] = {name: [] for name in runtimes}
    for predictor in runtimes.values():  # warm-up
        predictor.predict(batch[:1], "fabric")
        predictor.predict(batch, "fabric")
    for rep in range(reps):
        for name, predictor in runtimes.items():
            started = time.perf_counter()
            predictor.predict(batch[rep % 32 : rep % 32 + 1], "fabric")
            single[name].append((time.perf_counter() - started) * 1000)
        if rep % 4 == 0:
            for name, predictor in runtimes.items():
                started = time.perf_counter()
                predictor.predict(batch, "fabric")
                full[name].append(32 / (time.perf_counter() - started))
    result = {}
    for name in runtimes:
        result[f"{name}_batch1_ms"] = statistics.median(single[name])
        result[f"{name}_batch32_img_per_s"] = statistics.median(full[name])
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def time_service(
    model: Path, images: list[bytes], *, max_batch: int, clients: int, per_client: int
) -> dict[str, float]:
    """Requests/s and latency percentiles of a real ``simclr-ad serve`` process."""
    port = _free_port()
    command = [sys.executable, "-m", "simclr_ad", "-q", "serve", "--model", str(model)]
    command += ["--port", str(port), "--device", "cpu", "--max-batch", str(max_batch)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)

        def client(index: int) -> list[float]:
            latencies = []
            with httpx.Client(base_url=url, timeout=120) as session:
                for i in range(per_client):
                    image = images[(index + i) % len(images)]
                    started = time.perf_counter()
                    response = session.post(
                        "/v1/predict", files={"image": ("x.png", image, "image/png")}
                    )
                    response.raise_for_status()
                    latencies.append((time.perf_counter() - started) * 1000)
            return latencies

        client(0)  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            latencies = sorted(x for part in pool.map(client, range(clients)) for x in part)
        seconds = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "requests": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=40, help="batch-1 repetitions per runtime")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=10, help="requests per client")
    parser.add_argument("--predict-only", action="store_true", help="skip the service part")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data, model, onnx_file = build_detector(args.out)
    torch_predictor = open_bundle(model, torch.device("cpu"))
    onnx_predictor = OnnxPredictor(onnx_file)
    predict = time_predict(torch_predictor, onnx_predictor, data, args.reps)
    images = [p.read_bytes() for p in sorted((data / "fabric" / "test").rglob("*.png"))]
    settings = {"pytorch, max_batch 1": (model, 1), "pytorch, max_batch 8": (model, 8)}
    settings["onnxruntime, max_batch 8"] = (onnx_file, 8)
    if args.predict_only:
        settings = {}
    service = {
        name: time_service(
            path, images, max_batch=b, clients=args.clients, per_client=args.per_client
        )
        for name, (path, b) in settings.items()
    }
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "predict": predict,
        "service": service,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    p = predict
    print("| runtime | batch 1 ms/image | batch 32 images/s |\n|---|---|---|")
    for name in ("pytorch", "onnxruntime"):
        print(f"| {name} | {p[f'{name}_batch1_ms']:.1f} | {p[f'{name}_batch32_img_per_s']:.1f} |")
    print(
        f"ONNX Runtime / PyTorch: batch 1 {p['pytorch_batch1_ms'] / p['onnxruntime_batch1_ms']:.2f}"
        f"x faster, batch 32 "
        f"{p['onnxruntime_batch32_img_per_s'] / p['pytorch_batch32_img_per_s']:.2f}x throughput"
    )
    print(f"\n| service ({args.clients} clients) | requests/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for name, s in service.items():
        print(f"| {name} | {s['requests_per_s']:.1f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} |")


if __name__ == "__main__":
    main()
