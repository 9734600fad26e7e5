#!/bin/bash
# Runs the three bench/fwp benchmarks end to end and plots; builds nothing. Needs root.
#   bench/fwp/run.sh [BUILD_DIR] [--seconds S] [--quick]
# BUILD_DIR defaults to build/. Starts a private plumed for the plume_fwp and plume_exec peers of
# `start` and a second start run through the API (plume_fwp, plume_fwp_spin, fork_exec), as
# bench/spawn/run.sh does (skipped when BUILD_DIR has no kernel/plumed), and stops it before
# `churn` and `density`. Results go to bench/results/fwp/{start,churn,density}/,
# bench/results/fwp/spin/start/ (a start run with fwp_spin's spinning standby parked: the first
# run leaves it out), bench/results/fwp/api/start/ and bench/results/fwp/start/fwp.png.
# --quick: a short run (200 rounds, 5 s churn, 2x50 instances).
# Example:
#   cmake --build build --target plumed fwp_bench first_handler first_instruction && bench/fwp/run.sh build
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
. bench/lib.sh
if bench_build_dir "${1:-}"; then shift; fi
recorded="bench/fwp/run.sh $build${*:+ $*}"
build=$(cd "$build" && pwd)
seconds=30
start_args="--iterations 1000 --crun-iterations 100 --warmup 10"
spin_args="--iterations 1000 --warmup 10"
api_args="--iterations 500 --warmup 10"
density_args="--tenants 10 --per-tenant 100 --plain 1000 --bwraps 1000"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --quick) seconds=5; start_args="--iterations 200 --crun-iterations 20 --warmup 5"; api_args="--iterations 100 --warmup 5"
             spin_args="--iterations 200 --warmup 5"
             density_args="--tenants 2 --per-tenant 50 --plain 100 --bwraps 20"; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=bench/results/fwp

bench_need_root "namespaces, cgroups, uid maps"
bench="$build/bench/fwp/fwp_bench"
handler="$build/bench/fwp/first_handler"
bench_need_built "$bench" "$handler" "$build/apps/first_instruction"

trap bench_stop_plumed EXIT
trap 'exit 130' INT TERM

if [ -x "$build/kernel/plumed" ]; then
  bench_start_plumed "$build"  # logs to $rt/plumed.log, removed with $rt
else
  echo "run.sh: no $build/kernel/plumed: the plume_fwp and plume_exec peers are left out" >&2
fi

# Templates log at info on stderr; keep warnings and the progress lines.
quiet() { grep -v 'level=info' >&2 || true; }

echo "== start latency" >&2
# Every peer but fwp_spin: a parked spinning standby delays other cgroups' wake-ups on its CPU
# (docs/fwp.md, "Spinning standbys"), so it would be every other peer's tail too.
peers="fwp_pool,bare_wake,fwp_fork,bare_fork,fork_exec,vfork_exec,posix_spawn,bwrap,crun"
[ -n "$plume_args" ] && peers="$peers,plume_fwp,plume_exec"
# shellcheck disable=SC2086 # word splitting wanted: fixed options and mktemp paths
"$bench" start --handler "$handler" --binary "$build/apps/first_instruction" $start_args $plume_args \
  --peers "$peers" --out "$out" --command "$recorded" 2> >(quiet) || { echo "run.sh: start failed" >&2; exit 1; }
echo "== start latency with a spinning standby parked" >&2
# fwp_spin, and beside it the peers whose tails it changes (compare with the run above).
# shellcheck disable=SC2086
"$bench" start --handler "$handler" --binary "$build/apps/first_instruction" $spin_args \
  --peers fwp_spin,fwp_pool,bare_wake,fwp_fork,bare_fork,fork_exec --out "$out/spin" --command "$recorded" \
  2> >(quiet) || { echo "run.sh: start (spinning standby) failed" >&2; exit 1; }
if [ -n "$plume_args" ]; then
  # A run of its own, for the same reason: plume_fwp_spin's standby (plumed's, granted by the
  # budget bench_start_plumed sets) would sit beside every other peer.
  echo "== start latency through the API, with a spinning standby" >&2
  # shellcheck disable=SC2086
  "$bench" start --handler "$handler" --binary "$build/apps/first_instruction" $api_args $plume_args \
    --peers plume_fwp,plume_fwp_spin,fork_exec --out "$out/api" --command "$recorded" 2> >(quiet) ||
    { echo "run.sh: start (API) failed" >&2; exit 1; }
fi
bench_stop_plumed
echo "== churn" >&2
"$bench" churn --handler "$handler" --seconds "$seconds" --out "$out" --command "$recorded" 2> >(quiet)
echo "== density" >&2
# A plumed of its own for density's plumed part (plumed at rest with as many instances parked).
plume_args=""
[ -x "$build/kernel/plumed" ] && bench_start_plumed "$build"
# shellcheck disable=SC2086
"$bench" density --handler "$handler" $density_args $plume_args --out "$out" --command "$recorded" 2> >(quiet)
bench_stop_plumed
gnuplot -e "dir='$out/start'" bench/fwp/plot.gp
echo "run.sh: wrote $out/{start,spin/start,churn,density}/ and $out/start/fwp.png"
