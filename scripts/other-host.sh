#!/usr/bin/env bash
# other-host.sh: runs Plume's test suite and the fwp benchmarks on another x86-64 Linux host that
# has none of Plume's Debian libraries (a cgroup v2 host with many CPUs, such as the project's GPU
# machine), from a build made here.
#
#   scripts/other-host.sh pack [BUILD_DIR] [PACK_DIR]  here: stripped copies of the build's programs,
#       its ctest files, and the shared libraries and busybox they need (default: build → build-host)
#   scripts/other-host.sh run [PACK_DIR] [OUT_DIR] [--tests-only]   there, as root, from the
#       repository root: ctest over the packed build, then `fwp_bench start|churn|density` (no
#       bwrap or crun peers; plume_fwp and plume_exec through a private plumed; the spinning
#       standby in a start run of its own, into OUT_DIR/spin); writes OUT_DIR
#       (default out/other-host)
#
# The build's programs and tests name their own paths absolutely (the build and source directories
# they were configured in): `run` makes those paths resolve with symlinks to the pack and to this
# checkout where they do not exist yet.
set -euo pipefail
cmd=${1:-}
shift || true

pack() {
  local build=${1:-build} dest=${2:-build-host}
  build=$(cd "$build" && pwd)
  rm -rf "$dest"
  mkdir -p "$dest/lib"
  (cd "$build" && find . -path '*/CMakeFiles' -prune -o -type f \( -name CTestTestfile.cmake \
     -o -name '*_include.cmake' -o -name '*_tests.cmake' -o -name '*_labels.cmake' \) -print) |
    while read -r f; do install -D -m 0644 "$build/$f" "$dest/$f"; done
  (cd "$build" && find . -path '*/CMakeFiles' -prune -o -type f -executable -print) | while read -r f; do
    head -c 4 "$build/$f" | grep -q ELF || continue
    mkdir -p "$dest/$(dirname "$f")"
    strip -o "$dest/$f" "$build/$f"
  done
  # The Debian libraries the programs link (the C and C++ runtimes are on any host).
  ldd "$build/kernel/plumed" "$build/bench/fwp/fwp_bench" | awk '/=> \//{print $3}' | sort -u |
    grep -Ev '/lib(c|m|stdc\+\+|gcc_s)\.so' | while read -r lib; do cp -L "$lib" "$dest/lib/"; done
  cp /bin/busybox "$dest/lib/busybox"  # the tests' image rootfs (busybox-static)
  echo "$build" > "$dest/build-path"
  (cd "$build" && grep -m1 '^CMAKE_HOME_DIRECTORY' CMakeCache.txt | cut -d= -f2) > "$dest/source-path"
  du -sh "$dest"
}

run() {
  local dest=${1:-build-host} out=${2:-out/other-host} tests_only=${3:-}
  [ "$(id -u)" = 0 ] || { echo "other-host.sh: run needs root" >&2; exit 1; }
  dest=$(cd "$dest" && pwd)
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local build source repo
  build=$(cat "$dest/build-path")
  source=$(cat "$dest/source-path")
  repo=$(pwd)
  if [ ! -e "$source" ]; then mkdir -p "$(dirname "$source")"; ln -s "$repo" "$source"; fi
  if [ ! -e "$build" ]; then mkdir -p "$(dirname "$build")"; ln -s "$dest" "$build"; fi
  [ -x /bin/busybox ] || cp "$dest/lib/busybox" /bin/busybox
  export LD_LIBRARY_PATH="$dest/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

  {
    echo "host: $(uname -srm), $(nproc) CPUs, cgroup fs $(stat -fc %T /sys/fs/cgroup), $(date -u +%FT%TZ)"
    grep -m1 'model name' /proc/cpuinfo || true
  } | tee "$out/host.txt"

  local tests_rc=0
  if command -v ctest > /dev/null; then
    echo "== tests (ctest over the packed build)"
    (cd "$build" && ctest -j4 --timeout 120 --output-on-failure) > "$out/ctest.log" 2>&1 || tests_rc=$?
    grep -E 'tests passed|tests failed|\(Failed\)|\(Timeout\)|\(SEGFAULT\)|Not Run' "$out/ctest.log" || true
  else
    echo "other-host.sh: no ctest here: tests not run" | tee "$out/ctest.log"
  fi

  [ "$tests_only" = --tests-only ] && return "$tests_rc"
  echo "== fwp benchmarks"
  cd "$source"
  . bench/lib.sh
  trap bench_stop_plumed EXIT
  bench_start_plumed "$build" "$out/plumed.log"
  local bench="$build/bench/fwp/fwp_bench" handler="$build/bench/fwp/first_handler"
  local recorded="scripts/other-host.sh run (fwp_bench start --iterations 1000; churn --seconds 10; density 10x100)"
  local quiet='level=info'
  # shellcheck disable=SC2086 # $plume_args: fixed options and mktemp paths
  "$bench" start --handler "$handler" --binary "$build/apps/first_instruction" --iterations 1000 --warmup 10 \
    --peers fwp_pool,bare_wake,fwp_fork,bare_fork,fork_exec,vfork_exec,posix_spawn,plume_fwp,plume_exec \
    $plume_args --out "$out" --command "$recorded" 2>&1 | grep -v "$quiet" || true
  bench_stop_plumed
  # The spinning standby in a run of its own, as bench/fwp/run.sh does: parked, it delays the
  # other peers' wake-ups on its CPU.
  "$bench" start --handler "$handler" --binary "$build/apps/first_instruction" --iterations 1000 --warmup 10 \
    --peers fwp_spin,fwp_pool,bare_wake,fwp_fork,bare_fork,fork_exec --out "$out/spin" --command "$recorded" \
    2>&1 | grep -v "$quiet" || true
  "$bench" churn --handler "$handler" --seconds 10 --out "$out" --command "$recorded" 2>&1 | grep -v "$quiet" || true
  "$bench" density --handler "$handler" --tenants 10 --per-tenant 100 --plain 1000 --bwraps 0 \
    --out "$out" --command "$recorded" 2>&1 | grep -v "$quiet" || true
  for f in start/start.md spin/start/start.md churn/churn.md density/density.md; do [ -f "$out/$f" ] && cat "$out/$f"; done
  return "$tests_rc"
}

case "$cmd" in
  pack) pack "$@" ;;
  run) run "$@" ;;
  *) echo "usage: scripts/other-host.sh pack [BUILD_DIR] [PACK_DIR] | run [PACK_DIR] [OUT_DIR] [--tests-only]" >&2; exit 2 ;;
esac
