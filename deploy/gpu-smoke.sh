#!/usr/bin/env bash
# The TensorRT path on a real GPU, in one go: for the first Jetson, or the
# day a GPU machine is lent. Needs TensorRT (libnvinfer, libnvonnxparser)
# and the CUDA runtime, and their headers for the build:
#   JetPack: sudo apt install nvidia-tensorrt-dev (headers in /usr/include/aarch64-linux-gnu)
#   x86: TensorRT's wheels (pip install tensorrt-cu12) give the libraries;
#        TENSORRT_ROOT and CUDA_HOME point at headers (cross/tensorrt-headers.sh)
#
#   deploy/gpu-smoke.sh [IMAGES_DIR]
#
# Steps, each must pass:
#  1. cargo build --release --features tensorrt; --version names the headers;
#  2. build-engine builds, checks against the CPU backend and caches;
#  3. a second start finds it in the cache (no rebuild);
#  4. the same images through backend "cpu" and "tensorrt": >= 90% of the
#     CPU's boxes matched at IoU 0.5;
#  5. again with tactics = "restricted" and host_memory = "mapped";
#  6. a truncated engine file is thrown away and rebuilt; an engine that
#     loads but fails for another reason is kept (cannot be forced here).
# Prints one line per step; the logs stay in $SMOKE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-}
dir=${SMOKE_DIR:-$(mktemp -d)}
mkdir -p "$dir"
if [[ -n "${TRT_LIB_DIR:-}" ]]; then
  export LD_LIBRARY_PATH=$TRT_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
step() { echo "gpu-smoke: $*"; }
fail() { echo "gpu-smoke: FAILED: $*" >&2; exit 1; }

nvidia-smi -L 2>/dev/null || tegrastats --interval 1000 2>/dev/null | head -1 || true
[[ -f engines/ppocr-det-v4.onnx ]] || ./engines/fetch-models.sh
cargo build --release --locked --features tensorrt --bin edgewatch 2>&1 | tail -1
bin=target/release/edgewatch
"$bin" --version | grep -q 'TensorRT: built against' || fail "--version does not name TensorRT"
step "1 built: $("$bin" --version)"

if [[ -z "$images" ]]; then
  images=$dir/images
  cargo run -q --release -p edgewatch-samples --bin make-samples -- "$images" 8 1920 1080 10 18 44 > "$dir/truth.jsonl"
fi
mapfile -t files < <(find "$images" -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' \) | sort)
(( ${#files[@]} > 0 )) || fail "no images in $images"

config() {  # config NAME BACKEND EXTRA_TENSORRT_LINES
  cat > "$dir/$1.toml" <<EOF
memory_budget_mb = 2048
[model]
path = "$PWD/engines/ppocr-det-v4.onnx"
backend = "$2"
[tensorrt]
engines = "$dir/engines-$1"
$3
EOF
  echo "$dir/$1.toml"
}

boxes_match() {  # boxes_match CPU_JSONL GPU_JSONL -> share of CPU boxes matched
  python3 - "$1" "$2" <<'PY'
import json, sys
def boxes(path):
    return [[d["box"] for d in json.loads(l)["detections"]] for l in open(path)]
def iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0])); h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = w * h; u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - i
    return i / u if u > 0 else 0
cpu, gpu = boxes(sys.argv[1]), boxes(sys.argv[2])
total = sum(len(c) for c in cpu); hit = sum(sum(any(iou(a, b) >= 0.5 for b in g) for a in c) for c, g in zip(cpu, gpu))
print(f"{hit / max(total, 1):.3f} {hit} {total}")
PY
}

"$bin" detect --config "$(config cpu cpu '')" "${files[@]}" > "$dir/cpu.jsonl"

run_variant() {  # run_variant NAME EXTRA_LINES
  local cfg
  cfg=$(config "$1" tensorrt "$2")
  "$bin" build-engine --config "$cfg" > "$dir/$1.build.log" 2>&1 || fail "$1: build-engine (see $dir/$1.build.log)"
  step "$1: $(grep -E 'built in|engine cached|checked' "$dir/$1.build.log" | tail -1)"
  # A second start: the cache, no build.
  "$bin" detect --config "$cfg" "${files[@]}" > "$dir/$1.jsonl" 2> "$dir/$1.detect.log" || fail "$1: detect"
  grep -qi 'build' "$dir/$1.detect.log" && grep -qi 'building' "$dir/$1.detect.log" && fail "$1: rebuilt on the second start"
  grep -q '"backend":"tensorrt"' "$dir/$1.jsonl" || fail "$1: messages do not say backend tensorrt"
  read -r share hit total < <(boxes_match "$dir/cpu.jsonl" "$dir/$1.jsonl")
  python3 -c "import sys; sys.exit(0 if $share >= 0.9 else 1)" || fail "$1: only $hit of $total CPU boxes matched at IoU 0.5"
  step "$1: cache hit on the second start; $hit of $total CPU boxes matched at IoU 0.5 ($share)"
  echo "$cfg"
}

cfg=$(run_variant default '' | tail -1)
run_variant restricted 'tactics = "restricted"' > /dev/null
run_variant mapped 'host_memory = "mapped"' > /dev/null

# A truncated engine is thrown away and rebuilt.
engine=$(find "$dir/engines-default" -name '*.engine' | head -1)
[[ -n "$engine" ]] || fail "no engine file in $dir/engines-default"
truncate -s $(( $(stat -c %s "$engine") / 2 )) "$engine"
"$bin" build-engine --config "$cfg" > "$dir/truncated.log" 2>&1 || fail "rebuild after truncation (see $dir/truncated.log)"
grep -qiE 'truncated|does not|rebuil|checksum' "$dir/truncated.log" || fail "the truncated engine was not noticed"
step "6 truncated engine: noticed and rebuilt"
step "ok (logs in $dir)"
