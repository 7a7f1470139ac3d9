#!/usr/bin/env bash
# Coverage-guided fuzzing of the H.264 access unit -> RGB path (openh264's
# C++ decoder inside our process), seeded with real x264 output.
#
#   fuzz/run.sh [SECONDS] [LIBFUZZER FLAGS...]     (default 3600)
#
# A known finding stops libFuzzer; `-fork=1 -ignore_crashes=1` goes on past
# it, keeping every crash in fuzz/artifacts/.
#
# Needs cargo-fuzz (cargo install cargo-fuzz), Debian's clang-14 (the C++
# is instrumented for coverage and AddressSanitizer too, not only the Rust)
# and python3-gi with GStreamer's x264 for the seeds. RUSTC_BOOTSTRAP lets
# the machine's one stable toolchain take cargo-fuzz's -Z flags. A crash, an
# allocation over 2 GiB or a unit taking over 10 s is a finding: it lands in
# fuzz/artifacts/ with the input that caused it.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-3600}
shift || true
corpus=corpus/h264_access_unit
[[ -d $corpus ]] || /usr/bin/python3 seed.py "$corpus"
flags="-fsanitize=address -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp"
export RUSTC_BOOTSTRAP=1 CC=clang-14 CXX=clang++-14 CFLAGS="$flags" CXXFLAGS="$flags"
cargo fuzz run h264_access_unit "$corpus" -- \
  -max_len=65536 -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$@"
