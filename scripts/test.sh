#!/usr/bin/env bash
# test.sh: installs what is missing, builds Plume twice (warnings as errors; then with ASan+UBSan),
# runs clang-tidy, fuzzes the HTTP request parser, the channel and the config/API objects
# briefly, and runs every test in both builds.
# Tests that need root skip with a message when not run as root; CI runs as root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
FUZZ_SECONDS="${PLUME_FUZZ_SECONDS:-60}"
JOBS="$(nproc)"

bash scripts/setup.sh

echo "== build (RelWithDebInfo, -Werror)"
bash scripts/build.sh "$root/build"

echo "== build (ASan + UBSan)"
bash scripts/build.sh "$root/build-asan" -DPLUME_SANITIZE=ON -DPLUME_BENCH=OFF

echo "== clang-tidy"
bash scripts/lint.sh "$root/build"

if [ -f fuzz/CMakeLists.txt ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DPLUME_FUZZ=ON -DPLUME_WERROR=OFF -DPLUME_BENCH=OFF >/dev/null
  cmake --build build-fuzz -j"$JOBS" --target http_request_fuzz channel_fuzz spec_fuzz
  # The HTTP request parser (what any API client sends), a channel's supervisor side against a
  # worker that writes anything into the shared mapping, then the config file and the API's JSON
  # objects.
  for target in http_request:http channel:channel spec:spec; do
    fuzzer="${target%%:*}_fuzz" corpus="${target##*:}"
    echo "== fuzz $fuzzer for ${FUZZ_SECONDS}s (libFuzzer, ASan+UBSan)"
    mkdir -p "build-fuzz/corpus/$corpus"
    "build-fuzz/fuzz/$fuzzer" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
      "build-fuzz/corpus/$corpus" "fuzz/corpus/$corpus" 2>&1 | tail -n 15
  done
fi

echo "== tests (ASan + UBSan build)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j"$JOBS" --timeout 300)

echo "== tests"
(cd build && ctest --output-on-failure -j"$JOBS" --timeout 300)
