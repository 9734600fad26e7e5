#!/usr/bin/env bash
# Installs everything Plume needs to build, test and benchmark on Debian 12 (as root or via sudo).
# Idempotent: packages already present are left alone, so a second run takes seconds.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  liburing-dev libseccomp-dev libcap-dev
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libhttp-parser-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  clang clang-tidy libclang-rt-dev
  curl iproute2 util-linux procps
  busybox-static bubblewrap crun gnuplot-nox
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all dependencies present"
