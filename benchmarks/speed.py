"""Speed, side by side with the reference write-up's pipeline, in one run on one machine.

    .venv/bin/python benchmarks/speed.py [--quick | --tiny] [--device D] [--out FILE.json]

Parts (each in its own subprocess, so its peak RSS is its own; ``--tiny`` runs them in-process):

- ``augment``: two 224 px views per image from 1024 px PNGs. The write-up's torchvision/PIL list
  in a DataLoader with 2 workers that decodes every PNG every epoch, vs ours: PNGs decoded once
  (``decode_images``, timed apart as ``decode_once_s``), then ``BatchAugment`` preset ``seed``
  (the same list) on the device. Repetitions alternate between the two.
- ``train``: one epoch of resnet18 SimCLR at 128 and 224 px over the same PNGs, batch as in the
  scale table. Write-up-style loop (PIL DataLoader with 2 workers, two forward passes, plain
  fp32) vs the project's ``Trainer`` (decoded pixels, batched ``seed`` augmentation, one forward
  pass over both views, AMP/channels_last on CUDA). Fresh model per epoch; alternating.
- ``inference``: a resnet18 patch detector (random init, 224 px) fitted by ``simclr-ad train
  --epochs 0`` on the same images; end to end per image: PNG decode + resize (``read_rgb``),
  encoder, patch search, anomaly map (``BundlePredictor.predict(maps=True)``).
- ``search``: ``NearestNeighbourIndex`` over random banks of 1k, 10k and 100k 384-d patches
  (resnet18 layer2+layer3), queried with one 224 px image's 784 patches; exact torch vs faiss.

The PNGs are synthetic fabric images (``simclr_ad.data.synthetic``) at 1024 px, like MVTec's;
a few distinct ones are rendered once into ``--cache`` and hard-linked to make up the set (the
decoder does the same work per file). Figures are medians over repetitions.
"""

import simclr_ad  # noqa: F401  # first: sets OpenMP's wait policy before torch loads libgomp

# isort: split

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from simclr_ad.cli import main as cli
from simclr_ad.data.augment import create_augment
from simclr_ad.data.images import read_rgb
from simclr_ad.data.mvtec import Sample
from simclr_ad.data.store import decode_images
from simclr_ad.data.synthetic import generate_dataset
from simclr_ad.data.writeup import writeup_transform
from simclr_ad.devices import resolve_device
from simclr_ad.distributed import DistInfo
from simclr_ad.losses import NTXentLoss
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.predictor import open_bundle, stack_images
from simclr_ad.scoring.search import NearestNeighbourIndex
from simclr_ad.training import LoopSettings, Trainer, amp_dtype

PARTS = ("augment", "train", "inference", "search")
VIEW_SIZE = 224
PATCH_DIM = 384  # resnet18 layer2 (128) + layer3 (256)
QUERIES = 784  # patches of one 224 px image at stride 8 (28×28)


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much work each part does."""

    png_size: int
    unique_pngs: int
    augment_images: int
    augment_reps: int
    train_images: dict[int, int]  # image size -> images per epoch
    train_batch: int
    train_reps: int
    detector_images: int
    infer_reps: int
    batch32_reps: int
    banks: dict[str, int]
    search_queries: int
    search_reps: int


SCALES = {
    "full": Scale(1024, 16, 128, 3, {128: 128, 224: 64}, 32, 2, 24, 30, 3,
                  {"1k": 1000, "10k": 10_000, "100k": 100_000}, QUERIES, 7),
    "quick": Scale(1024, 6, 32, 2, {128: 32, 224: 16}, 16, 1, 10, 8, 1,
                   {"1k": 1000, "10k": 10_000, "100k": 100_000}, QUERIES, 2),
    "tiny": Scale(256, 2, 4, 1, {128: 4, 224: 4}, 4, 1, 6, 1, 1,
                  {"1k": 1000, "10k": 2000, "100k": 4000}, 16, 1),
}  # fmt: skip


# --- the write-up's pipeline ------------------------------------------------------------------


class PngPairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The write-up's dataset: open the PNG, convert, two independent views, every epoch."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files = files
        self.transform = writeup_transform(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.open(self.files[index]).convert("RGB")
        return self.transform(image), self.transform(image)


def seed_loader(files: list[Path], size: int, batch: int) -> DataLoader:
    """2 workers, not persistent (started and decoding every epoch), as the write-up."""
    return DataLoader(
        PngPairs(files, size), batch_size=batch, shuffle=True, num_workers=2, drop_last=True
    )


# --- data ---------------------------------------------------------------------------------------


def make_pngs(cache: Path, scale: Scale, count: int) -> list[Path]:
    """``count`` PNGs of ``scale.png_size`` px in an MVTec layout under ``cache``."""
    unique_root = cache / f"unique-{scale.png_size}"
    unique = sorted((unique_root / "fabric" / "train" / "good").glob("*.png"))
    if len(unique) < scale.unique_pngs:
        generate_dataset(
            unique_root,
            categories=("fabric",),
            image_size=scale.png_size,
            n_train=scale.unique_pngs,
            n_test=0,
        )
        unique = sorted((unique_root / "fabric" / "train" / "good").glob("*.png"))
    unique = unique[: scale.unique_pngs]
    folder = cache / f"set-{scale.png_size}-{len(unique)}-{count}" / "fabric" / "train" / "good"
    files = [folder / f"{i:04d}.png" for i in range(count)]
    if not all(f.exists() for f in files):
        folder.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            if not f.exists():
                try:
                    os.link(unique[i % len(unique)], f)
                except OSError:
                    shutil.copyfile(unique[i % len(unique)], f)
    return files


def decode_once(files: list[Path], size: int) -> tuple[torch.Tensor, float]:
    """uint8 N×3×size×size pixels of ``files`` and the seconds it took."""
    samples = [Sample(path=f, category="fabric", defect_type="good", label=0) for f in files]
    started = time.perf_counter()
    pixels = decode_images(samples, size).pixels
    return pixels, time.perf_counter() - started


# --- timing helpers -----------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(contenders: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
    """Median of each contender's figure, the contenders taking turns rep by rep."""
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, run in contenders.items():
            figures[name].append(run())
    return {name: statistics.median(values) for name, values in figures.items()}


def side_by_side(theirs: str, ours: str, figures: dict[str, float]) -> dict[str, float]:
    ratio = figures["ours"] / figures[theirs]
    return {theirs: figures[theirs], "ours": figures["ours"], "ratio": ratio}


# --- parts --------------------------------------------------------------------------------------


def part_augment(scale: Scale, device: torch.device, cache: Path) -> dict[str, Any]:
    files = make_pngs(cache, scale, scale.augment_images)
    batch = min(32, len(files))
    pixels, decode_s = decode_once(files, VIEW_SIZE + 32)
    augment = create_augment("seed", image_size=VIEW_SIZE)
    generator = torch.Generator().manual_seed(0)

    def seed_pipeline() -> float:
        started, n = time.perf_counter(), 0
        for view1, _ in seed_loader(files, VIEW_SIZE, batch):
            n += len(view1)
        return n / (time.perf_counter() - started)

    def ours() -> float:
        started, n = time.perf_counter(), 0
        for start in range(0, len(pixels) - batch + 1, batch):
            images = pixels[start : start + batch].to(device, non_blocking=True)
            views = torch.cat([augment(images, generator), augment(images, generator)])
            n += len(images)
        sync(device)
        del views
        return n / (time.perf_counter() - started)

    ours()  # warm-up (kernels, allocator)
    figures = alternate({"seed_pipeline": seed_pipeline, "ours": ours}, scale.augment_reps)
    result = side_by_side("seed_pipeline", "ours", figures)
    return {"augment_images_per_s": result, "decode_once_s": decode_s}


def _fresh_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(backbone="resnet18")).to(device)


def part_train(scale: Scale, device: torch.device, cache: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    decode_seconds: dict[str, float] = {}
    for size, count in scale.train_images.items():
        files = make_pngs(cache, scale, count)
        pixels, decode_seconds[str(size)] = decode_once(files, size + 32)
        batch = min(scale.train_batch, count)

        def seed_loop(files: list[Path] = files, size: int = size, batch: int = batch) -> float:
            model = _fresh_model(device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-6)
            loss_fn = NTXentLoss(0.07)
            started, n = time.perf_counter(), 0
            for view1, view2 in seed_loader(files, size, batch):
                z1 = model(view1.to(device)).z
                z2 = model(view2.to(device)).z
                loss = loss_fn(z1, z2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                n += len(view1)
            loss.item()  # waits for the device
            return n / (time.perf_counter() - started)

        def ours(
            pixels: torch.Tensor = pixels, size: int = size, batch: int = batch, amp: bool = True
        ) -> float:
            settings = LoopSettings(
                epochs=1,
                batch_size=batch,
                lr=3e-4,
                weight_decay=1e-6,
                temperature=0.07,
                seed=0,
                checkpoint_every=1000,
                amp=amp,
            )
            augment = create_augment("seed", image_size=size)
            trainer = Trainer(_fresh_model(device), augment, settings, device, DistInfo())
            started = time.perf_counter()
            history = trainer.fit(pixels, checkpoint_dir=None)
            steps = pixels.shape[0] // batch
            del history
            return steps * batch / (time.perf_counter() - started)

        contenders = {"seed_loop": seed_loop, "ours": ours, "ours_fp32": partial(ours, amp=False)}
        figures = alternate(contenders, scale.train_reps)
        results[str(size)] = side_by_side("seed_loop", "ours", figures) | {
            "ours_fp32": figures["ours_fp32"],
            "images": count,
            "batch": batch,
            "autocast": str(amp_dtype(device, True)),  # what "ours" ran in; ours_fp32: float32
        }
    return {"train_images_per_s": results, "train_decode_once_s": decode_seconds}


def build_detector(scale: Scale, device: torch.device, cache: Path) -> Path:
    files = make_pngs(cache, scale, scale.detector_images)
    data = files[0].parents[3]
    run = cache / f"detector-{data.name}-{device.type}"
    if not (run / "model" / "model.json").exists():
        argv = ["-q", "train", "--data", str(data), "--out", str(run), "--epochs", "0"]
        argv += ["--image-size", str(VIEW_SIZE), "--weights", "none", "--device", str(device)]
        argv += ["--backbone", "resnet18", "--scorers", "patch", "--overwrite"]
        if cli(argv) != 0:
            raise RuntimeError("simclr-ad train failed")
    return run / "model"


def part_inference(scale: Scale, device: torch.device, cache: Path) -> dict[str, Any]:
    predictor = open_bundle(build_detector(scale, device, cache), device)
    category = predictor.categories[0]
    files = make_pngs(cache, scale, 32)

    def end_to_end(paths: list[Path]) -> float:
        started = time.perf_counter()
        if len(paths) == 1:
            images = [read_rgb(paths[0], VIEW_SIZE)]
        else:
            with ThreadPoolExecutor(max_workers=2) as pool:
                images = list(pool.map(lambda p: read_rgb(p, VIEW_SIZE), paths))
        predictions = predictor.predict(stack_images(images), category, maps=True)
        sync(device)
        assert predictions[0].anomaly_map is not None
        return (time.perf_counter() - started) * 1000 / len(paths)

    end_to_end(files[:1])  # warm-up
    end_to_end(files)
    single = [end_to_end([files[r % len(files)]]) for r in range(scale.infer_reps)]
    full = [end_to_end(files) for _ in range(scale.batch32_reps)]
    started = time.perf_counter()
    for r in range(scale.infer_reps):
        read_rgb(files[r % len(files)], VIEW_SIZE)
    decode_ms = (time.perf_counter() - started) * 1000 / scale.infer_reps
    return {
        "inference_ms_per_image": {
            "batch1": statistics.median(single),
            "batch32": statistics.median(full),
            "decode_resize_ms": decode_ms,
        }
    }


def part_search(scale: Scale, device: torch.device, cache: Path) -> dict[str, Any]:
    del cache
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(scale.search_queries, PATCH_DIM, generator=generator).to(device)
    results: dict[str, Any] = {}
    for name, size in scale.banks.items():
        bank = torch.randn(size, PATCH_DIM, generator=generator).to(device)
        indexes = {b: NearestNeighbourIndex(bank, backend=b) for b in ("torch", "faiss")}

        def timed(index: NearestNeighbourIndex) -> Callable[[], float]:
            def run() -> float:
                started = time.perf_counter()
                index.search(queries, k=1)
                sync(device)
                return (time.perf_counter() - started) * 1000

            return run

        for index in indexes.values():
            timed(index)()  # warm-up; builds the faiss index
        figures = alternate({b: timed(i) for b, i in indexes.items()}, scale.search_reps)
        results[name] = {"exact": figures["torch"], "faiss": figures["faiss"], "bank": size}
    return {"bank_search_ms": results | {"queries": scale.search_queries}}


PART_FUNCTIONS = {
    "augment": part_augment,
    "train": part_train,
    "inference": part_inference,
    "search": part_search,
}


# --- orchestration ------------------------------------------------------------------------------


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (a worker)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process": round(own, 1), "largest_worker": round(children, 1)}


def run_part(part: str, scale_name: str, device: str, cache: Path) -> dict[str, Any]:
    """One part in a fresh interpreter; its result and peak RSS come back as JSON."""
    command = [sys.executable, __file__, "--part", part, "--scale", scale_name]
    command += ["--device", device, "--cache", str(cache)]
    completed = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def measure_part(part: str, scale_name: str, device: str, cache: Path) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = PART_FUNCTIONS[part](SCALES[scale_name], resolve_device(device), cache)
    return result | {
        "peak_rss_mb": peak_rss_mb(),
        "seconds": time.perf_counter() - started,
        "load_average": [load_before, os.getloadavg()[0]],
    }


def collect(scale_name: str, device: str, cache: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "scale": scale_name,
        "device": device,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "peak_rss_mb": {},
        "load_average": {},
        "part_seconds": {},
    }
    for part in PARTS:
        if scale_name == "tiny":  # in-process: seconds, not a fresh interpreter per part
            out = measure_part(part, scale_name, device, cache)
        else:
            out = run_part(part, scale_name, device, cache)
        results["peak_rss_mb"][part] = out.pop("peak_rss_mb")
        results["load_average"][part] = out.pop("load_average")
        results["part_seconds"][part] = out.pop("seconds")
        results |= out
    return results


def table(r: dict[str, Any]) -> Iterator[str]:
    a = r["augment_images_per_s"]
    yield "| what | write-up's pipeline | ours | ratio | ours in float32 |"
    yield "|---|---|---|---|---|"
    yield (
        f"| augmentation, images/s (two {VIEW_SIZE} px views) | {a['seed_pipeline']:.1f} "
        f"| {a['ours']:.1f} | {a['ratio']:.1f}x | |"
    )
    for size, t in r["train_images_per_s"].items():
        yield (
            f"| SimCLR training at {size} px, images/s (resnet18, {t['images']} images, "
            f"batch {t['batch']}; ours autocast {t['autocast']}) | {t['seed_loop']:.1f} "
            f"| {t['ours']:.1f} | {t['ratio']:.2f}x | {t['ours_fp32']:.1f} |"
        )
    i = r["inference_ms_per_image"]
    yield ""
    yield "| inference, resnet18 224 px patch scorer, end to end | ms/image |"
    yield "|---|---|"
    yield f"| batch 1 | {i['batch1']:.1f} |"
    yield f"| batch 32 | {i['batch32']:.1f} |"
    yield f"| of which PNG decode + resize (batch 1) | {i['decode_resize_ms']:.1f} |"
    yield ""
    yield f"| bank search, {r['bank_search_ms']['queries']} queries | exact ms | faiss ms |"
    yield "|---|---|---|"
    for name, s in r["bank_search_ms"].items():
        if isinstance(s, dict):
            yield f"| {name} patches | {s['exact']:.1f} | {s['faiss']:.1f} |"
    yield ""
    yield "| part | peak RSS MB (process / largest worker) | seconds | load average |"
    yield "|---|---|---|---|"
    for part in PARTS:
        m, load = r["peak_rss_mb"][part], r["load_average"][part]
        yield (
            f"| {part} | {m['process']:.0f} / {m['largest_worker']:.0f} "
            f"| {r['part_seconds'][part]:.0f} | {load[0]:.1f} -> {load[1]:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about 2 minutes on 2 CPU cores")
    size.add_argument("--tiny", action="store_true", help="seconds; checks the plumbing only")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "simclr-ad-speed",
        help="where the synthetic PNGs and the detector are kept between runs",
    )
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--scale", choices=tuple(SCALES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:  # a subprocess of run_part
        print(json.dumps(measure_part(args.part, args.scale, args.device, args.cache)))
        return 0
    scale_name = "tiny" if args.tiny else "quick" if args.quick else "full"
    args.cache.mkdir(parents=True, exist_ok=True)
    results = collect(scale_name, args.device, args.cache)
    print("\n".join(table(results)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
