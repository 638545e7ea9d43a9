"""Every flag of every command explains itself: help with its default, the valid choices where
the config validates against a fixed set, examples under each command, ``-q`` anywhere."""

import argparse
import dataclasses
import functools

import pytest

from simclr_ad import config
from simclr_ad.cli import DEFAULT_MAX_PIXELS, EXAMPLES, build_parser, main
from simclr_ad.data.images import MAX_PIXELS

# flag dest -> the set config.py validates that key against
FIXED_SETS = {
    "augment": config.AUGMENT_PRESETS,
    "objective": config.OBJECTIVES,
    "aspect": config.ASPECTS,
    "calibration": config.CALIBRATIONS,
    "photometric": config.PHOTOMETRIC_MODES,
    "score_rule": config.SCORE_RULES,
    "primary": config.SCORER_NAMES,
}
DEFAULTS = config.TrainConfig()


@functools.cache
def _commands() -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers, built once (the tests only read them)."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _flags(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if not isinstance(a, argparse._HelpAction)]


def _expanded_help(command: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help as ``--help`` prints it (``%(default)s`` filled in), on one line."""
    return " ".join(command._get_formatter()._expand_help(action).split())


def _shown(value: object) -> str:
    """A config default as the help writes it."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _every_flag() -> list[tuple[str, str]]:
    return [
        (name, action.dest) for name, command in _commands().items() for action in _flags(command)
    ]


@pytest.mark.parametrize(("name", "dest"), _every_flag())
def test_every_flag_has_help_with_its_default(name: str, dest: str) -> None:
    command = _commands()[name]
    (action,) = [a for a in _flags(command) if a.dest == dest]
    text = _expanded_help(command, action)
    assert action.help and len(text) > 12, f"{name} {action.option_strings}: no help"
    if action.required:
        assert "required" in text, f"{name} {action.option_strings}: say it is required"
        return
    assert "default" in text, f"{name} {action.option_strings}: no default in {text!r}"
    if action.default not in (None, argparse.SUPPRESS, False):
        assert _shown(action.default) in text
    field = {f.name for f in dataclasses.fields(config.TrainConfig)}
    if name in ("train", "config") and dest in field and action.const is None:
        default = getattr(DEFAULTS, dest)
        if default not in ((), ""):
            assert f"default: {_shown(default)}" in text, f"{dest}: help says another default"


@pytest.mark.parametrize("name", ["train", "config"])
def test_config_keys_with_a_fixed_set_offer_exactly_that_set(name: str) -> None:
    flags = {a.dest: a for a in _flags(_commands()[name])}
    for dest, valid in FIXED_SETS.items():
        assert tuple(flags[dest].choices or ()) == tuple(valid), dest
    others = {d for d, a in flags.items() if a.choices is not None} - set(FIXED_SETS)
    assert not others, f"choices not checked against config.py: {others}"


def test_a_value_outside_the_choices_is_refused_with_them_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["train", "--out", "r", "--objective", "byol"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument --objective: invalid")
    assert "choose from simclr, msc, cutpaste" in err.replace("'", "")
    assert "see simclr-ad train --help" in err


def test_max_pixels_help_states_the_limit_the_readers_apply() -> None:
    assert DEFAULT_MAX_PIXELS == MAX_PIXELS


def test_every_command_shows_two_to_four_examples() -> None:
    commands = _commands()
    assert set(EXAMPLES) == set(commands)
    for name, command in commands.items():
        assert 2 <= len(EXAMPLES[name]) <= 4, name
        assert isinstance(command.formatter_class, type)
        assert issubclass(command.formatter_class, argparse.RawDescriptionHelpFormatter)
        text = command.format_help()
        assert "examples:\n" in text
        for example in EXAMPLES[name]:
            assert f"\n  {example}\n" in text + "\n", f"{name}: example not kept verbatim"
            assert example.split()[0] in ("simclr-ad", "SIMCLR_AD_API_KEY=KEY")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_examples_parse(name: str) -> None:
    parser = build_parser()
    for example in EXAMPLES[name]:
        words = example.split("#")[0].split(">")[0].split()
        words = words[1:] if words[0].startswith("SIMCLR_AD_API_KEY") else words
        assert words[0] == "simclr-ad"
        parser.parse_args(words[1:])  # exits (and fails the test) on a mistyped flag


@pytest.mark.parametrize(
    "argv",
    [
        ["-q", "report", "--eval", "e"],
        ["report", "-q", "--eval", "e"],
        ["report", "--eval", "e", "--quiet"],
        ["train", "-q", "--out", "r"],
    ],
)
def test_quiet_is_taken_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).quiet is True


def test_without_quiet_it_is_off() -> None:
    assert build_parser().parse_args(["report", "--eval", "e"]).quiet is False


def test_quiet_after_the_command_reaches_the_command(tmp_path, capsys) -> None:
    """``main`` runs with it: an error still shows (one line), as with ``-q`` first."""
    assert main(["config", "-q", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
