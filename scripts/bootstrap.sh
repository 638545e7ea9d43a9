#!/usr/bin/env bash
# Set up .venv for this checkout: idempotent, fast when already done.
#
# The heavy dependencies (torch is ~5 GB) live in one shared virtual environment per
# dependency set, keyed by a hash of pyproject.toml's dependency lists, under
# ${SIMCLR_AD_CACHE:-~/.cache/simclr-ad}. This checkout's .venv is a small venv that
# sees the shared one's site-packages through a .pth file and holds an editable install
# of the project, so fresh clones (as CI makes) reuse the install instead of repeating it.
# A machine with nothing cached builds the shared venv once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CACHE=${SIMCLR_AD_CACHE:-$HOME/.cache/simclr-ad}

key=$($PY scripts/project_deps.py key)  # Python 3.10 too: tomllib, tomli or pip's tomli
deps_venv="$CACHE/deps-$key"

if [ ! -f "$deps_venv/.complete" ]; then
    echo "bootstrap: installing dependencies into $deps_venv (once per dependency set)"
    rm -rf "$deps_venv"
    mkdir -p "$CACHE"
    $PY -m venv "$deps_venv"
    "$deps_venv/bin/python" -m pip install -q --upgrade pip setuptools wheel 2>&1 | { grep -v "is ignored" || true; }
    reqs_text=$($PY scripts/project_deps.py requirements)  # runtime + every extra (the tests need them)
    mapfile -t reqs <<< "$reqs_text"
    # The machine's pip config names local wheel folders; silence its "is ignored" chatter.
    if ! "$deps_venv/bin/python" -m pip install -q "${reqs[@]}" 2>&1 | { grep -v "is ignored" || true; }; then
        echo "bootstrap: installing the dependencies failed (see pip's messages above)" >&2
        exit 1
    fi
    touch "$deps_venv/.complete"
fi

site=$("$deps_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f .venv/.deps ] || [ "$(cat .venv/.deps)" != "$deps_venv" ] || [ ! -x .venv/bin/simclr-ad ] \
    || [ ! -x .venv/bin/torchrun ]; then
    rm -rf .venv
    $PY -m venv --without-pip .venv
    own_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$site" > "$own_site/_simclr_ad_deps.pth"
    ln -sf "$deps_venv/bin/ruff" .venv/bin/ruff
    # Console scripts of the shared venv would run under its python, which does not see the
    # project: these run the same modules under this venv's python (torchrun then starts its
    # workers with it too), and `source .venv/bin/activate` puts them on the PATH.
    for tool in mypy:mypy pytest:pytest torchrun:torch.distributed.run; do
        printf '#!/bin/sh\nexec "$(dirname "$0")/python" -m %s "$@"\n' "${tool#*:}" > ".venv/bin/${tool%%:*}"
        chmod +x ".venv/bin/${tool%%:*}"
    done
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 \
        | { grep -v -e "is ignored" -e "Warning" -e "^ *$" -e "^ *[!*]" || true; }
    echo "$deps_venv" > .venv/.deps
fi
