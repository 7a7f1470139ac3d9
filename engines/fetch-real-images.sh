#!/usr/bin/env bash
# Fetches real scans nobody here made, for the tests and the benchmark: the
# test data of OCRmyPDF's source release on PyPI (MPL-2.0 package; the
# scans are its public test resources). Each file is pinned by sha256.
#   typewriter.png  4000x2864, 1-bit palette: a 400-dpi typewriter page
#   linn.png        2550x3300, 1-bit palette: a 300-dpi letter page
#   baiona_color.jpg 640x682, JFIF: a map with place names, as a colour JPEG
# Nothing goes into git: they land in engines/test/real/ (ignored).
# Idempotent. Usage: fetch-real-images.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/test/real}
mkdir -p "$dir"
sdist_req="ocrmypdf==16.10.0"
sdist_sha=d5b907a7b92951f1f3617f0f5ca002d866143d94fd168546a70e51756bf6412e
files=(
  "typewriter.png:6f7a83685a83af954e9672b3e2db3253af165513d2826d780a48e175742f4469"
  "linn.png:dcd90f08a6b8a733612f818330153636c13283dd548e2e092cad1fe628ec7bf3"
  "baiona_color.jpg:ca10778da7da3084de6fecceca3778836b87ce7cbe814d6837285df2c12129d7"
)
sha() { sha256sum "$1" | cut -d' ' -f1; }

missing=false
for f in "${files[@]}"; do
  [[ -f "$dir/${f%%:*}" && "$(sha "$dir/${f%%:*}")" == "${f##*:}" ]] || missing=true
done
if ! $missing; then
  echo "real images ok: $dir"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $sdist_req (source release) from PyPI ..."
python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" "$sdist_req"
sdist=$(ls "$tmp"/*.tar.gz)
if [[ "$(sha "$sdist")" != "$sdist_sha" ]]; then
  echo "error: sha256 mismatch for $sdist; refusing it" >&2
  exit 1
fi
for f in "${files[@]}"; do
  name=${f%%:*} want=${f##*:}
  tar -xzf "$sdist" -C "$tmp" "ocrmypdf-16.10.0/tests/resources/$name"
  got=$(sha "$tmp/ocrmypdf-16.10.0/tests/resources/$name")
  if [[ "$got" != "$want" ]]; then
    echo "error: sha256 mismatch for $name: got $got, want $want" >&2
    exit 1
  fi
  mv "$tmp/ocrmypdf-16.10.0/tests/resources/$name" "$dir/$name"
done
echo "real images installed: $dir (${#files[@]} files)"
