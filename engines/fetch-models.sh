#!/usr/bin/env bash
# Fetches the default models from the rapidocr-onnxruntime wheel on PyPI
# (PP-OCRv4, Apache-2.0) and verifies each by sha256:
#   ppocr-det-v4.onnx  text detection (the detector's default model)
#   ppocr-rec-v4.onnx  text recognition, for [read] (dictionary in its metadata)
# Idempotent: does nothing when the models are already there and correct.
# Usage: fetch-models.sh [DIR]   (default: beside this script, engines/; the
# package installs it as /usr/share/edgewatch/fetch-models.sh and passes
# /var/lib/edgewatch/engines)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
mkdir -p "$dir"
wheel_req="rapidocr-onnxruntime==1.4.4"
# destination  sha256  member of the wheel
models=(
  "ppocr-det-v4.onnx d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9 rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
  "ppocr-rec-v4.onnx 48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

missing=()
for m in "${models[@]}"; do
  read -r name want member <<<"$m"
  if [[ -f "$dir/$name" && "$(sha "$dir/$name")" == "$want" ]]; then
    echo "model ok: $dir/$name"
  else
    missing+=("$m")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

command -v python3 >/dev/null || { echo "error: python3 is needed to fetch the models (apt-get install python3 python3-pip)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetching $wheel_req from PyPI ..."
if ! python3 -m pip download --quiet --no-deps --dest "$tmp" "$wheel_req"; then
  echo "error: pip could not download $wheel_req; check network access to PyPI" >&2
  exit 1
fi
wheel=$(ls "$tmp"/*.whl)
for m in "${missing[@]}"; do
  read -r name want member <<<"$m"
  # A wheel is a zip; python's zipfile avoids depending on unzip being installed.
  python3 - "$wheel" "$member" "$tmp/model.onnx" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  got=$(sha "$tmp/model.onnx")
  if [[ "$got" != "$want" ]]; then
    echo "error: sha256 mismatch for $member: got $got, want $want; refusing to install it" >&2
    exit 1
  fi
  mv "$tmp/model.onnx" "$dir/$name.tmp"
  sync "$dir/$name.tmp" 2>/dev/null || true
  mv "$dir/$name.tmp" "$dir/$name"
  echo "model installed: $dir/$name ($(stat -c %s "$dir/$name") bytes, sha256 $want)"
done
