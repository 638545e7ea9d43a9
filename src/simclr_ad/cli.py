"""Command line: ``simclr-ad synth | train | config | evaluate | report | demo | predict |
calibrate | serve | export``.

Thin: parse, call the pipeline, print.

Bad input ends with one line on stderr (``error: ...``) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from simclr_ad import __version__
from simclr_ad.errors import UserError
from simclr_ad.progress import log_above_bars
from simclr_ad.train_flags import (
    add_train_arguments,
    comma_list,
    config_overrides,
    refuse_research_flags,
)

if TYPE_CHECKING:
    from simclr_ad.config import TrainConfig
    from simclr_ad.predictor import OperatingPoint

log = logging.getLogger("simclr_ad")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: a mistyped flag or value ends with one line
    naming it (and where the flags are listed), not a page of usage. Commands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="simclr-ad",
        description="SimCLR anomaly detection for visual inspection. "
        "`simclr-ad COMMAND --help` shows a command's flags and examples.",
    )
    parser.add_argument("--version", action="version", version=f"simclr-ad {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic dataset in the MVTec AD layout")
    synth.add_argument("--out", type=Path, required=True, help="dataset root to create (required)")
    synth.add_argument(
        "--categories", type=comma_list, help="comma-separated (default: fabric,pill,bolt)"
    )
    synth.add_argument(
        "--image-size", type=int, default=128, help="image side, pixels (default: %(default)s)"
    )
    synth.add_argument(
        "--n-train", type=int, default=60, help="good images per category (default: %(default)s)"
    )
    synth.add_argument(
        "--n-test",
        type=int,
        default=8,
        help="test images per defect type and of good parts (default: %(default)s)",
    )
    synth.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")

    add_train_arguments(sub.add_parser("train", help="train the SimCLR encoder on good images"))
    add_train_arguments(
        sub.add_parser("config", help="print the configuration train would use, as YAML"),
        out_required=False,
    )

    ev = sub.add_parser("evaluate", help="score test/* with every scorer; metrics.json, scores.csv")
    ev.add_argument(
        "--model", type=Path, required=True, help="model bundle folder, RUN/model (required)"
    )
    ev.add_argument(
        "--data", type=Path, required=True, help="dataset root, MVTec AD layout (required)"
    )
    ev.add_argument("--out", type=Path, required=True, help="evaluation folder (required)")
    ev.add_argument(
        "--categories", type=comma_list, help="comma-separated (default: all of the model's)"
    )
    ev.add_argument("--device", default="auto", help=DEVICE_HELP)
    ev.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier evaluation in --out (default: off)",
    )

    report = sub.add_parser(
        "report", help="rebuild EVAL/report.html from an evaluation's stored data (no model)"
    )
    report.add_argument(
        "--eval", type=Path, required=True, help="evaluation folder, evaluate's --out (required)"
    )

    demo = sub.add_parser(
        "demo", help="synthetic data -> a few epochs of training, on CPU in minutes"
    )
    demo.add_argument(
        "--out", type=Path, default=Path("demo"), help="folder of it all (default: %(default)s)"
    )
    demo.add_argument("--device", default="auto", help=DEVICE_HELP)
    demo.add_argument(
        "--backbone",
        default="resnet18",
        help="timm backbone, the one --weights is for (default: resnet18)",
    )
    demo.add_argument(
        "--weights",
        type=Path,
        metavar="PATH.safetensors",
        help="a local file of pretrained weights (timm key names): their features as they are, no "
        "SimCLR epochs (default: ImageNet weights from the model hub, else random init)",
    )
    _add_deploy_commands(sub)
    for name, command in sub.choices.items():
        _finish_command(name, command)
    return parser


QUIET_HELP = "only warnings and errors, no progress bars (default: off)"
# data.images.MAX_PIXELS, not imported so that --help stays fast (a test keeps the two equal)
DEFAULT_MAX_PIXELS = 40_000_000
DEVICE_HELP = "auto (CUDA when available) | cpu | cuda | cuda:N | mps (default: %(default)s)"


def _finish_command(name: str, command: argparse.ArgumentParser) -> None:
    """What every command has: ``-q`` after its name too, and examples under its flags."""
    command.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,  # not given here: the value before the command stands
        help=QUIET_HELP.replace(" (default", ", here or before the command (default"),
    )
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])


EXAMPLES: dict[str, tuple[str, ...]] = {
    "synth": (
        "simclr-ad synth --out data/synth",
        "simclr-ad synth --out data/pill --categories pill --image-size 256 --n-train 200",
    ),
    "train": (
        "simclr-ad train --data data/synth --out runs/a --weights none --epochs 50",
        "simclr-ad train --data /data/mvtec_ad --categories screw --out runs/screw "
        "--backbone efficientnet_lite0",
        "simclr-ad train --data /data/mvtec_ad --config pretrained-512 --out runs/p512",
        "simclr-ad train --resume runs/a/checkpoints/last.ckpt --out runs/b --epochs 100",
    ),
    "config": (
        "simclr-ad config                       # every key, as train would use it",
        "simclr-ad config --config writeup      # a shipped config file",
        "simclr-ad config --config pretrained-512 --image-size 384 > mine.yaml",
        "simclr-ad train --config mine.yaml --data /data/mvtec_ad --out runs/mine",
    ),
    "evaluate": (
        "simclr-ad evaluate --model runs/a/model --data data/synth --out runs/a/eval",
        "simclr-ad evaluate --model runs/a/model --data data/synth --out runs/a/eval "
        "--categories pill --overwrite",
    ),
    "report": (
        "simclr-ad report --eval runs/a/eval",
        "simclr-ad -q report --eval runs/a/eval",
    ),
    "demo": (
        "simclr-ad demo",
        "simclr-ad demo --out /tmp/demo --device cpu",
    ),
    "predict": (
        "simclr-ad predict --model runs/a/model photos/",
        "simclr-ad predict --model runs/a/model --category pill photos/ --out preds.csv",
        "simclr-ad predict --model pill.onnx --heatmaps maps/ --format json photos/ > preds.json",
        "simclr-ad predict --model runs/a/model --target-fpr 0.005 photos/",
    ),
    "calibrate": (
        "simclr-ad calibrate --model runs/a/model --data good-parts/ --out runs/a/model-recal",
        "simclr-ad calibrate --model runs/a/model --data good-parts/ --category pill "
        "--target-fpr 0.005 --out runs/a/model-recal",
    ),
    "serve": (
        "simclr-ad serve --model runs/a/model",
        "SIMCLR_AD_API_KEY=KEY simclr-ad serve --model runs/a/model --host 0.0.0.0 --workers 2",
        "simclr-ad serve --model pill.onnx --port 9000 --threshold 1.5",
    ),
    "export": (
        "simclr-ad export --model runs/a/model --out model.onnx",
        "simclr-ad export --model runs/a/model --category pill --out pill.onnx --overwrite",
    ),
}


def _add_deploy_commands(sub: argparse._SubParsersAction) -> None:
    """``predict``, ``serve`` and ``export``: using a saved detector."""
    pr = sub.add_parser("predict", help="score image files or folders; one row per image")
    pr.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="image files or folders (required)"
    )
    pr.add_argument(
        "--model", type=Path, required=True, help="RUN/model bundle or FILE.onnx (required)"
    )
    pr.add_argument("--category", help="category of the images (default: the model's only one)")
    pr.add_argument("--out", type=Path, help="output file (default: standard output)")
    pr.add_argument(
        "--format",
        choices=["csv", "json", "table"],
        help="csv: one line per image; json: a list of objects; table: aligned columns to read "
        "(default: table on a terminal, csv to --out or a pipe)",
    )
    _add_operating_point(pr)
    pr.add_argument(
        "--heatmaps", type=Path, help="folder for anomaly-map overlay PNGs (default: none)"
    )
    pr.add_argument(
        "--batch-size", type=int, default=16, help="images per forward pass (default: %(default)s)"
    )
    pr.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="images of more width × height are listed as unreadable, not decoded "
        f"(default: {DEFAULT_MAX_PIXELS})",
    )
    pr.add_argument("--device", default="auto", help=DEVICE_HELP)
    pr.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file (default: off)"
    )

    sv = sub.add_parser("serve", help="HTTP inspection service (FastAPI) with a web page")
    sv.add_argument(
        "--model", type=Path, required=True, help="RUN/model bundle or FILE.onnx (required)"
    )
    sv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 exposes the service, set an API key (default: "
        "%(default)s, this machine only)",
    )
    sv.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    sv.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes, each with its own model (default: %(default)s)",
    )
    sv.add_argument("--device", default="auto", help=DEVICE_HELP)
    sv.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="most requests per forward pass (default: %(default)s)",
    )
    sv.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        help="largest upload, MB (default: %(default)s)",
    )
    sv.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help=f"largest width × height (default: {DEFAULT_MAX_PIXELS})",
    )
    _add_operating_point(sv)
    sv.add_argument(
        "--api-key",
        help="require this key on /v1/* (header X-API-Key); default: env SIMCLR_AD_API_KEY, "
        "else none. The variable keeps the key out of the process list",
    )

    ca = sub.add_parser(
        "calibrate",
        help="new thresholds from new good images, written as a new bundle (no retraining)",
    )
    ca.add_argument(
        "--model", type=Path, required=True, help="model bundle folder, RUN/model (required)"
    )
    ca.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of good images of the category, not used in training, searched "
        "recursively (required)",
    )
    ca.add_argument("--out", type=Path, required=True, help="folder of the new bundle (required)")
    ca.add_argument("--category", help="category of the images (default: the model's only one)")
    ca.add_argument(
        "--target-fpr",
        type=float,
        help="false-alarm rate of the new thresholds (default: the model's, 0.01 unless trained "
        "otherwise)",
    )
    ca.add_argument("--device", default="auto", help=DEVICE_HELP)
    ca.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier bundle at --out, never --model (default: off)",
    )

    ex = sub.add_parser("export", help="export one category's detector to ONNX, parity-checked")
    ex.add_argument(
        "--model", type=Path, required=True, help="model bundle folder, RUN/model (required)"
    )
    ex.add_argument(
        "--format", choices=["onnx"], default="onnx", help="file format (default: %(default)s)"
    )
    ex.add_argument("--category", help="category to export (default: the model's only one)")
    ex.add_argument("--out", type=Path, required=True, help="FILE.onnx (required)")
    ex.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (default: off)"
    )


def _add_operating_point(p: argparse.ArgumentParser) -> None:
    """``--threshold`` | ``--target-fpr``: the verdicts' threshold moved without retraining."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--threshold",
        type=float,
        help="flag images whose primary score is >= this (default: the calibrated threshold)",
    )
    group.add_argument(
        "--target-fpr",
        type=float,
        help="re-derive each threshold for this false-alarm rate from the good scores stored in "
        "the bundle (default: the rate calibrated at training, 0.01)",
    )


def _operating_point(args: argparse.Namespace) -> OperatingPoint:
    from simclr_ad.predictor import OperatingPoint

    return OperatingPoint(threshold=args.threshold, target_fpr=args.target_fpr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        refuse_research_flags(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.quiet else "%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing
    try:
        with log_above_bars():
            code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that left shows here, not at exit
        return code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the reader of stdout left (`| head`): stop quietly
            _silence_stdout()
            return 1
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"error: no space left on the device{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: no descriptor (captured)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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


def _train_config(
    args: argparse.Namespace, *, need_data: bool
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config ``train`` runs with, from ``--config``, the flags and ``--resume``'s
    checkpoint (returned too, read once), before the pretrained recipe."""
    from simclr_ad.config import build_config, flat_keys, load_yaml, resolve_config_file

    overrides = config_overrides(args)
    base = flat_keys(load_yaml(resolve_config_file(args.config))) if args.config else {}
    if args.resume:  # torch is imported only here: `config` without it prints at once
        from simclr_ad.checkpoint import load_checkpoint
        from simclr_ad.pipeline import config_for_resume

        checkpoint = load_checkpoint(args.resume)
        given = {**base, **overrides}
        return config_for_resume(checkpoint["config"], given), checkpoint
    if need_data and not args.data and not base.get("data"):
        raise UserError("--data is required (the dataset root), unless --resume is given")
    return build_config(base, **overrides), None


def cmd_train(args: argparse.Namespace) -> int:
    from simclr_ad.outputs import check_output_folder
    from simclr_ad.pipeline import train

    check_output_folder(args.out, "--out")
    config, checkpoint = _train_config(args, need_data=True)
    result = train(config, resume=args.resume, checkpoint=checkpoint, overwrite=args.overwrite)
    if result.history:
        last = result.history[-1]
        print(
            f"trained {len(result.history)} epochs (last loss {last['loss']:.4f}) "
            f"in {result.seconds:.0f} s"
        )
    print(f"model: {result.model_dir}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print, as YAML ``--config`` reads back, the configuration ``train`` would run with (the
    pretrained recipe applied, as in ``RUN/config.yaml``)."""
    from simclr_ad.config import apply_pretrained_recipe, dump_yaml

    config, _ = _train_config(args, need_data=False)
    config, recipe = apply_pretrained_recipe(config)
    sources = ["defaults", *([f"--config {args.config}"] if args.config else [])]
    sources += ["--resume's checkpoint"] if args.resume else []
    sources += [*(["--set"] if args.set else []), "flags"]
    print(f"# simclr-ad train's configuration: {' < '.join(sources)}")
    if recipe:
        changed = ", ".join(f"{k} {v}" for k, v in recipe.items())
        print(f"# pretrained weights (auto; --no-auto keeps the defaults): {changed}")
    print(dump_yaml(config), end="")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from simclr_ad.devices import resolve_device
    from simclr_ad.evaluation import evaluate, format_tables
    from simclr_ad.outputs import check_output_folder

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

    demo = run_demo(args.out, device=args.device, backbone=args.backbone, weights=args.weights)
    print(format_tables(demo.metrics))
    print(f"model: {demo.model_dir}\nevaluation: {demo.eval_dir}")
    print(f"report: {demo.report}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from simclr_ad.devices import resolve_device
    from simclr_ad.predict import check_outputs, collect_images, default_format, predict_files
    from simclr_ad.predictor import open_predictor

    check_outputs(args.out, args.heatmaps, overwrite=args.overwrite)
    point = _operating_point(args)
    files = collect_images(args.paths)
    predictor = open_predictor(args.model, resolve_device(args.device), point)
    category = predictor.resolve_category(args.category)
    output_format = args.format or default_format(args.out, sys.stdout)
    # rows streamed to the terminal: a bar would land between them (a table comes at the end)
    rows_on_terminal = args.out is None and output_format != "table" and sys.stdout.isatty()
    summary = predict_files(
        predictor,
        files,
        category,
        out=args.out,
        heatmaps=args.heatmaps,
        batch_size=args.batch_size,
        progress=not (args.quiet or rows_on_terminal),
        **({} if args.max_pixels is None else {"max_pixels": args.max_pixels}),
        output_format=output_format,
    )
    print(
        f"{summary.n_images} images ({category}): {summary.n_anomalous} anomalous, "
        f"{summary.n_errors} unreadable, in {summary.seconds:.1f} s"
        + (f"; predictions: {args.out}" if args.out else ""),
        file=sys.stderr if args.out is None else sys.stdout,
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from simclr_ad.devices import resolve_device
    from simclr_ad.recalibrate import recalibrate

    result = recalibrate(
        args.model,
        args.data,
        args.out,
        category=args.category,
        target_fpr=args.target_fpr,
        device=resolve_device(args.device),
        overwrite=args.overwrite,
    )
    for category in result.categories:
        old, new = result.before[category], result.after[category]
        print(f"{category}: threshold {old.threshold:.6g} -> {new.threshold:.6g} ({new.promise})")
    old_rate = next(iter(result.before.values()))
    print(
        f"the old threshold flagged {result.flagged_before} of the {result.n} good images "
        f"(target {old_rate.target_fpr:g})"
    )
    print(f"model: {result.out} (the old bundle {args.model} is unchanged)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import math
    import os

    from simclr_ad.devices import resolve_device
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
        operating_point=_operating_point(args),
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
    "config": cmd_config,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "demo": cmd_demo,
    "predict": cmd_predict,
    "calibrate": cmd_calibrate,
    "serve": cmd_serve,
    "export": cmd_export,
}
