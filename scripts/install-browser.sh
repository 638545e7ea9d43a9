#!/usr/bin/env bash
# Headless Chromium for the browser tests (report page, service page): Debian's chromium
# package, installed when missing where that can be done (as root, with apt-get). Elsewhere it
# prints a note and succeeds: the browser tests then skip, saying why (under CI=true they fail).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
note="the browser tests will be skipped; to run them, install Debian's 'chromium' package"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: note: chromium is missing and installing it needs root: $note"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: note: chromium is missing and there is no apt-get (not Debian): $note"
    exit 0
fi
echo "install-browser: installing Debian's chromium (once per machine)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null \
    && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; } \
    || ! command -v chromium >/dev/null 2>&1; then
    echo "install-browser: note: installing Debian's chromium failed (see apt-get above): $note"
fi
