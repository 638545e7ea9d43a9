"""Installing: the licence, the extras and their one-line errors, the bootstrap's pyproject
reader on Pythons without tomllib, the browser's install step and skip, ``make demo``'s weights."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from simclr_ad.cli import main
from simclr_ad.errors import EXTRAS, UserError, require_extra
from tests import browser

ROOT = Path(__file__).resolve().parents[2]


def _project_deps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("project_deps", ROOT / "scripts/project_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PYPROJECT = _project_deps().load_project(str(ROOT / "pyproject.toml"))


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


# --- licence and metadata -------------------------------------------------------------------


def test_license_file_is_the_apache_2_text_pyproject_names() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["license"] == "Apache-2.0" and PYPROJECT["license-files"] == ["LICENSE"]
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190


def test_classifiers_agree_with_requires_python() -> None:
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in PYPROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert PYPROJECT["requires-python"] == f">={versions[0]}" and versions[0] == "3.10"


# --- extras ---------------------------------------------------------------------------------


def test_heavy_command_dependencies_are_extras_that_the_errors_name() -> None:
    extras = PYPROJECT["optional-dependencies"]
    base = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra, packages in EXTRAS.items():
        assert {_name(r) for r in extras[extra]} == set(packages.values())
        assert base.isdisjoint(packages.values())  # not installed without the extra
    assert extras["all"] == ["simclr-ad[serve,export]"]


def test_require_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    require_extra("serve", needed_by="simclr-ad serve")  # installed here: no error
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(UserError) as info:
        require_extra("export", needed_by="simclr-ad export")
    assert str(info.value) == (
        "simclr-ad export needs onnxruntime, which is not installed: "
        "pip install 'simclr-ad[export]'"
    )
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(UserError, match=r"needs onnx, onnxruntime, which are not installed"):
        require_extra("export", needed_by="simclr-ad export")


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_serve_without_its_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    for name in [m for m in sys.modules if m.startswith("simclr_ad.service")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as in a new process
    code = main(["serve", "--model", str(tmp_path)])
    assert _one_line_error(capsys, code) == (
        "error: simclr-ad serve needs fastapi, which is not installed: "
        "pip install 'simclr-ad[serve]'"
    )


def test_export_without_its_extra_is_one_line_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.delitem(sys.modules, "simclr_ad.export_onnx", raising=False)
    out = tmp_path / "out" / "pill.onnx"
    code = main(["export", "--model", str(tmp_path), "--out", str(out)])
    assert _one_line_error(capsys, code) == (
        "error: simclr-ad export needs onnx, which is not installed: "
        "pip install 'simclr-ad[export]'"
    )
    assert not out.parent.exists()


def test_predict_with_an_onnx_model_without_the_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "pill.onnx"
    model.write_bytes(b"not read: the missing runtime is said first")
    image = tmp_path / "part.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = main(["predict", "--model", str(model), str(image)])
    assert _one_line_error(capsys, code) == (
        f"error: the ONNX model {model} needs onnxruntime, which is not installed: "
        "pip install 'simclr-ad[export]'"
    )


# --- the bootstrap's reading of pyproject.toml ----------------------------------------------


def test_bootstrap_reads_pyproject_without_tomllib(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = _project_deps()
    expected = deps.load_project(str(ROOT / "pyproject.toml"))
    for missing in ("tomllib", "tomli"):  # Python 3.10 without tomli: pip's vendored copy
        monkeypatch.setitem(sys.modules, missing, None)
    assert deps.toml_parser().__name__ == "pip._vendor.tomli"
    assert deps.load_project(str(ROOT / "pyproject.toml")) == expected
    monkeypatch.setitem(sys.modules, "pip._vendor.tomli", None)
    with pytest.raises(deps.NoTomlParserError, match=r"pip install tomli, or use Python 3\.11"):
        deps.toml_parser()


def test_bootstrap_installs_every_extra_but_not_the_project_itself() -> None:
    deps = _project_deps()
    reqs = deps.requirements(PYPROJECT)
    extras = PYPROJECT["optional-dependencies"]
    wanted = PYPROJECT["dependencies"] + extras["serve"] + extras["export"] + extras["dev"]
    assert sorted(reqs) == sorted(wanted)
    key = deps.cache_key(PYPROJECT, (3, 11))
    assert re.fullmatch(r"[0-9a-f]{16}", key) and key != deps.cache_key(PYPROJECT, (3, 10))
    changed = {**PYPROJECT, "optional-dependencies": {**extras, "serve": ["fastapi>=1"]}}
    assert deps.cache_key(changed, (3, 11)) != key  # an extra's change makes a new shared venv


def test_bootstrap_script_prints_key_and_requirements() -> None:
    script = [sys.executable, "scripts/project_deps.py"]
    key = subprocess.run([*script, "key"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert key.stdout.strip() == _project_deps().cache_key(PYPROJECT, sys.version_info[:2])
    reqs = subprocess.run([*script, "requirements"], cwd=ROOT, capture_output=True, text=True)
    assert "onnxruntime>=1.18" in reqs.stdout.splitlines()
    usage = subprocess.run([*script, "nonsense"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "key|requirements" in usage.stderr


# --- the browser ----------------------------------------------------------------------------


def _fake_bin(tmp_path: Path, uid: int, apt: bool) -> Path:
    """A PATH with only a fake ``id`` (and ``apt-get``, which logs and 'installs' chromium)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    if apt:
        fake_chromium = bin_dir / "chromium"
        (bin_dir / "apt-get").write_text(
            f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\n'
            f'[ "$1" = install ] && printf "#!/bin/sh\\n" > {fake_chromium} '
            f"&& /bin/chmod +x {fake_chromium}\nexit 0\n"
        )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def _install_browser(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(ROOT / "scripts/install-browser.sh")],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(("uid", "apt", "why"), [(1000, True, "needs root"), (0, False, "apt-get")])
def test_browser_install_only_as_root_with_apt_else_a_note(
    tmp_path: Path, uid: int, apt: bool, why: str
) -> None:
    proc = _install_browser(_fake_bin(tmp_path, uid, apt))
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.startswith("install-browser: note: chromium is missing") and why in proc.stdout
    )
    assert "the browser tests will be skipped" in proc.stdout
    assert not (tmp_path / "apt.log").exists()


def test_browser_install_as_root_on_debian_uses_apt(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, 0, apt=True)
    proc = _install_browser(bin_dir)
    assert proc.returncode == 0 and "note" not in proc.stdout, proc.stdout + proc.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log[0] == "update -qq" and "chromium" in log[1].split()
    proc = _install_browser(bin_dir)  # now present: nothing to do
    assert proc.stdout == "" and len((tmp_path / "apt.log").read_text().splitlines()) == 2


def _without_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")


def test_browser_tests_skip_with_the_reason_where_chromium_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_chromium(monkeypatch, tmp_path)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="headless Chromium is missing"):
        browser.require_chromium()


def test_browser_tests_fail_under_ci_where_chromium_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_chromium(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, where they must run"):
        browser.require_chromium()


def test_browser_found_on_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _without_chromium(monkeypatch, tmp_path)
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    assert browser.require_chromium() == str(chromium)


# --- make demo ------------------------------------------------------------------------------


@pytest.mark.parametrize("present", [True, False])
def test_make_demo_passes_the_shared_weights_when_present(tmp_path: Path, present: bool) -> None:
    weights = tmp_path / "efficientnet_lite0_imagenet.safetensors"
    if present:
        weights.write_bytes(b"only its presence matters to make")
    proc = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "demo", f"DEMO_WEIGHTS={weights}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    demo = next(ln for ln in proc.stdout.splitlines() if "simclr-ad demo" in ln)
    options = f" --backbone efficientnet_lite0 --weights {weights}" if present else ""
    assert demo.endswith(f"simclr-ad demo --out demo{options}")


def test_make_demo_looks_in_shared_weights_by_default() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "DEMO_WEIGHTS ?= ../shared/weights/efficientnet_lite0_imagenet.safetensors" in makefile
