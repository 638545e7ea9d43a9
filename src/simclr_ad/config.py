"""Typed, frozen configuration: defaults, YAML files and CLI overrides, validated in one place.

Precedence: dataclass defaults < ``--config FILE.yaml`` < ``--set KEY=VALUE`` < explicit
command-line flags. ``--config`` also takes the name of a config file shipped inside the package
(``--config pretrained-512``, ``--config experiments/bank-rotations``), so the documented recipes
work from a wheel as from a clone.

The keys fall into sections (``SECTIONS``: data, model, loop, run, detector), each key in one:
a file may be flat (``epochs: 3``, every ``RUN/config.yaml`` so far) or nested (``loop:`` then
``epochs: 3``), and ``--set`` takes ``epochs=3`` or ``loop.epochs=3``. ``config.yaml`` is written
flat, the form every run folder already holds and ``--resume`` reads. Unknown keys and
out-of-range values raise :class:`~simclr_ad.errors.UserError` naming the key, the value and the
valid choices. The resolved config is written next to every run (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from simclr_ad.errors import UserError
from simclr_ad.scoring.registry import (
    ALL_SCORERS,
    COVARIANCES,
    DEFAULT_SCORE_RULE,
    DEFAULT_SCORERS,
    SCORE_RULES,
    SCORERS,
)

AUGMENT_PRESETS = ("seed", "default")
OBJECTIVES = ("simclr", "msc", "cutpaste")  # objectives.OBJECTIVE_CLASSES (checked by a test)
SCORER_NAMES = tuple(SCORERS)  # scoring.registry, the one list of scorers
BANK_ROTATIONS = (1, 2, 4)  # quarter turns that keep a square image exact
PHOTOMETRIC_MODES = ("none", "gain", "standardize")
CALIBRATIONS = ("crossfit", "holdout")  # detector.fit_detector
ASPECTS = ("auto", "square")  # data.shape.choose_shape
# With pretrained weights and ``auto``, the keys at their defaults and not ``pinned`` take these
# values: the detector measured best on real parts (BENCHMARKS.md), not the write-up's SimCLR run.
# score_rule and patch_stages keep their defaults; being recipe keys, they stay free for auto's
# fine candidate unless the user sets them
PRETRAINED_RECIPE: dict[str, Any] = {
    "epochs": 0,
    "image_size": 512,
    "positional": False,
    "score_rule": DEFAULT_SCORE_RULE,
    "patch_stages": (),
}
MAX_WIDTH = 65536  # of a head layer: a 65536² float32 layer alone is 16 GiB
MAX_SEED = 2**63 - 1  # torch's generators take 64 bits; derived seeds add to it
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"  # package data, in the wheel


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults follow the reference write-up."""

    data: str = ""
    categories: tuple[str, ...] = ()  # empty: every category found under ``data``
    out: str = ""
    # data
    auto: bool = True  # pretrained weights: keys not set follow PRETRAINED_RECIPE
    # keys of PRETRAINED_RECIPE set explicitly (a config file, --set, a flag): kept as given
    pinned: tuple[str, ...] = ()
    val_fraction: float = 0.1  # held out for the thresholds (calibration: holdout only)
    val_min: int = 5  # at least this many validation images where a category has 4x as many
    image_size: int = 224  # the side of square images; the shorter side of elongated ones
    aspect: str = "auto"  # auto: elongated categories keep their aspect ratio; square: squash
    # model
    backbone: str = "resnet18"
    weights: str = "imagenet"  # imagenet | none | PATH to .safetensors / state dict
    head_hidden: tuple[int, ...] = (512, 256)
    head_out: int = 128
    head_dropout: tuple[float, ...] = (0.1, 0.05)
    # optimisation
    epochs: int = 50
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-6
    temperature: float = 0.07
    augment: str = "default"
    train_crop: int = 0  # 0: train on whole images; N: on N-px crops at image_size's resolution
    # self-supervised objective (see objectives.py): simclr | msc | cutpaste
    objective: str = "simclr"
    frozen_stages: int = -1  # frozen backbone stages; -1: none for simclr, else before stride 16
    msc_temperature: float = 0.25  # the mean-shifted loss's NT-Xent temperature (the paper's)
    msc_angular: float = 0.0  # weight of the mean-shifted loss's angular-centre term (0: off)
    cutpaste_dense: float = 0.0  # weight of cutpaste's per-location loss on the patch stages
    # run
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 10
    amp: bool = True  # CUDA, and CPUs with native bf16 (AVX512-BF16/AMX)
    compile: bool = False
    # detector: fitted on train good images after training, calibrated on the validation split
    scorers: tuple[str, ...] = DEFAULT_SCORERS  # "all": every registered one (the write-up's)
    primary: str = "patch"
    pooled: bool = False  # one scorer and threshold over all categories (the write-up's setting)
    target_fpr: float = 0.01
    calibration: str = "crossfit"  # thresholds from cross-fitted scores of all good images
    calibration_folds: int = 5
    knn_k: int = 5
    mahalanobis_covariance: str = "ledoit_wolf"
    patch_stages: tuple[int, ...] = ()  # feature_info indices; empty: the stride-8 and -16 stages
    coreset_ratio: float = 0.1
    max_patch_candidates: int = 100_000
    bank_rotations: int = 1  # 1, 2 or 4: the patch bank also sees the images turned by 180 / 90°
    patch_k: int = 1  # patch score: mean distance to the k nearest bank patches
    map_sigma: float = 4.0
    score_rule: str = DEFAULT_SCORE_RULE  # topk_mean: top 1% of the map; "max" is PatchCore's
    topk_fraction: float = 0.01  # the share of map pixels averaged by "topk_mean"
    positional: bool = False  # patch maps standardised per position by good images' (crossfit)
    photometric: str = "gain"  # per-image brightness correction: none | gain | standardize
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        _validate(self)

    def section(self, name: str) -> dict[str, Any]:
        """The keys of one section (``SECTIONS``) and their values, e.g. ``section("detector")``
        is what ``detector.DetectorSettings.from_config`` is built from."""
        return {key: getattr(self, key) for key in SECTIONS[name]}

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-friendly dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


# Every key in exactly one section (checked by a test): what the data loading, the model
# (``models.simclr.ModelSpec``), the training loop (``training.LoopSettings``), the run and the
# detector (``detector.DetectorSettings``) each consume.
SECTIONS: dict[str, tuple[str, ...]] = {
    "data": (
        "data",
        "categories",
        "auto",
        "pinned",
        "val_fraction",
        "val_min",
        "image_size",
        "aspect",
    ),
    "model": ("backbone", "weights", "head_hidden", "head_out", "head_dropout"),
    "loop": (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "temperature",
        "augment",
        "train_crop",
        "objective",
        "frozen_stages",
        "msc_temperature",
        "msc_angular",
        "cutpaste_dense",
        "checkpoint_every",
        "amp",
        "compile",
    ),
    "run": ("out", "device", "seed"),
    "detector": (
        "scorers",
        "primary",
        "pooled",
        "target_fpr",
        "calibration",
        "calibration_folds",
        "knn_k",
        "mahalanobis_covariance",
        "patch_stages",
        "coreset_ratio",
        "max_patch_candidates",
        "bank_rotations",
        "patch_k",
        "map_sigma",
        "score_rule",
        "topk_fraction",
        "positional",
        "photometric",
        "eval_batch_size",
    ),
}
SECTION_OF = {key: name for name, keys in SECTIONS.items() for key in keys}

_TUPLE_ELEMENTS: dict[str, type] = {"patch_stages": int}


def _fail(key: str, value: object, expected: str) -> None:
    raise UserError(f"invalid config value {key}={value!r}: expected {expected}")


def _check_finite(cfg: TrainConfig) -> None:
    """Every float (and every float in a list) is finite, whatever the key: ``inf`` would pass
    range checks such as ``lr > 0``."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            _fail(field.name, value, "a finite number")


def _validate(cfg: TrainConfig) -> None:
    _check_finite(cfg)
    checks: list[tuple[str, bool, str]] = [
        (
            "pinned",
            set(cfg.pinned) <= set(PRETRAINED_RECIPE),
            f"among {', '.join(PRETRAINED_RECIPE)}",
        ),
        ("val_fraction", 0.0 <= cfg.val_fraction < 1.0, "a number in [0, 1)"),
        ("val_min", cfg.val_min >= 0, "an integer >= 0"),
        ("image_size", 32 <= cfg.image_size <= 2048, "an integer in [32, 2048]"),
        ("aspect", cfg.aspect in ASPECTS, f"one of {', '.join(ASPECTS)}"),
        ("head_out", 1 <= cfg.head_out <= MAX_WIDTH, f"an integer in [1, {MAX_WIDTH}]"),
        (
            "head_hidden",
            all(1 <= d <= MAX_WIDTH for d in cfg.head_hidden),
            f"a list of integers in [1, {MAX_WIDTH}]",
        ),
        (
            "head_dropout",
            len(cfg.head_dropout) == len(cfg.head_hidden)
            and all(0.0 <= p < 1.0 for p in cfg.head_dropout),
            f"one probability in [0, 1) per hidden layer ({len(cfg.head_hidden)})",
        ),
        ("epochs", cfg.epochs >= 0, "an integer >= 0"),
        ("batch_size", cfg.batch_size >= 2, "an integer >= 2 (NT-Xent needs negatives)"),
        ("lr", cfg.lr > 0, "a number > 0"),
        ("weight_decay", cfg.weight_decay >= 0, "a number >= 0"),
        ("temperature", cfg.temperature > 0, "a number > 0"),
        ("augment", cfg.augment in AUGMENT_PRESETS, f"one of {', '.join(AUGMENT_PRESETS)}"),
        (
            "train_crop",
            cfg.train_crop == 0 or 32 <= cfg.train_crop <= cfg.image_size,
            f"0 (whole images) or an integer in [32, image_size={cfg.image_size}]",
        ),
        ("objective", cfg.objective in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
        ("frozen_stages", cfg.frozen_stages >= -1, "an integer >= 0, or -1 (the objective's)"),
        ("msc_temperature", cfg.msc_temperature > 0, "a number > 0"),
        ("msc_angular", cfg.msc_angular >= 0, "a number >= 0"),
        (
            "cutpaste_dense",
            cfg.cutpaste_dense >= 0 and (cfg.cutpaste_dense == 0 or cfg.objective == "cutpaste"),
            "a number >= 0 (0: off), and 0 unless objective is cutpaste",
        ),
        ("device", bool(DEVICE_PATTERN.match(cfg.device)), "auto, cpu, cuda, cuda:N or mps"),
        ("seed", 0 <= cfg.seed <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
        ("checkpoint_every", cfg.checkpoint_every >= 1, "an integer >= 1"),
        ("backbone", bool(cfg.backbone), "a timm model name"),
        ("weights", bool(cfg.weights), "imagenet, none or a path to a weights file"),
        (
            "scorers",
            bool(cfg.scorers) and set(cfg.scorers) <= set(SCORER_NAMES),
            f"a non-empty list of {', '.join(SCORER_NAMES)}, or {ALL_SCORERS}",
        ),
        (
            "primary",
            cfg.primary in cfg.scorers,
            f"one of the scorers ({', '.join(cfg.scorers)}); add it to scorers, or scorers: all",
        ),
        ("target_fpr", 0.0 < cfg.target_fpr < 0.5, "a false-alarm rate in (0, 0.5)"),
        ("calibration", cfg.calibration in CALIBRATIONS, f"one of {', '.join(CALIBRATIONS)}"),
        ("calibration_folds", cfg.calibration_folds >= 2, "an integer >= 2"),
        ("knn_k", cfg.knn_k >= 1, "an integer >= 1"),
        (
            "mahalanobis_covariance",
            cfg.mahalanobis_covariance in COVARIANCES,
            f"one of {', '.join(COVARIANCES)}",
        ),
        ("patch_stages", all(s >= 0 for s in cfg.patch_stages), "backbone stage indices >= 0"),
        ("coreset_ratio", 0.0 < cfg.coreset_ratio <= 1.0, "a number in (0, 1]"),
        ("max_patch_candidates", cfg.max_patch_candidates >= 1, "an integer >= 1"),
        ("bank_rotations", cfg.bank_rotations in BANK_ROTATIONS, "1, 2 or 4"),
        ("patch_k", cfg.patch_k >= 1, "an integer >= 1"),
        ("map_sigma", cfg.map_sigma >= 0, "a number >= 0"),
        ("topk_fraction", 0.0 < cfg.topk_fraction <= 1.0, "a number in (0, 1]"),
        ("score_rule", cfg.score_rule in SCORE_RULES, f"one of {', '.join(SCORE_RULES)}"),
        (
            "positional",
            not cfg.positional or (cfg.calibration == "crossfit" and not cfg.pooled),
            "false with holdout calibration or a pooled detector (its statistics come from "
            "cross-fitted maps of one category)",
        ),
        (
            "photometric",
            cfg.photometric in PHOTOMETRIC_MODES,
            f"one of {', '.join(PHOTOMETRIC_MODES)}",
        ),
        ("eval_batch_size", cfg.eval_batch_size >= 1, "an integer >= 1"),
    ]
    for key, ok, expected in checks:
        if not ok:
            _fail(key, getattr(cfg, key), expected)
    for name in cfg.categories:
        if not name or "/" in name or name.startswith("."):
            _fail("categories", name, "plain folder names")


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise UserError."""
    default = field.default
    key = field.name
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            _fail(key, value, "a list")
        element = _TUPLE_ELEMENTS.get(key) or (type(default[0]) if default else str)
        if element is not str:  # "1,2" from a flag
            value = [_number(key, v, element) if isinstance(v, str) else v for v in value]
        values = tuple(_coerce_scalar(key, v, element) for v in value)
        return tuple(SCORERS) if key == "scorers" and values == (ALL_SCORERS,) else values
    return _coerce_scalar(key, value, type(default))


def _number(key: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        _fail(key, text, f"a list of {kind.__name__} values")


def _parse_number(text: str, kind: type) -> Any:
    """``text`` as an int or float when it reads as one, else ``text`` unchanged."""
    try:
        return kind(text.strip())
    except ValueError:
        return text


def _coerce_scalar(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        _fail(key, value, "true or false")
    if kind in (int, float) and isinstance(value, str):  # YAML reads ``1e-3`` as text
        value = _parse_number(value, kind)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, value, "a number")
        return float(value)
    if value is None or isinstance(value, dict | list):
        _fail(key, value, "a string")
    return str(value)


def build_config(base: Mapping[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Build a validated TrainConfig from a mapping (e.g. a YAML file) plus keyword overrides.

    ``None`` overrides are ignored, so argparse defaults of ``None`` mean "not given". The keys
    of ``PRETRAINED_RECIPE`` given are ``pinned``: neither the recipe nor ``auto`` changes them,
    even where their value is the default's (``--set image_size=224``). A mapping that
    states ``pinned`` itself (a written ``config.yaml``, ``default.yaml``) pins just those.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    file_keys = flat_keys(base or {})
    given = flat_keys({k: v for k, v in overrides.items() if v is not None})
    merged = {**file_keys, **given}
    unknown = sorted(set(merged) - set(fields))
    if unknown:
        raise UserError(_unknown_keys(unknown, fields))
    values = {k: _coerce(fields[k], v) for k, v in merged.items()}
    pinned = set(values.get("pinned", ())) | set(given)
    if "pinned" not in file_keys:
        pinned |= set(file_keys)
    stray = sorted(set(values.get("pinned", ())) - set(PRETRAINED_RECIPE))  # refused below
    values["pinned"] = tuple(key for key in PRETRAINED_RECIPE if key in pinned) + tuple(stray)
    return TrainConfig(**values)


def flat_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested sections (``detector: {patch_k: 3}``) and dotted keys (``detector.patch_k``) as
    the flat keys of ``TrainConfig``; flat keys pass as they are, unknown ones are left for
    ``build_config`` to name.

    Raises:
        UserError: for a key under a section it does not belong to, naming its own section.
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        section, dot, name = str(key).partition(".")
        if not dot and section in SECTIONS and isinstance(value, Mapping):
            items = {f"{section}.{k}": v for k, v in value.items()}
            flat.update(flat_keys(items))
            continue
        if dot and section in SECTIONS:
            if name in SECTION_OF and SECTION_OF[name] != section:
                raise UserError(
                    f"config key {key}: {name} is in the {SECTION_OF[name]} section "
                    f"({SECTION_OF[name]}.{name})"
                )
            key = name
        flat[key] = value
    return flat


def _unknown_keys(unknown: list[str], valid: Mapping[str, Any]) -> str:
    """One line naming the unknown keys, the close matches of each, then every valid key."""
    close = {key: difflib.get_close_matches(key, valid, n=3) for key in unknown}
    hints = "; ".join(f"{k}: did you mean {' or '.join(m)}?" for k, m in close.items() if m)
    return (
        f"unknown config key(s) {', '.join(unknown)}"
        + (f" ({hints})" if hints else "")
        + f"; valid keys: {', '.join(sorted(valid))}"
    )


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` values as a mapping; each VALUE read as a YAML scalar or list
    (``3``, ``1e-3``, ``true``, ``[1, 2]``, ``a,b``), later ones winning. Keys are checked by
    ``build_config``."""
    values: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set bank_rotations=2")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item}: not a YAML value: {str(exc).splitlines()[0]}") from None
        values[key.strip()] = text if value is None else value
    return values


def held_out_fraction(config: TrainConfig | Mapping[str, Any]) -> float:
    """The share of train/good held out: ``val_fraction`` for holdout calibration, none for
    cross-fitted calibration (every good image is fitted on and calibrates)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    holdout = values.get("calibration", "holdout") == "holdout"  # older runs held out
    return float(values["val_fraction"]) if holdout else 0.0


def apply_pretrained_recipe(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """With pretrained weights and ``auto``: every key of PRETRAINED_RECIPE that is still at
    its default and not ``pinned`` takes the recipe's value. Returns the config and what
    changed (key -> value)."""
    if not config.auto or config.weights == "none":
        return config, {}
    defaults = TrainConfig()
    changes = {
        key: value
        for key, value in PRETRAINED_RECIPE.items()
        if key not in config.pinned and getattr(config, key) == getattr(defaults, key)
    }
    return dataclasses.replace(config, **changes), changes


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); expected a YAML file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(
            f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return data


def dump_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def shipped_configs() -> dict[str, Path]:
    """The config files shipped with the package, by name: the path under ``configs/`` less
    ``.yaml`` (``default``, ``experiments/bank-rotations``)."""
    return {
        path.relative_to(SHIPPED_CONFIGS).with_suffix("").as_posix(): path
        for path in sorted(SHIPPED_CONFIGS.rglob("*.yaml"), key=lambda p: (len(p.parts), p))
    }


def resolve_config_file(value: str) -> Path:
    """``--config``'s value as a file: an existing path as given, else a shipped config's name.

    Raises:
        UserError: for a name that is neither a file nor a shipped config (the message lists
            the shipped names); a missing path is left to ``load_yaml`` to report, with the
            shipped name to use where its file name is one.
    """
    path = Path(value)
    if path.exists():
        return path
    shipped = shipped_configs()
    if value in shipped:
        return shipped[value]
    names = ", ".join(shipped)
    shipped_like = len(path.parts) == 1 or path.parts[0] == "experiments"
    if path.suffix.lower() not in (".yaml", ".yml") and shipped_like:
        raise UserError(f"--config {value}: no such file, nor a shipped config ({names})")
    if path.stem in shipped:
        raise UserError(
            f"cannot read config file {value}: no such file; the shipped {path.name} is "
            f"--config {path.stem}"
        )
    return path
