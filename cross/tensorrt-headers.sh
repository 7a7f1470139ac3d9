#!/usr/bin/env bash
# Puts the public TensorRT and CUDA headers the shim is checked against into
# target/trt-headers (git ignores target/). Never commit them.
#
#   cross/tensorrt-headers.sh TENSORRT_GIT ONNX_TENSORRT_GIT
#
# TENSORRT_GIT: a clone of github.com/NVIDIA/TensorRT (tags 8.2.1, v8.6.1,
# v10.13.0, v11.0); ONNX_TENSORRT_GIT: github.com/onnx/onnx-tensorrt
# (branches 8.2-GA, 8.6-GA, main: NvOnnxParser.h). Bare repositories work.
# CUDA's headers come from PyPI (nvidia-cuda-runtime-cu12, and
# nvidia-cuda-nvcc-cu12 for crt/host_defines.h).
set -euo pipefail
cd "$(dirname "$0")/.."
trt=${1:?usage: $0 TENSORRT_GIT ONNX_TENSORRT_GIT}
parser=${2:?usage: $0 TENSORRT_GIT ONNX_TENSORRT_GIT}
out=target/trt-headers
mkdir -p "$out"
# tag:parser-branch; TensorRT 11 ships NvOnnxParser.h in its own include/.
for pair in 8.2.1:8.2-GA v8.6.1:8.6-GA v10.13.0:main v11.0:; do
  tag=${pair%%:*} branch=${pair##*:}
  dir=$out/trt-${tag#v}
  rm -rf "$dir" && mkdir -p "$dir"
  git -C "$trt" archive "$tag" include | tar -x -C "$dir"
  if [ -n "$branch" ]; then
    git -C "$parser" show "$branch:NvOnnxParser.h" > "$dir/include/NvOnnxParser.h"
  fi
  echo "tensorrt-headers: $dir ($(grep -c . "$dir/include/NvInfer.h") lines in NvInfer.h)"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
  nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-nvcc-cu12==12.9.86
rm -rf "$out/cuda12" && mkdir -p "$out/cuda12/include"
for w in "$tmp"/*.whl; do
  unzip -q -o "$w" 'nvidia/cuda_runtime/include/*' 'nvidia/cuda_nvcc/include/*' -d "$tmp/x" 2>/dev/null || true
done
cp -r "$tmp/x/nvidia/cuda_runtime/include/." "$out/cuda12/include/"
cp -rn "$tmp/x/nvidia/cuda_nvcc/include/." "$out/cuda12/include/"
echo "tensorrt-headers: $out/cuda12 (CUDA 12.9 runtime headers)"
