#!/usr/bin/env bash
# Builds edgewatch release binaries that run on old glibc (Jetson Nano:
# Ubuntu 18.04, glibc 2.27) with cargo-zigbuild: zig links against a glibc
# 2.27 stub, so no sysroot or cross gcc is needed. Everything comes from the
# registries: zig from PyPI (ziglang), cargo-zigbuild from crates.io.
#
#   cross/build.sh [aarch64|x86_64]...     (default: aarch64)
#
# Writes target/<triple>/dist/edgewatch (the `dist` profile: release,
# stripped) and checks its glibc symbol
# versions (cross/check-glibc.sh). The CPU build (tract) runs on every
# JetPack from 4.6 (L4T 32.7, Ubuntu 18.04) on; there is no TensorRT build
# yet (see issue 7).
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC=2.27
ZIGLANG_VERSION=0.13.0.post1
ZIGBUILD_VERSION=0.19.8
tools=target/xtools

arches=("$@")
[[ ${#arches[@]} -eq 0 ]] && arches=(aarch64)

# zig: a pinned wheel, kept in target/ (never installed system-wide).
if [[ ! -x $tools/zig/ziglang/zig ]]; then
  echo "== installing zig $ZIGLANG_VERSION (PyPI ziglang) into $tools/zig"
  python3 -m pip install --quiet --disable-pip-version-check --target "$tools/zig" "ziglang==$ZIGLANG_VERSION"
fi
if [[ ! -x $tools/cargo/bin/cargo-zigbuild ]]; then
  echo "== installing cargo-zigbuild $ZIGBUILD_VERSION into $tools/cargo"
  cargo install --quiet --locked "cargo-zigbuild@$ZIGBUILD_VERSION" --root "$tools/cargo"
fi
export PATH="$PWD/$tools/zig/ziglang:$PWD/$tools/cargo/bin:$PATH"

for arch in "${arches[@]}"; do
  triple="$arch-unknown-linux-gnu"
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  echo "== cargo zigbuild --profile dist --target $triple.$GLIBC"
  # EDGEWATCH_FEATURES=tensorrt builds the TensorRT backend (needs its
  # headers: TENSORRT_ROOT, CUDA_HOME; see docs/tensorrt.md).
  cargo zigbuild --profile dist --locked --bin edgewatch --target "$triple.$GLIBC" \
    ${EDGEWATCH_FEATURES:+--features "$EDGEWATCH_FEATURES"}
  bin="target/$triple/dist/edgewatch"
  ./cross/check-glibc.sh "$bin" "$GLIBC"
  echo "built $bin ($(stat -c %s "$bin") bytes)"
done
