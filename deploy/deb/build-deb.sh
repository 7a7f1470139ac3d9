#!/usr/bin/env bash
# Builds the edgewatch .deb for one architecture from a built binary, with
# dpkg-deb (no extra tools):
#
#   deploy/deb/build-deb.sh BINARY [arm64|amd64]   -> target/deb/edgewatch_<version>_<arch>.deb
#
# The package installs the binary, ONNX Runtime's CPU library in
# /usr/lib/edgewatch/ (where `backend = "auto"` finds it: 1.32.0 for amd64,
# 1.19.2 for arm64, the newest built for the Nano's glibc 2.27) with its
# licence and notices, the systemd unit (not enabled), a commented
# /etc/edgewatch/edgewatch.toml (a conffile) and the model fetch script;
# postinst creates the `edgewatch` system user. The model is fetched by the
# operator (README "Install on a Jetson"), not by dpkg. The library comes
# from engines/fetch-onnxruntime.sh (PyPI's wheel, pinned by sha256), cached
# in target/deb/onnxruntime-ARCH.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=$1
arch=${2:-arm64}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)-1
out=target/deb
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/edgewatch"

install -D -m 0755 "$bin" "$pkg/usr/bin/edgewatch"
case "$arch" in
  # ONNX Runtime sets the floor: 1.32.0 imports GLIBC_2.28, 1.19.2 at most
  # GLIBC_2.27; both GLIBCXX_3.4.22 (libstdc++ from GCC 6).
  amd64) ort_env=(ORT_ARCH=x86_64 ORT_GLIBC=2.28) libc=2.28 ;;
  arm64) ort_env=(ORT_ARCH=aarch64 ORT_GLIBC=2.27) libc=2.27 ;;
  *) echo "error: no ONNX Runtime is pinned for $arch; use amd64 or arm64" >&2; exit 1 ;;
esac
ort_dir=target/deb/onnxruntime-$arch
env "${ort_env[@]}" ./engines/fetch-onnxruntime.sh "$ort_dir" >/dev/null
ort_lib=$(readlink -f "$ort_dir/libonnxruntime.so")
install -D -m 0644 "$ort_lib" "$pkg/usr/lib/edgewatch/$(basename "$ort_lib")"
install -d "$pkg/usr/share/doc/edgewatch/onnxruntime"
install -m 0644 "$ort_dir/onnxruntime-LICENSE" "$pkg/usr/share/doc/edgewatch/onnxruntime/LICENSE"
gzip -9n <"$ort_dir/onnxruntime-ThirdPartyNotices.txt" >"$pkg/usr/share/doc/edgewatch/onnxruntime/ThirdPartyNotices.txt.gz"
chmod 0644 "$pkg/usr/share/doc/edgewatch/onnxruntime/ThirdPartyNotices.txt.gz"
install -D -m 0644 systemd/edgewatch.service "$pkg/lib/systemd/system/edgewatch.service"
install -D -m 0644 deploy/edgewatch.toml "$pkg/etc/edgewatch/edgewatch.toml"
install -D -m 0755 engines/fetch-models.sh "$pkg/usr/share/edgewatch/fetch-models.sh"
# To put another ONNX Runtime beside the model (engines/onnxruntime/ is
# searched before /usr/lib/edgewatch/).
install -D -m 0755 engines/fetch-onnxruntime.sh "$pkg/usr/share/edgewatch/fetch-onnxruntime.sh"
install -D -m 0644 deploy/deb/copyright "$pkg/usr/share/doc/edgewatch/copyright"
# An override that matches nothing is itself a warning, so each is kept only
# where its file has what lintian looks for (a debug build splits retina's
# banner; arm64's ONNX Runtime has no curl).
embedded() {
  case $1 in
    liblivemedia) grep -qa 'LIVE555 Streaming Media v' "$2" ;;
    curl) grep -qa 'A libcurl function was given a bad argument' "$2" ;;
    mbedtls) grep -qaE 'ASN1 - Actual length differs from expected length|SSL - The connection indicated an EOF' "$2" ;;
    *) echo "error: build-deb.sh does not know how lintian finds $1" >&2; exit 1 ;;
  esac
}
install -d "$pkg/usr/share/lintian/overrides"
while IFS= read -r line; do
  if [[ $line =~ ^edgewatch:\ embedded-library\ ([^ ]+)\ \[(.*)\]$ ]]; then
    for file in "$pkg"/${BASH_REMATCH[2]}; do
      embedded "${BASH_REMATCH[1]}" "$file" && echo "$line" && break
    done
  else
    echo "$line"
  fi
done <deploy/deb/lintian-overrides >"$pkg/usr/share/lintian/overrides/edgewatch"
chmod 0644 "$pkg/usr/share/lintian/overrides/edgewatch"
printf 'edgewatch (%s) stable; urgency=medium\n\n  * Package built from the edgewatch repository.\n\n -- edgewatch developers <edgewatch@example.org>  %s\n' \
  "$version" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n > "$pkg/usr/share/doc/edgewatch/changelog.Debian.gz"

install -d "$pkg/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "deploy/deb/$script" "$pkg/DEBIAN/$script"
done
echo /etc/edgewatch/edgewatch.toml > "$pkg/DEBIAN/conffiles"
size_kb=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: edgewatch
Version: $version
Architecture: $arch
Maintainer: edgewatch developers <edgewatch@example.org>
Installed-Size: $size_kb
Depends: libc6 (>= $libc), libstdc++6 (>= 6), libgcc-s1 | libgcc1, passwd
Section: misc
Priority: optional
Description: inference daemon for the edge: folders and cameras to MQTT
 edgewatch watches folders and V4L2 cameras, runs an ONNX vision model
 (text detection by default; YOLO boxes and classification too) on the
 CPU within a fixed memory budget (ONNX Runtime's CPU library, shipped in
 /usr/lib/edgewatch, or pure Rust), and publishes the detections over MQTT
 through a durable outbox. It runs as a hardened systemd service with a
 watchdog. The service is installed but not enabled.
CONTROL

mkdir -p "$out"
deb="$out/edgewatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
echo "built $deb ($(stat -c %s "$deb") bytes)"
