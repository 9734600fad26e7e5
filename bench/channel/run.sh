#!/bin/sh
# Runs bench/channel end to end and plots it; builds nothing, needs no root.
#   bench/channel/run.sh [BUILD_DIR] [channel_bench options...]
# BUILD_DIR defaults to build/. Results go to --out (default bench/results/channel): summary.csv,
# rounds.csv, summary.md, cdf_<peer>.dat and channel.png. Example:
#   cmake --build build --target channel_bench && bench/channel/run.sh build
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
. bench/lib.sh
if bench_build_dir "${1:-}"; then shift; fi
out=bench/results/channel
prev=""
for a in "$@"; do
  [ "$prev" = "--out" ] && out=$a
  prev=$a
done
bench_need_built "$build/bench/channel/channel_bench"
mkdir -p "$out"
"$build/bench/channel/channel_bench" --out "$out" "$@"
gnuplot -e "dir='$out'" bench/channel/plot.gp
echo "run.sh: wrote $out/channel.png"
