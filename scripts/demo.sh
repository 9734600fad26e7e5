#!/usr/bin/env bash
# demo.sh: installs what is missing, builds Plume, starts plumed on its built-in default
# configuration, and walks the demo tenant's sandboxed workers through their life with the `plume`
# CLI and curl. plumed is stopped (SIGTERM) at the end and cleans up after itself.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: plumed creates namespaces, cgroups and uid mappings: run as root (sudo $0)" >&2
  exit 1
fi

B="${PLUME_BUILD_DIR:-$root/build}"
bash scripts/setup.sh
bash scripts/build.sh "$B"

RUN=/run/plume
SOCK="$RUN/plumed.sock"
export PLUME_SOCKET="$SOCK"
DEMO_TOKEN="demo-token-change-me"   # the built-in config's demo tenant (plumed --print-default-config)
LOG="$B/demo-plumed.log"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Prints the command (arguments that are empty or hold spaces in quotes), then runs it.
show() {
  local line='$' a
  for a in "$@"; do
    if [ -z "$a" ] || [[ "$a" == *[[:space:]]* ]]; then line+=" \"$a\""; else line+=" $a"; fi
  done
  printf '%s\n' "$line"
  "$@"
}

step "start plumed with its built-in configuration (log: $LOG)"
"$B/kernel/plumed" >"$LOG" 2>&1 &
PLUMED=$!
cleanup() { kill -TERM "$PLUMED" 2>/dev/null || true; wait "$PLUMED" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do
  "$B/kernel/cli/plume" health >/dev/null 2>&1 && break
  kill -0 "$PLUMED" 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.05
done
show "$B/kernel/cli/plume" health
ADMIN_TOKEN="$(cat "$RUN/admin.token")"

step "an image for the demo: a tiny rootfs with busybox and apps/sandbox_report"
IMG="$B/demo-rootfs"
rm -rf "$IMG" && mkdir -p "$IMG"/{bin,proc,dev,tmp}
cp /bin/busybox "$IMG/bin/busybox"
for a in sh echo cat ls sleep id hostname; do ln -sf busybox "$IMG/bin/$a"; done
cp "$B/apps/sandbox_report" "$IMG/bin/sandbox_report"
echo "\$ PLUME_TOKEN=<admin token> plume image add demo --rootfs $IMG"
PLUME_TOKEN="$ADMIN_TOKEN" "$B/kernel/cli/plume" image add demo --rootfs "$IMG"
show "$B/kernel/cli/plume" image ls

export PLUME_TOKEN="$DEMO_TOKEN"
step "run a worker as tenant 'demo' and wait for it: what does the sandbox look like from inside?"
show "$B/kernel/cli/plume" run --image demo --wait -- /bin/sandbox_report

step "a long-running worker in the host view (read-only /usr, /bin, /lib, /etc), with a 64M memory limit"
ID="$("$B/kernel/cli/plume" run --memory 64M -- /bin/sh -c 'trap "echo got TERM; exit 0" TERM; i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done')"
echo "$ plume run ... -> $ID"
sleep 1
show "$B/kernel/cli/plume" ps
show "$B/kernel/cli/plume" logs "$ID"
show "$B/kernel/cli/plume" kill -s TERM "$ID"
show "$B/kernel/cli/plume" wait "$ID"

step "hostile workers are refused, and plumed survives them"
show "$B/kernel/cli/plume" run --wait -- /bin/sh -c 'mount -t tmpfs none /tmp 2>&1; cat /etc/shadow 2>&1; exit 0' || true
set +e
"$B/kernel/cli/plume" run --memory 32M --wait -- /bin/sh -c 'x=a; while :; do x="$x$x"; done'
echo "(exit code $?: the memory hog was OOM-killed in its cgroup)"
set -e
show "$B/kernel/cli/plume" ps -a

step "featherweight instances: an app linked with libplume, forked from its template or taken from a warm pool"
echo "\$ PLUME_TOKEN=<admin token> plume image add echo --fwp-binary $B/apps/plume_echo --pool 4"
PLUME_TOKEN="$ADMIN_TOKEN" "$B/kernel/cli/plume" image add echo --fwp-binary "$B/apps/plume_echo" --pool 4
show "$B/kernel/cli/plume" run --fwp echo --input "hello from a featherweight instance" --input "" --wait
for i in 1 2 3; do "$B/kernel/cli/plume" run --fwp echo --input "message $i" --input "" --wait 2>/dev/null; done
FWP_ID="$("$B/kernel/cli/plume" run --fwp echo --input "what the app prints goes to its own log" --input "")"
"$B/kernel/cli/plume" wait "$FWP_ID" >/dev/null
show "$B/kernel/cli/plume" logs --stderr "$FWP_ID"

step "talking to a running instance: apps/kvindex indexed its 200,000 keys once, in its template"
echo "\$ PLUME_TOKEN=<admin token> plume image add kv --fwp-binary $B/apps/plume_kvindex --pool 2"
PLUME_TOKEN="$ADMIN_TOKEN" "$B/kernel/cli/plume" image add kv --fwp-binary "$B/apps/plume_kvindex" --pool 2
KV_ID="$("$B/kernel/cli/plume" run --fwp kv --input stats)"
echo "\$ plume run --fwp kv --input stats -> $KV_ID"
# Its reply to the start message, before asking more (the channel is one ordered stream).
for _ in $(seq 100); do [ -n "$("$B/kernel/cli/plume" logs "$KV_ID")" ] && break; sleep 0.05; done
show "$B/kernel/cli/plume" logs "$KV_ID"
show "$B/kernel/cli/plume" send -r 2 "$KV_ID" "get key42" "get no-such-key"
show "$B/kernel/cli/plume" send "$KV_ID" ""
show "$B/kernel/cli/plume" wait "$KV_ID"
show "$B/kernel/cli/plume" ps -a

step "metering: per tenant, on the CLI and in Prometheus format"
show "$B/kernel/cli/plume" stats
printf '$ curl --unix-socket %s -H "Authorization: Bearer <admin>" http://plume/metrics\n' "$SOCK"
curl -s --unix-socket "$SOCK" -H "Authorization: Bearer $ADMIN_TOKEN" http://plume/metrics | grep -E '^plume_(workers_(started|exited)|fwp_messages)_total\{tenant="demo"' | grep -v ' 0$'

step "stop plumed (SIGTERM): workers stopped, cgroups, socket and runtime files removed"
kill -TERM "$PLUMED"; wait "$PLUMED"; trap - EXIT
echo "plumed exited with $?"
# cgroup v2: /sys/fs/cgroup/plume; v1: one per controller, /sys/fs/cgroup/<controller>/plume
left=$(ls -d /sys/fs/cgroup/plume /sys/fs/cgroup/*/plume 2>/dev/null || true)
if [ -n "$left" ]; then echo "cgroups left behind: $left"; else echo "no cgroups left under /sys/fs/cgroup/plume or /sys/fs/cgroup/*/plume"; fi
[ -e "$SOCK" ] && echo "socket still there!" || echo "socket removed"
tail -n 3 "$LOG"
