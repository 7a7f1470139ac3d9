#!/usr/bin/env bash
# Builds the small ONNX models the YOLO and classifier tests run (see
# make_test_models.py) into engines/test/. The `onnx` Python package is
# installed, pinned, into target/pylib (no virtualenv or system install
# needed). Idempotent: does nothing when the models are newer than the script.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out="$here/test"
pylib="$root/target/pylib"
script="$here/make_test_models.py"

fresh=1
for m in yolov8-squares yolov5-squares classify-colors classify-colors-softmax db-bright; do
  [[ -f "$out/$m.onnx" && "$out/$m.onnx" -nt "$script" ]] || fresh=0
done
if [[ $fresh -eq 1 ]]; then
  echo "test models ok: $out"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 is needed to build the test models (apt-get install python3 python3-pip)" >&2; exit 1; }
if ! PYTHONPATH="$pylib" python3 -c "import onnx" 2>/dev/null; then
  echo "installing onnx into $pylib ..."
  if ! python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$pylib" \
      onnx==1.17.0 protobuf==5.29.5 numpy==2.2.6; then
    echo "error: pip could not install onnx==1.17.0; check network access to PyPI" >&2
    exit 1
  fi
fi
PYTHONPATH="$pylib" python3 "$script" "$out"
