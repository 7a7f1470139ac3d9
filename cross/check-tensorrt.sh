#!/usr/bin/env bash
# Checks the TensorRT shim without a GPU, against every header set in
# target/trt-headers (cross/tensorrt-headers.sh puts them there):
#  1. g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror, TensorRT and CUDA
#     folders as -isystem; the shim's own logic against CUDA-like stand-ins,
#     under ThreadSanitizer (cross/shim-test.cpp);
#  2. the compiled object needs no TensorRT or CUDA symbol (all come through
#     dlsym at run time);
#  3. `cargo build --features tensorrt` against the 8.2.1 headers links, the
#     binary has no TensorRT/CUDA in its NEEDED list, and on this machine
#     (no TensorRT) build-engine fails with the one-line "not found" error.
# Without the headers it says so and exits 0: CI has no route to GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
h=${TRT_HEADERS:-target/trt-headers}
shim=src/infer/tensorrt/shim/ew_trt.cpp
if [ ! -d "$h/cuda12/include" ] || ! ls -d "$h"/trt-*/include >/dev/null 2>&1; then
  echo "check-tensorrt: no headers in $h; run cross/tensorrt-headers.sh first (skipped)"
  exit 0
fi
for inc in "$h"/trt-*/include; do
  v=$(basename "$(dirname "$inc")")
  g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror \
    -isystem "$inc" -isystem "$h/cuda12/include" "$shim"
  obj=$(mktemp --suffix=.o)
  g++ -std=c++17 -O2 -fPIC -c -isystem "$inc" -isystem "$h/cuda12/include" "$shim" -o "$obj"
  if nm -u "$obj" | grep -Ei 'nvinfer|nvonnx|cuda'; then
    echo "check-tensorrt: $v: the shim calls TensorRT/CUDA by name; they must come through ew_trt_api" >&2
    exit 1
  fi
  rm -f "$obj"
  echo "check-tensorrt: $v: syntax clean with -Werror, no TensorRT/CUDA symbols needed"
  # The shim's logic with CUDA-like stand-ins (device order, 708, failed
  # load steps, fixed dims, FP16 I/O, one logger under ThreadSanitizer).
  tsan=$(mktemp)
  g++ -std=c++17 -O1 -g -fsanitize=thread -isystem "$inc" -isystem "$h/cuda12/include" \
    cross/shim-test.cpp -o "$tsan" -ldl -lpthread
  if ! "$tsan" > "$tsan.out" 2>&1; then
    cat "$tsan.out" >&2
    echo "check-tensorrt: $v: cross/shim-test.cpp failed" >&2
    exit 1
  fi
  echo "check-tensorrt: $v: $(tail -1 "$tsan.out") ($(grep -c '^ok:' "$tsan.out") checks)"
  rm -f "$tsan" "$tsan.out"
done
# Same target folder: only edgewatch itself is rebuilt with the feature.
TENSORRT_ROOT=$PWD/$h/trt-8.2.1 CUDA_HOME=$PWD/$h/cuda12 \
  cargo build --locked --features tensorrt --bin edgewatch
bin=target/debug/edgewatch-tensorrt
cp target/debug/edgewatch "$bin"
if readelf -d "$bin" | grep NEEDED | grep -Ei 'nvinfer|nvonnx|cudart'; then
  echo "check-tensorrt: the tensorrt build links TensorRT/CUDA; it must open them at run time" >&2
  exit 1
fi
cfg=$(mktemp -d)
trap 'rm -rf "$cfg" "$bin"' EXIT
cat > "$cfg/ew.toml" <<TOML
memory_budget_mb = 1024
[model]
path = "$PWD/engines/ppocr-det-v4.onnx"
backend = "tensorrt"
[tensorrt]
engines = "$cfg/engines"
TOML
set +e
err=$("$bin" build-engine --config "$cfg/ew.toml" 2>&1)
rc=$?
set -e
echo "$err" | tail -1
if [ "$rc" -eq 0 ] || ! echo "$err" | grep -q 'libnvinfer.so.8 was not found'; then
  echo "check-tensorrt: expected the not-found error from build-engine (rc $rc)" >&2
  exit 1
fi
# With stand-in libraries (cross/tensorrt-standin.c) the real loader, shim
# and build request run up to TensorRT's first object, which they refuse.
lib=$cfg/lib
mkdir -p "$lib"
for spec in NVINFER:libnvinfer.so.8 PARSER:libnvonnxparser.so.8 CUDART:libcudart.so.10.2; do
  cc -shared -fPIC -DLIB_${spec%%:*} -o "$lib/${spec##*:}" cross/tensorrt-standin.c
done
set +e
err=$(LD_LIBRARY_PATH=$lib "$bin" build-engine --config "$cfg/ew.toml" 2>&1)
rc=$?
set -e
echo "$err" | grep -E '^build-engine|^edgewatch'
for want in 'on Stand-in Tegra X1 (compute 5.3), TensorRT 8.2.1, fp16' \
            'tactics restricted' 'createInferBuilder failed'; do
  if [ "$rc" -eq 0 ] || ! echo "$err" | grep -q "$want"; then
    echo "check-tensorrt: build-engine with stand-ins: expected '$want' (rc $rc)" >&2
    exit 1
  fi
done
# The daemon: no cached engine, so it serves on the CPU at once, builds in a
# child at nice 19, and stays on the CPU when that build fails.
mkdir -p "$cfg/inbox"
cat >> "$cfg/ew.toml" <<TOML
[[source]]
kind = "folder"
name = "inbox"
path = "$cfg/inbox"
[mqtt]
url = "mqtt://127.0.0.1:9"
outbox = "$cfg/outbox"
TOML
LD_LIBRARY_PATH=$lib "$bin" run --config "$cfg/ew.toml" > "$cfg/log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  grep -q 'Staying on the CPU backend' "$cfg/log" && break
  sleep 0.5
done
kill -TERM $pid; wait $pid || true
for want in 'Serving on the CPU backend meanwhile; building one at low priority' \
            'TensorRT engine not available: the build exited with status 1' \
            'edgewatch ready'; do
  if ! grep -q "$want" "$cfg/log"; then
    cat "$cfg/log" >&2
    echo "check-tensorrt: daemon with stand-ins: expected '$want'" >&2
    exit 1
  fi
done
grep -E 'no usable TensorRT|not available' "$cfg/log" | sed 's/^[^ ]* *//'
# CUDA's order, as the stand-in runtime keeps it: a device other than 0 is
# made current before its flags are set (no context on device 0), and the
# second selection, once the device query has created the context, meets
# cudaErrorSetOnActiveProcess (708) and goes on.
sed -i 's/^\[tensorrt\]$/[tensorrt]\ndevice = 1/' "$cfg/ew.toml"
trace=$cfg/trace
set +e
err=$(STANDIN_TRACE=$trace LD_LIBRARY_PATH=$lib "$bin" build-engine --config "$cfg/ew.toml" 2>&1)
set -e
if grep -q '^context 0' "$trace" || ! echo "$err" | grep -q 'createInferBuilder failed' \
   || [ "$(head -1 "$trace")" != "cudaSetDevice 1" ] || [ "$(grep -c '^cudaSetDeviceFlags 1' "$trace")" -lt 2 ]; then
  cat "$trace" >&2; echo "$err" >&2
  echo "check-tensorrt: device 1 with a live context: expected cudaSetDevice first, 708 tolerated" >&2
  exit 1
fi
echo "check-tensorrt: device 1: $(tr '\n' ' ' < "$trace")"
# The version gate: a shim compiled against 8.6 headers must not start on
# the Nano's 8.2 (vtable slots 8.2 lacks), and does on 8.6.
TENSORRT_ROOT=$PWD/$h/trt-8.6.1 CUDA_HOME=$PWD/$h/cuda12 \
  cargo build --locked --features tensorrt --bin edgewatch
cp target/debug/edgewatch "$bin"
set +e
err=$(LD_LIBRARY_PATH=$lib "$bin" build-engine --config "$cfg/ew.toml" 2>&1)
err86=$(STANDIN_TRT_VERSION=8601 LD_LIBRARY_PATH=$lib "$bin" build-engine --config "$cfg/ew.toml" 2>&1)
set -e
if ! echo "$err" | grep -q 'is TensorRT 8.2.1, but this edgewatch was compiled against TensorRT 8.6.1 headers and needs 8.6 or a later 8.x' \
   || ! echo "$err86" | grep -q 'createInferBuilder failed'; then
  echo "$err" "$err86" >&2
  echo "check-tensorrt: the 8.6-header build must refuse TensorRT 8.2 and run on 8.6" >&2
  exit 1
fi
echo "$err" | grep -E '^edgewatch' | head -1
# CHECK_TRT_AARCH64=1: the same for the Nano's target (glibc 2.27, zig's
# C++), run under qemu with stand-ins built by zig (about 5 minutes).
if [ "${CHECK_TRT_AARCH64:-0}" = 1 ]; then
  EDGEWATCH_FEATURES=tensorrt TENSORRT_ROOT=$PWD/$h/trt-8.2.1 CUDA_HOME=$PWD/$h/cuda12 \
    ./cross/build.sh aarch64
  arm=target/aarch64-unknown-linux-gnu/dist/edgewatch
  alib=$cfg/armlib
  mkdir -p "$alib"
  for spec in NVINFER:libnvinfer.so.8 PARSER:libnvonnxparser.so.8 CUDART:libcudart.so.10.2; do
    target/xtools/zig/ziglang/zig cc -target aarch64-linux-gnu.2.27 -shared -fPIC \
      -DLIB_${spec%%:*} -o "$alib/${spec##*:}" cross/tensorrt-standin.c
  done
  set +e
  err=$(qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH="$alib" "$arm" build-engine --config "$cfg/ew.toml" 2>&1)
  set -e
  echo "$err" | grep -E '^build-engine|^edgewatch'
  if ! echo "$err" | grep -q 'createInferBuilder failed'; then
    echo "check-tensorrt: aarch64 build-engine with stand-ins did not reach TensorRT" >&2
    exit 1
  fi
  if readelf -d "$arm" | grep NEEDED | grep -Ei 'nvinfer|nvonnx|cudart|stdc'; then
    echo "check-tensorrt: the aarch64 tensorrt build links TensorRT/CUDA or libstdc++" >&2
    exit 1
  fi
fi
echo "check-tensorrt: ok"
