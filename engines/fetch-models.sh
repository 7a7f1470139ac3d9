#!/usr/bin/env bash
# Fetches the default text-detection model (PP-OCRv4 det, Apache-2.0) from the
# rapidocr-onnxruntime wheel on PyPI and verifies it by sha256.
# Idempotent: does nothing when the model is already there and correct.
# Usage: fetch-models.sh [DIR]   (default: beside this script, engines/; the
# package installs it as /usr/share/edgewatch/fetch-models.sh and passes
# /var/lib/edgewatch/engines)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
mkdir -p "$dir"
dest="$dir/ppocr-det-v4.onnx"
want=d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9
wheel_req="rapidocr-onnxruntime==1.4.4"
member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$dest" && "$(sha "$dest")" == "$want" ]]; then
  echo "model ok: $dest"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 is needed to fetch the model (apt-get install python3 python3-pip)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetching $wheel_req from PyPI ..."
if ! python3 -m pip download --quiet --no-deps --dest "$tmp" "$wheel_req"; then
  echo "error: pip could not download $wheel_req; check network access to PyPI" >&2
  exit 1
fi
wheel=$(ls "$tmp"/*.whl)
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
mv "$tmp/model.onnx" "$dest.tmp"
sync "$dest.tmp" 2>/dev/null || true
mv "$dest.tmp" "$dest"
echo "model installed: $dest ($(stat -c %s "$dest") bytes, sha256 $want)"
