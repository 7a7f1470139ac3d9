#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages edgewatch's quick start and tests use,
# when missing, in one apt call. Uses sudo when not root.
#
# Each package is asked of dpkg itself (dpkg-query's Status), never guessed
# from a file or a command of that name: a glob once took libclang-cpp for
# libclang, and a pyenv python for Debian's python3-pip.
#
# Usage: install-deps.sh [--cross] [--tests] [--check]
#   --cross  also what cross/test.sh needs (qemu, arm64 libc, lintian)
#   --tests  also the tests' RTSP server (gst-rtsp-server, x264; ~230 MB) and
#            Prometheus (~110 MB)
#   --check  only list what is missing; exit 1 if anything is
set -euo pipefail

# What each package is for, so a refusal can say why it is wanted.
packages=(
  "mosquitto:the MQTT broker the quick start and tests talk to"
  "mosquitto-clients:mosquitto_sub/mosquitto_passwd (quick start, TLS tests)"
  "fonts-dejavu-core:the font sample and test images are drawn with"
  "python3:model fetch and test-model builder"
  "python3-pip:fetches the model (PyPI) and the onnx package"
  "ca-certificates:HTTPS to PyPI and crates.io"
  "gcc:the linker Rust uses, and ring's C code"
  "libc6-dev:C headers and crt files for linking"
  "linux-libc-dev:<linux/videodev2.h>, for the fake V4L2 camera the tests build"
  "systemd:systemd-analyze and journalctl (unit and journald tests)"
  "openssl:test certificates"
  "procps:kill, used by the restart tests"
  "mount:mount/umount of the small tmpfs the disk-full tests fill"
)
cross=false
tests=false
check=false
for arg in "$@"; do
  case $arg in
    --cross) cross=true ;;
    --tests) tests=true ;;
    --check) check=true ;;
    *) echo "usage: $0 [--cross] [--tests] [--check]" >&2; exit 2 ;;
  esac
done
if $cross; then
  packages+=(
    "qemu-user:runs the aarch64 build (cross/test.sh)"
    "libc6-arm64-cross:the aarch64 loader and libc for qemu"
    "libgcc-s1-arm64-cross:libgcc_s for the aarch64 build under qemu"
    "libstdc++6-arm64-cross:libstdc++ for ONNX Runtime's aarch64 library under qemu"
    "lintian:checks the .deb"
  )
fi

if $tests; then
  packages+=(
    "python3-gi:runs the tests' RTSP server (tests/rtsp/serve.py)"
    "gir1.2-gst-rtsp-server-1.0:gst-rtsp-server, the tests' RTSP server"
    "gstreamer1.0-plugins-base:pngdec and videoconvert for that server"
    "gstreamer1.0-plugins-good:rtph264pay and multifilesrc"
    "gstreamer1.0-plugins-bad:rtph265pay and x265enc (the H.265 refusal test)"
    "gstreamer1.0-plugins-ugly:x264enc, the H.264 the RTSP tests stream"
    "prometheus:a real Prometheus scrapes /metrics in the tests; promtool checks its format"
    "netpbm:pnmtotiff writes the G4 TIFF scans the tests read"
    "time:/usr/bin/time, the peak RSS in benches/peer/bench-read.sh"
  )
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "error: no dpkg-query here: this script knows Debian and Ubuntu only; install the equivalents of:" >&2
  printf '  %s\n' "${packages[@]}" >&2
  exit 1
fi

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

need=()
for entry in "${packages[@]}"; do
  pkg=${entry%%:*}
  installed "$pkg" || need+=("$pkg")
done

if [[ ${#need[@]} -eq 0 ]]; then
  echo "system packages ok"
  exit 0
fi
if $check; then
  echo "missing: ${need[*]}"
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
# Say so now if apt's success did not leave every package installed.
missing=()
for pkg in "${need[@]}"; do installed "$pkg" || missing+=("$pkg"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "error: apt-get finished but ${missing[*]} is still not installed; see apt's output above" >&2
  exit 1
fi
