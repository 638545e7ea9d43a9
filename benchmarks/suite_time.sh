#!/bin/bash
# `make test` on fresh clones of the given commits, one after the other (run it on an idle
# machine): each commit's time measured side by side with the others in one run.
# Usage: benchmarks/suite_time.sh REV [REV ...]
set -u
repo=$(git rev-parse --show-toplevel) || exit 2
shared="$(cd "$repo/.." && pwd)/shared"
for rev in "$@"; do
    dir=$(mktemp -d)
    git clone -q "$repo" "$dir/clone" && ln -s "$shared" "$dir/shared"
    (cd "$dir/clone" && git checkout -q "$rev") || exit 2
    SECONDS=0
    (cd "$dir/clone" && CI=true make test > "$dir/log" 2>&1)
    code=$?
    echo "$rev: exit $code, make test ${SECONDS} s; $(grep -E ' passed' "$dir/log" | tail -1)"
    rm -rf "$dir"
done
