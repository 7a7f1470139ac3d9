#!/usr/bin/env bash
# Installs the system packages edgewatch's quick start and tests use, when
# missing: mosquitto + clients (the broker), a TrueType font (test images),
# python3 + pip (model fetch), systemd-analyze (unit checks), openssl (test
# certificates), libclang (V4L2 bindings). Debian/Ubuntu; uses sudo when not root.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The v4l crate generates its V4L2 bindings with bindgen, which loads libclang.
compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null || compgen -G '/usr/lib/*/libclang*.so*' >/dev/null || need+=(libclang-dev)

# --cross: what cross/test.sh needs to run and package the aarch64 build.
if [[ ${1:-} == --cross ]]; then
  command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
  [[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]] || need+=(libc6-arm64-cross)
  [[ -e /usr/aarch64-linux-gnu/lib/libgcc_s.so.1 ]] || need+=(libgcc-s1-arm64-cross)
  command -v lintian >/dev/null 2>&1 || need+=(lintian)
fi

if [[ ${#need[@]} -eq 0 ]]; then
  echo "system packages ok"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: missing ${need[*]}; run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
