#!/bin/sh
# Checks that every C file of the project is as clang-format (Debian 12's,
# with the repository's .clang-format) writes it; lists those that are not.
# `scripts/check-format.sh --fix` formats them instead.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' | grep -v -E '^tests/(conformance|sdk|e2b)/')
if [ "${1:-}" = "--fix" ]; then
    # shellcheck disable=SC2086
    clang-format -i $files
    exit 0
fi
bad=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (scripts/check-format.sh --fix)"
        bad=1
    fi
done
exit "$bad"
