#!/usr/bin/env bash
# Quantizes engines/ppocr-det-v4.onnx to INT8 (ONNX Runtime's static QDQ,
# per-channel weights, MinMax calibration) into engines/ppocr-det-v4-int8.onnx,
# calibrated on frames make-samples renders from seeds nobody benchmarks
# (9000+: 1080p lines, busy 4K scenes, A4 pages). Measured in
# docs/onnxruntime.md ("INT8"): faster on ONNX Runtime, but it loses small
# text, so it is not a default. Python packages go to target/quant-pylib.
#   engines/make-int8.sh [extra quantize_int8.py args, e.g. --method percentile --limit 10]
set -euo pipefail
cd "$(dirname "$0")/.."
pylib=target/quant-pylib
if ! PYTHONPATH=$pylib python3 -c "import onnxruntime.quantization, onnx, PIL, ml_dtypes" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$pylib" \
    onnxruntime==1.32.0 onnx==1.17.0 numpy==2.2.6 pillow==11.3.0 ml_dtypes==0.5.3 sympy==1.14.0
fi
./engines/fetch-models.sh >/dev/null
cargo build --locked --quiet -p edgewatch-samples --bin make-samples
cal=target/int8-calibration
rm -rf "$cal"
SAMPLES_SEED=9000 target/debug/make-samples "$cal/lines" 4 1920 1080 20 14 40 >/dev/null
SAMPLES_SEED=9100 target/debug/make-samples "$cal/busy" 3 3840 2160 6 12 30 busy >/dev/null
SAMPLES_SEED=9200 target/debug/make-samples "$cal/page" 2 1240 1754 0 14 28 page >/dev/null
PYTHONPATH=$pylib python3 engines/quantize_int8.py engines/ppocr-det-v4.onnx engines/ppocr-det-v4-int8.onnx \
  "$cal"/lines/*.jpg "$cal"/busy/*.jpg "$cal"/page/*.jpg --method minmax "$@"
