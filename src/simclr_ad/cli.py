"""Command line: ``simclr-ad synth | train | evaluate | report | demo | predict | serve | export``.

Thin: parse, call the pipeline, print.

Bad input ends with one line on stderr (``error: ...``) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from simclr_ad import __version__
from simclr_ad.errors import UserError

log = logging.getLogger("simclr_ad")


def _categories(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset root in the MVTec AD layout")
    p.add_argument("--categories", type=_categories, help="comma-separated (default: all found)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, model)")
    p.add_argument("--config", type=Path, help="YAML file of config values (flags override it)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--backbone", help="timm model name (default resnet18)")
    p.add_argument("--weights", help="imagenet | none | PATH (.safetensors or state dict)")
    p.add_argument("--augment", help="seed (the write-up's) | default (defect-preserving)")
    p.add_argument(
        "--train-crop",
        type=int,
        help="train on crops of this many pixels at --image-size's resolution instead of on "
        "whole images (0, the default); the detector still sees whole images",
    )
    p.add_argument("--lr", type=float)
    p.add_argument("--temperature", type=float)
    p.add_argument("--objective", help="simclr (default) | msc (mean-shifted) | cutpaste")
    p.add_argument(
        "--frozen-stages",
        type=int,
        help="backbone stages kept frozen (default -1: none for simclr, before stride 16 else)",
    )
    p.add_argument("--msc-temperature", type=float, help="mean-shifted loss temperature (0.25)")
    p.add_argument("--msc-angular", type=float, help="weight of msc's angular-centre term (0)")
    p.add_argument(
        "--cutpaste-dense",
        type=float,
        help="cutpaste: weight of a per-location loss that learns where the defect was pasted, "
        "on the detector's patch stages (0: off)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        help="share of train/good held out for the thresholds with --calibration holdout (0.1)",
    )
    p.add_argument(
        "--no-auto",
        dest="auto",
        action="store_const",
        const=False,
        help="pretrained weights: keep the defaults of epochs, image size and score rule as they "
        "are (by default those left unset become 0 epochs, 512 px and the max rule)",
    )
    p.add_argument(
        "--aspect",
        choices=["auto", "square"],
        help="auto (default): elongated images keep their aspect ratio, the shorter side at "
        "--image-size; square: resized to a square",
    )
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument(
        "--no-amp",
        dest="amp",
        action="store_const",
        const=False,
        help="train in float32 (default: bf16/fp16 autocast on CUDA and on CPUs with native bf16)",
    )
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    d = p.add_argument_group("detector (fitted after training, calibrated on held-out good images)")
    d.add_argument("--scorers", type=_categories, help="comma-separated: patch, knn_h, knn_z, ...")
    d.add_argument("--primary", help="the scorer whose verdict counts (default patch)")
    d.add_argument(
        "--pooled", action="store_const", const=True, help="one scorer for all categories"
    )
    d.add_argument("--target-fpr", type=float, help="false-alarm rate for the thresholds (0.01)")
    d.add_argument(
        "--calibration",
        choices=["crossfit", "holdout"],
        help="crossfit (default): thresholds from cross-fitted scores of every good training "
        "image; holdout: from a held-out --val-fraction",
    )
    d.add_argument(
        "--calibration-folds",
        type=int,
        help="folds of the global scorers' cross-fitted scores (default 5; patch: leave one out)",
    )
    d.add_argument("--coreset-ratio", type=float, help="share of patches kept in the memory bank")
    d.add_argument("--knn-k", type=int, help="neighbours of the knn scorers (5)")
    d.add_argument("--photometric", help="brightness correction: none | gain | standardize")
    d.add_argument("--patch-stages", help="backbone stages of the patch features, e.g. 1,2")
    d.add_argument("--patch-k", type=int, help="bank neighbours averaged per patch (1)")
    d.add_argument(
        "--bank-rotations",
        type=int,
        help="1 | 2 | 4: the patch bank also sees the training images turned by 180° (2) or by "
        "90, 180 and 270° (4); for parts that lie at any angle (1)",
    )
    d.add_argument("--map-sigma", type=float, help="Gaussian smoothing of the maps, pixels (4)")
    d.add_argument("--score-rule", help="max | topk_mean (image score from the anomaly map)")
    d.add_argument("--topk-fraction", type=float, help="share of pixels topk_mean averages (0.01)")
    p.add_argument(
        "--resume", type=Path, help="checkpoint to continue from (RUN/checkpoints/*.ckpt)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run's checkpoints")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simclr-ad", description="SimCLR anomaly detection for visual inspection"
    )
    parser.add_argument("--version", action="version", version=f"simclr-ad {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic dataset in the MVTec AD layout")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument(
        "--categories", type=_categories, help="comma-separated (default: fabric,pill,bolt)"
    )
    synth.add_argument("--image-size", type=int, default=128)
    synth.add_argument("--n-train", type=int, default=60)
    synth.add_argument(
        "--n-test", type=int, default=8, help="test images per defect type and of good parts"
    )
    synth.add_argument("--seed", type=int, default=0)

    _add_train_arguments(sub.add_parser("train", help="train the SimCLR encoder on good images"))

    ev = sub.add_parser("evaluate", help="score test/* with every scorer; metrics.json, scores.csv")
    ev.add_argument("--model", type=Path, required=True, help="model bundle folder (RUN/model)")
    ev.add_argument("--data", type=Path, required=True, help="dataset root in the MVTec AD layout")
    ev.add_argument("--out", type=Path, required=True, help="evaluation folder")
    ev.add_argument(
        "--categories", type=_categories, help="comma-separated (default: all of the model's)"
    )
    ev.add_argument("--device", default="auto")
    ev.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation in --out"
    )

    report = sub.add_parser(
        "report", help="rebuild EVAL/report.html from an evaluation's stored data (no model)"
    )
    report.add_argument("--eval", type=Path, required=True, help="evaluation folder (EVAL)")

    demo = sub.add_parser(
        "demo", help="synthetic data -> a few epochs of training, on CPU in minutes"
    )
    demo.add_argument("--out", type=Path, default=Path("demo"))
    demo.add_argument("--device", default="auto")
    _add_deploy_commands(sub)
    return parser


def _add_deploy_commands(sub: argparse._SubParsersAction) -> None:
    """``predict``, ``serve`` and ``export``: using a saved detector."""
    pr = sub.add_parser("predict", help="score image files or folders; one CSV row per image")
    pr.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files or folders")
    pr.add_argument("--model", type=Path, required=True, help="RUN/model bundle or FILE.onnx")
    pr.add_argument("--category", help="category of the images (default: the model's only one)")
    pr.add_argument("--out", type=Path, help="CSV file (default: standard output)")
    pr.add_argument("--heatmaps", type=Path, help="folder for anomaly-map overlay PNGs")
    pr.add_argument("--batch-size", type=int, default=16)
    pr.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="images of more width × height are listed as unreadable, not decoded (40000000)",
    )
    pr.add_argument("--device", default="auto")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing --out CSV")

    sv = sub.add_parser("serve", help="HTTP inspection service (FastAPI) with a web page")
    sv.add_argument("--model", type=Path, required=True, help="RUN/model bundle or FILE.onnx")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="processes, each with its own model")
    sv.add_argument("--device", default="auto")
    sv.add_argument("--max-batch", type=int, default=8, help="most requests per forward pass")
    sv.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (MB)")
    sv.add_argument(
        "--max-pixels", type=int, default=None, help="largest width × height (40000000)"
    )
    sv.add_argument(
        "--api-key",
        help="require this key on /v1/* (header X-API-Key); default: env SIMCLR_AD_API_KEY, "
        "else none. The variable keeps the key out of the process list",
    )

    ex = sub.add_parser("export", help="export one category's detector to ONNX, parity-checked")
    ex.add_argument("--model", type=Path, required=True, help="model bundle folder (RUN/model)")
    ex.add_argument("--format", choices=["onnx"], default="onnx")
    ex.add_argument("--category", help="category to export (default: the model's only one)")
    ex.add_argument("--out", type=Path, required=True, help="FILE.onnx")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.quiet else "%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"error: no space left on the device{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _refuse_non_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} already exists and is not empty; choose another --out")


def cmd_synth(args: argparse.Namespace) -> int:
    from simclr_ad.data.synthetic import CATEGORIES, generate_dataset

    _refuse_non_empty(args.out)
    summary = generate_dataset(
        args.out,
        categories=args.categories or tuple(CATEGORIES),
        image_size=args.image_size,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
    )
    print(f"wrote synthetic dataset to {args.out} ({', '.join(summary.categories)})")
    return 0


def _config_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The config keys given as flags (argparse's None means "not given")."""
    import dataclasses

    from simclr_ad.config import TrainConfig

    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }


def cmd_train(args: argparse.Namespace) -> int:
    from simclr_ad.checkpoint import load_checkpoint
    from simclr_ad.config import build_config, load_yaml
    from simclr_ad.outputs import check_output_folder
    from simclr_ad.pipeline import config_for_resume, train

    check_output_folder(args.out, "--out")
    overrides = _config_overrides(args)
    base = load_yaml(args.config) if args.config else {}
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        given = {**base, **{k: v for k, v in overrides.items() if v is not None}}
        config = config_for_resume(checkpoint["config"], given)
    else:
        if not args.data and not base.get("data"):
            raise UserError("--data is required (the dataset root), unless --resume is given")
        config = build_config(base, **overrides)
    result = train(config, resume=args.resume, checkpoint=checkpoint, overwrite=args.overwrite)
    if result.history:
        last = result.history[-1]
        print(
            f"trained {len(result.history)} epochs (last loss {last['loss']:.4f}) "
            f"in {result.seconds:.0f} s"
        )
    print(f"model: {result.model_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from simclr_ad.evaluation import evaluate, format_tables
    from simclr_ad.outputs import check_output_folder
    from simclr_ad.pipeline import resolve_device

    check_output_folder(args.out, "--out")
    result = evaluate(
        args.model,
        args.data,
        args.out,
        categories=args.categories or (),
        device=resolve_device(args.device),
        overwrite=args.overwrite,
    )
    print(format_tables(result.metrics))
    print(f"metrics: {args.out / 'metrics.json'}  scores: {args.out / 'scores.csv'}")
    print(f"report: {result.report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from simclr_ad.report.page import build_report

    if not args.eval.is_dir():
        raise UserError(f"--eval {args.eval} is not a folder (expected an evaluate --out folder)")
    print(f"report: {build_report(args.eval)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from simclr_ad.demo import run_demo
    from simclr_ad.evaluation import format_tables

    demo = run_demo(args.out, device=args.device)
    print(format_tables(demo.metrics))
    print(f"model: {demo.model_dir}\nevaluation: {demo.eval_dir}")
    print(f"report: {demo.report}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from simclr_ad.pipeline import resolve_device
    from simclr_ad.predict import check_outputs, collect_images, predict_files
    from simclr_ad.predictor import open_predictor

    check_outputs(args.out, args.heatmaps, overwrite=args.overwrite)
    files = collect_images(args.paths)
    predictor = open_predictor(args.model, resolve_device(args.device))
    category = predictor.resolve_category(args.category)
    summary = predict_files(
        predictor,
        files,
        category,
        out=args.out,
        heatmaps=args.heatmaps,
        batch_size=args.batch_size,
        progress=not args.quiet,
        **({} if args.max_pixels is None else {"max_pixels": args.max_pixels}),
    )
    print(
        f"{summary.n_images} images ({category}): {summary.n_anomalous} anomalous, "
        f"{summary.n_errors} unreadable, in {summary.seconds:.1f} s"
        + (f"; predictions: {args.out}" if args.out else ""),
        file=sys.stderr if args.out is None else sys.stdout,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import math
    import os

    from simclr_ad.pipeline import resolve_device
    from simclr_ad.service.app import API_KEY_ENV
    from simclr_ad.service.server import serve

    if not (args.max_upload_mb > 0 and math.isfinite(args.max_upload_mb)):
        raise UserError(f"--max-upload-mb must be a finite number > 0, got {args.max_upload_mb}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in [0, 65535], got {args.port}")
    resolve_device(args.device)  # checked here: with --workers only the workers load the model
    serve(
        args.model,
        host=args.host,
        port=args.port,
        workers=args.workers,
        device=args.device,
        max_batch=args.max_batch,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from simclr_ad.export_onnx import PARITY_TOLERANCE, export_onnx
    from simclr_ad.outputs import check_output_file
    from simclr_ad.predictor import open_bundle

    check_output_file(args.out, "--out", parents=True)
    predictor = open_bundle(args.model, torch.device("cpu"))
    category = predictor.resolve_category(args.category)
    result = export_onnx(predictor, category, args.out, overwrite=args.overwrite)
    print(f"exported {category} to {result.path}; parity on {len(result.torch_scores)} images:")
    for i, (a, b) in enumerate(zip(result.torch_scores, result.onnx_scores, strict=True)):
        print(f"  image {i}: pytorch {a:.6f}  onnxruntime {b:.6f}")
    print(
        f"max relative difference {result.max_relative_difference:.2e} "
        f"(tolerance {PARITY_TOLERANCE:.0e}): ok"
    )
    return 0


COMMANDS = {
    "synth": cmd_synth,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "demo": cmd_demo,
    "predict": cmd_predict,
    "serve": cmd_serve,
    "export": cmd_export,
}
