#!/bin/sh
# Runs bench/spawn end to end; builds nothing. Needs root (namespaces, crun, plumed).
#   bench/spawn/run.sh [BUILD_DIR] [spawn_bench options...]
# BUILD_DIR defaults to build/. Unless --peers leaves out "plume", it starts a private plumed
# (runtime dir in /tmp, its own cgroup parent, a random admin token) and stops it with SIGTERM at
# the end. Results go to --out (default bench/results/spawn): samples.csv, summary.csv,
# summary.md, spawn.png. Example:
#   cmake --build build --target plumed spawn_bench first_instruction && bench/spawn/run.sh build
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
. bench/lib.sh
if bench_build_dir "${1:-}"; then shift; fi
recorded="bench/spawn/run.sh $build${*:+ $*}"
build=$(cd "$build" && pwd)

out=bench/results/spawn
peers=""
prev=""
for a in "$@"; do
  [ "$prev" = "--out" ] && out=$a
  [ "$prev" = "--peers" ] && peers=$a
  prev=$a
done

bench_need_root "namespaces, crun, plumed"
bench_need_built "$build/bench/spawn_bench" "$build/apps/first_instruction"

plumed_log=""
# Keeps plumed's log when it did not exit cleanly, and says where it is.
stop_plumed() {
  bench_stop_plumed
  if [ "$plumed_status" != 0 ]; then
    echo "run.sh: plumed exited with status $plumed_status; its log: $plumed_log" >&2
  elif [ -n "$plumed_log" ]; then
    rm -f "$plumed_log"
    plumed_log=""
  fi
  return 0
}
on_exit() {
  rc=$?
  if [ "$rc" != 0 ] && [ -n "$plumed_log" ]; then
    echo "run.sh: failed; plumed's log ($plumed_log) ends:" >&2
    tail -n 20 "$plumed_log" >&2
    plumed_log=""  # keep the file for a closer look
  fi
  stop_plumed
}
trap on_exit EXIT
trap 'exit 130' INT TERM

case ",${peers:-plume}," in
  *,plume,*)
    [ -x "$build/kernel/plumed" ] || { echo "run.sh: $build/kernel/plumed missing (or pass --peers without plume)" >&2; exit 1; }
    plumed_log=$(mktemp /tmp/plume-bench-plumed-XXXXXX.log)
    bench_start_plumed "$build" "$plumed_log"
    ;;
esac

# spawn_bench waits (bounded) for plumed's /v1/health before its first start.
# shellcheck disable=SC2086 # plume_args holds paths from mktemp: no spaces
"$build/bench/spawn_bench" --binary "$build/apps/first_instruction" $plume_args \
  --command "$recorded" "$@"
stop_plumed
gnuplot -e "dir='$out'" bench/spawn/plot.gp
echo "run.sh: wrote $out/{samples.csv,summary.csv,summary.md,spawn.png}"
