#!/usr/bin/env bash
# Fetches ONNX Runtime's CPU library for `model.backend = "onnxruntime"` from
# the onnxruntime wheel on PyPI, verifies the wheel by sha256 and installs
# only its libonnxruntime.so, its LICENSE and ThirdPartyNotices.txt (as
# onnxruntime-LICENSE and onnxruntime-ThirdPartyNotices.txt, which the .deb
# ships beside the library). edgewatch itself never downloads it: the
# operator runs this (or brings their own library) and points
# model.onnxruntime_library at the file, or leaves it where edgewatch looks.
# Idempotent. Usage: fetch-onnxruntime.sh [DIR]   (default: engines/onnxruntime)
# For another machine: ORT_ARCH=aarch64 ORT_GLIBC=2.27 fetch-onnxruntime.sh DIR
# (cross/test.sh fetches the Jetson's library this way).
#
# x86_64 and aarch64 with glibc >= 2.28: 1.32.0. aarch64 with glibc 2.27
# (JetPack 4, Ubuntu 18.04): 1.19.2, the newest wheel tagged manylinux_2_27;
# 1.32.0's library needs GLIBC_2.28 (fcntl64) and would not load there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/onnxruntime}
arch=${ORT_ARCH:-$(uname -m)}
glibc=${ORT_GLIBC:-$(getconf GNU_LIBC_VERSION | awk '{print $2}')}
older_glibc() { [[ "$(printf '%s\n%s\n' "$1" "$glibc" | sort -V | head -1)" != "$1" ]]; }

case "$arch" in
  x86_64)
    version=1.32.0 python=3.11 platform=manylinux_2_28_x86_64
    want=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d ;;
  aarch64)
    if older_glibc 2.28; then
      version=1.19.2 python=3.8 platform=manylinux_2_27_aarch64
      want=5bd8b875757ea941cbcfe01582970cc299893d1b65bd56731e326a8333f638a3
    else
      version=1.32.0 python=3.11 platform=manylinux_2_28_aarch64
      want=2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c
    fi ;;
  *)
    echo "error: no onnxruntime wheel is pinned for $arch; build ONNX Runtime yourself and set model.onnxruntime_library" >&2
    exit 1 ;;
esac
dest="$dir/libonnxruntime.so.$version"
if [[ -f "$dest" && -f "$dest.wheel-sha256" && "$(cat "$dest.wheel-sha256")" == "$want" \
      && -f "$dir/onnxruntime-LICENSE" && -f "$dir/onnxruntime-ThirdPartyNotices.txt" ]]; then
  ln -sf "libonnxruntime.so.$version" "$dir/libonnxruntime.so"
  echo "onnxruntime ok: $dest"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 is needed to fetch onnxruntime (apt-get install python3 python3-pip)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching onnxruntime==$version ($platform) from PyPI ..."
if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$python" --platform "$platform" --dest "$tmp" "onnxruntime==$version"; then
  echo "error: pip could not download onnxruntime==$version; check network access to PyPI" >&2
  exit 1
fi
wheel=$(ls "$tmp"/*.whl)
got=$(sha256sum "$wheel" | cut -d' ' -f1)
if [[ "$got" != "$want" ]]; then
  echo "error: sha256 mismatch for $(basename "$wheel"): got $got, want $want; refusing to install it" >&2
  exit 1
fi
mkdir -p "$dir"
python3 - "$wheel" "$version" "$dir" <<'PY'
import shutil, sys, zipfile
wheel, version, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    for member, name in [
        (f"onnxruntime/capi/libonnxruntime.so.{version}", f"libonnxruntime.so.{version}.tmp"),
        ("onnxruntime/LICENSE", "onnxruntime-LICENSE"),
        ("onnxruntime/ThirdPartyNotices.txt", "onnxruntime-ThirdPartyNotices.txt"),
    ]:
        with z.open(member) as src, open(f"{out}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
mv "$dest.tmp" "$dest"
echo "$want" >"$dest.wheel-sha256"
ln -sf "libonnxruntime.so.$version" "$dir/libonnxruntime.so"
echo "onnxruntime installed: $dest ($(stat -c %s "$dest") bytes, from a wheel with sha256 $want)"
