#!/usr/bin/env bash
# Make sure headless Chromium is present for the browser tests (report page, service page):
# Debian's chromium package, installed when missing. Idempotent; a no-op once installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: chromium is missing; install Debian's 'chromium' package (needs root)" >&2
    exit 1
fi
echo "install-browser: installing Debian's chromium (once per machine)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
