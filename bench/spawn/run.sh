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
build=build
case "${1:-}" in
  ""|-*) ;;
  *) build=$1; shift ;;
esac
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

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (namespaces, crun, plumed)" >&2; exit 1; }
for f in "$build/bench/spawn_bench" "$build/apps/first_instruction"; do
  [ -x "$f" ] || { echo "run.sh: $f missing: build it first" >&2; exit 1; }
done

plume_args=""
rt=""
plumed_pid=""
plumed_log=""
token_file=""
stop_plumed() {
  status=0
  if [ -n "$plumed_pid" ]; then
    kill -TERM "$plumed_pid" 2>/dev/null || true
    wait "$plumed_pid" || status=$?
    plumed_pid=""
  fi
  [ -n "$rt" ] && rm -rf "$rt" "$token_file"
  rt=""
  if [ "$status" != 0 ]; then
    echo "run.sh: plumed exited with status $status; its log: $plumed_log" >&2
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
    rt=$(mktemp -d /tmp/plume-bench-rt-XXXXXX)
    # Workers assemble their root under the runtime dir from inside their user namespace, as an
    # unprivileged uid: like /run/plume, it must be traversable (mktemp made it 0700).
    chmod 755 "$rt"
    plumed_log=$(mktemp /tmp/plume-bench-plumed-XXXXXX.log)
    token_file=$(mktemp /tmp/plume-bench-token-XXXXXX)
    token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$token" > "$token_file"  # mktemp made it 0600
    "$build/kernel/plumed" --runtime-dir "$rt" --socket "$rt/plumed.sock" \
      --cgroup-parent "plume-bench-$$" --admin-token "$token" --log-level warn \
      > "$plumed_log" 2>&1 &
    plumed_pid=$!
    plume_args="--plume-socket $rt/plumed.sock --plume-token-file $token_file"
    ;;
esac

# spawn_bench waits (bounded) for plumed's /v1/health before its first start.
# shellcheck disable=SC2086 # plume_args holds paths from mktemp: no spaces
"$build/bench/spawn_bench" --binary "$build/apps/first_instruction" $plume_args \
  --command "$recorded" "$@"
stop_plumed
gnuplot -e "dir='$out'" bench/spawn/plot.gp
echo "run.sh: wrote $out/{samples.csv,summary.csv,summary.md,spawn.png}"
