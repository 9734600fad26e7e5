# Shared steps of the bench/*/run.sh scripts; POSIX sh, sourced after `cd` to the repository root:
#   repo=$(cd "$(dirname "$0")/../.." && pwd); cd "$repo"; . bench/lib.sh
# Messages start with "run.sh:" like the scripts' own.
# shellcheck shell=sh disable=SC2034 # the variables set here are read by the sourcing script

# The build directory: "build" unless $1 is present and not an option. Sets $build; returns 0
# when $1 was taken (the caller then shifts), 1 otherwise:
#   if bench_build_dir "${1:-}"; then shift; fi
bench_build_dir() {
  build=build
  case "$1" in
    ""|-*) return 1 ;;
    *) build=$1; return 0 ;;
  esac
}

# Exits 1 unless running as root; $1 says what needs it.
bench_need_root() {
  [ "$(id -u)" = 0 ] || { echo "run.sh: needs root ($1)" >&2; exit 1; }
}

# Exits 1 unless every argument is an executable file.
bench_need_built() {
  for f in "$@"; do
    [ -x "$f" ] || { echo "run.sh: $f missing: build it first" >&2; exit 1; }
  done
}

# A private plumed: runtime dir $rt under /tmp, its own cgroup parent, a random admin token passed
# in the 0600 file $token_file. bench_start_plumed BUILD_DIR [LOG_FILE] starts it in the background
# (it logs warnings to LOG_FILE, default $rt/plumed.log) and sets $plumed_pid and $plume_args (the
# peer options of spawn_bench and fwp_bench). bench_stop_plumed stops it with SIGTERM, leaves its
# exit status in $plumed_status, removes $rt and $token_file, and may be called again.
rt=""
token_file=""
plumed_pid=""
plumed_status=0
plume_args=""
bench_start_plumed() {
  rt=$(mktemp -d /tmp/plume-bench-rt-XXXXXX)
  # Workers assemble their root under the runtime dir from inside their user namespace, as an
  # unprivileged uid: like /run/plume, it must be traversable (mktemp made it 0700).
  chmod 755 "$rt"
  token_file=$(mktemp /tmp/plume-bench-token-XXXXXX)
  bench_token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$bench_token" > "$token_file"  # mktemp made it 0600
  # The built-in configuration with one spinning standby granted (none by default), for the
  # peers that ask for one (fwp_bench's plume_fwp_spin).
  "$1/kernel/plumed" --print-default-config |
    sed 's/^# *spinning_standby_budget = 1 .*/spinning_standby_budget = 1/' > "$rt/plumed.toml"
  grep -q '^spinning_standby_budget = 1' "$rt/plumed.toml" ||
    { echo "bench: plumed's default configuration has no spinning_standby_budget line" >&2; return 1; }
  "$1/kernel/plumed" --config "$rt/plumed.toml" --runtime-dir "$rt" --socket "$rt/plumed.sock" \
    --cgroup-parent "plume-bench-$$" --admin-token "$bench_token" --log-level warn \
    > "${2:-$rt/plumed.log}" 2>&1 &
  plumed_pid=$!
  plume_args="--plume-socket $rt/plumed.sock --plume-token-file $token_file"
}
bench_stop_plumed() {
  plumed_status=0
  if [ -n "$plumed_pid" ]; then
    kill -TERM "$plumed_pid" 2>/dev/null || true
    wait "$plumed_pid" || plumed_status=$?
    plumed_pid=""
  fi
  [ -n "$rt" ] && rm -rf "$rt" "$token_file"
  rt=""
  return 0
}
