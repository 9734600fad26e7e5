#!/usr/bin/env bash
# lint.sh BUILD_DIR: clang-tidy (.clang-tidy's checks, warnings as errors) over Plume's own
# sources in fwp/, kernel/, base/, apps/ and bench/, from BUILD_DIR's compile_commands.json.
# Tests and fuzz targets are left out. A few minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
[ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json (build first)" >&2; exit 2; }
tidy_runner="$(command -v run-clang-tidy || command -v run-clang-tidy-14 || true)"
[ -n "$tidy_runner" ] || { echo "lint: run-clang-tidy not found (apt-get install clang-tidy)" >&2; exit 2; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if "$tidy_runner" -p "$build" -j "$(nproc)" -quiet "$root/(fwp|kernel|base|apps|bench)/" >"$log" 2>&1; then
  echo "lint: clang-tidy clean"
else
  grep -E "(warning|error):" "$log" | sort -u >&2 || tail -n 40 "$log" >&2
  echo "lint: clang-tidy found the problems above" >&2
  exit 1
fi
