#!/usr/bin/env bash
# The Jetson build, checked here: builds the aarch64 binary for glibc 2.27,
# runs `--version` and one `detect` under qemu-aarch64 and compares the
# detections with the x86 build's, then builds the arm64 .deb and tests its
# install, unit, lintian and removal. deploy/test.sh runs this after the
# tests.
set -euo pipefail
cd "$(dirname "$0")/.."

./cross/build.sh aarch64
# The x86 reference and the sample image (debug, as the tests built them:
# all targets, so the dev-dependencies' features match and nothing rebuilds).
cargo build --locked --workspace --all-targets
bin=target/aarch64-unknown-linux-gnu/dist/edgewatch
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)

echo "== $bin --version under qemu-aarch64"
"${qemu[@]}" "$bin" --version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/debug/make-samples "$work" 1 640 480 4 22 34 >/dev/null
img="$work/sample-000.jpg"
# tract on both: engines/onnxruntime/ holds an x86 library, which `auto`
# would take on x86 and fail to open under qemu.
printf '[model]\npath = "%s/engines/ppocr-det-v4.onnx"\nbackend = "cpu"\n' "$PWD" >"$work/detect.toml"
echo "== detect under qemu-aarch64 vs x86"
start=$(date +%s%N)
"${qemu[@]}" "$bin" detect --config "$work/detect.toml" "$img" >"$work/arm.json"
echo "aarch64 detect under qemu took $(( ($(date +%s%N) - start) / 1000000 )) ms"
target/debug/edgewatch detect --config "$work/detect.toml" "$img" >"$work/x86.json"
python3 - "$work/arm.json" "$work/x86.json" <<'PY'
import json, sys
arm, x86 = (json.loads(open(p).readline()) for p in sys.argv[1:3])
a = [d["box"] for d in arm["detections"]]
b = [d["box"] for d in x86["detections"]]
print(f"aarch64: {len(a)} boxes, x86: {len(b)} boxes")
for d in arm["detections"]:
    print("  aarch64", d["label"], round(d["score"], 3), [round(v, 1) for v in d["box"]])
assert a, "the sample has text; aarch64 found none"
assert len(a) == len(b), f"box counts differ: {len(a)} vs {len(b)}"
worst = max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x, y))
assert worst <= 1.0, f"boxes differ by up to {worst:.2f} px"
print(f"same detections (boxes within {worst:.2f} px)")
PY

echo "== detect on ONNX Runtime under qemu-aarch64 (the wheel for glibc 2.27)"
ORT_ARCH=aarch64 ORT_GLIBC=2.27 ./engines/fetch-onnxruntime.sh "$work/ort"
ort_lib=$(readlink -f "$work/ort/libonnxruntime.so")
./cross/check-glibc.sh "$ort_lib" 2.27
printf '[model]\npath = "%s/engines/ppocr-det-v4.onnx"\nbackend = "onnxruntime"\nonnxruntime_library = "%s"\n' \
  "$PWD" "$ort_lib" >"$work/ort.toml"
start=$(date +%s%N)
"${qemu[@]}" "$bin" detect --config "$work/ort.toml" "$img" >"$work/arm-ort.json" 2>"$work/arm-ort.log"
echo "aarch64 detect on ONNX Runtime under qemu took $(( ($(date +%s%N) - start) / 1000000 )) ms"
grep -q "ONNX Runtime 1\." "$work/arm-ort.log" || { cat "$work/arm-ort.log" >&2; echo "error: ONNX Runtime did not start on aarch64" >&2; exit 1; }
python3 - "$work/arm-ort.json" "$work/x86.json" <<'PY'
import json, sys
arm, x86 = (json.loads(open(p).readline()) for p in sys.argv[1:3])
assert arm["model"]["backend"] == "onnxruntime-cpu", arm["model"]
a = [d["box"] for d in arm["detections"]]
b = [d["box"] for d in x86["detections"]]
assert a and len(a) == len(b), f"box counts differ: {len(a)} (aarch64 ONNX Runtime) vs {len(b)} (x86 tract)"
worst = max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x, y))
assert worst <= 2.0, f"boxes differ by up to {worst:.2f} px"
print(f"aarch64 on ONNX Runtime: the x86 tract detections, boxes within {worst:.2f} px")
PY

./deploy/deb/build-deb.sh "$bin" arm64
./deploy/deb/test-deb.sh target/deb/edgewatch_*_arm64.deb "${qemu[@]}"
# The x86 package too, from the tests' debug binary (stripped, as a release is).
strip -o "$work/edgewatch" target/debug/edgewatch
./deploy/deb/build-deb.sh "$work/edgewatch" amd64
./deploy/deb/test-deb.sh target/deb/edgewatch_*_amd64.deb
ls -l target/deb/*.deb
