"""Command line: ``simclr-ad synth | train | evaluate | report | demo``. Thin: parse, call the
pipeline, print.

Bad input ends with one line on stderr (``error: ...``) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
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
    p.add_argument("--lr", type=float)
    p.add_argument("--temperature", type=float)
    p.add_argument("--val-fraction", type=float, help="share of train/good held out (default 0.1)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument(
        "--no-amp", dest="amp", action="store_const", const=False, help="disable AMP on CUDA"
    )
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    d = p.add_argument_group("detector (fitted after training, calibrated on held-out good images)")
    d.add_argument("--scorers", type=_categories, help="comma-separated: patch, knn_h, knn_z, ...")
    d.add_argument("--primary", help="the scorer whose verdict counts (default patch)")
    d.add_argument(
        "--pooled", action="store_const", const=True, help="one scorer for all categories"
    )
    d.add_argument("--target-fpr", type=float, help="false-alarm rate for the thresholds (0.01)")
    d.add_argument("--coreset-ratio", type=float, help="share of patches kept in the memory bank")
    d.add_argument("--knn-k", type=int, help="neighbours of the knn scorers (5)")
    d.add_argument("--photometric", help="brightness correction: none | gain | standardize")
    d.add_argument("--patch-stages", help="backbone stages of the patch features, e.g. 1,2")
    d.add_argument("--score-rule", help="max | topk_mean (image score from the anomaly map)")
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
    return parser


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
    from simclr_ad.pipeline import config_for_resume, train

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
    from simclr_ad.pipeline import resolve_device

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


COMMANDS = {
    "synth": cmd_synth,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "demo": cmd_demo,
}
