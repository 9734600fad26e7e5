#!/bin/sh
# Runs bench/channel end to end and plots it; builds nothing, needs no root.
#   bench/channel/run.sh [BUILD_DIR] [channel_bench options...]
# BUILD_DIR defaults to build/. Results go to --out (default bench/results/channel): summary.csv,
# rounds.csv, summary.md, cdf_<peer>.dat and channel.png. Example:
#   cmake --build build --target channel_bench && bench/channel/run.sh build
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
build=build
case "${1:-}" in
  ""|-*) ;;
  *) build=$1; shift ;;
esac
out=bench/results/channel
prev=""
for a in "$@"; do
  [ "$prev" = "--out" ] && out=$a
  prev=$a
done
[ -x "$build/bench/channel/channel_bench" ] || { echo "run.sh: $build/bench/channel/channel_bench missing: build it first" >&2; exit 1; }
mkdir -p "$out"
"$build/bench/channel/channel_bench" --out "$out" "$@"
gnuplot -e "dir='$out'" bench/channel/plot.gp
echo "run.sh: wrote $out/channel.png"
