#!/usr/bin/env bash
# Builds the edgewatch .deb for one architecture from a built binary, with
# dpkg-deb (no extra tools):
#
#   deploy/deb/build-deb.sh BINARY [arm64|amd64]   -> target/deb/edgewatch_<version>_<arch>.deb
#
# The package installs the binary, the systemd unit (not enabled), a
# commented /etc/edgewatch/edgewatch.toml (a conffile) and the model fetch
# script; postinst creates the `edgewatch` system user. The model is fetched
# by the operator (README "Install on a Jetson"), not by dpkg.
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
install -D -m 0644 systemd/edgewatch.service "$pkg/lib/systemd/system/edgewatch.service"
install -D -m 0644 deploy/edgewatch.toml "$pkg/etc/edgewatch/edgewatch.toml"
install -D -m 0755 engines/fetch-models.sh "$pkg/usr/share/edgewatch/fetch-models.sh"
# backend = "onnxruntime": the operator fetches the library into the engines
# folder, where edgewatch looks (beside the model); nothing else is shipped.
install -D -m 0755 engines/fetch-onnxruntime.sh "$pkg/usr/share/edgewatch/fetch-onnxruntime.sh"
install -D -m 0644 deploy/deb/copyright "$pkg/usr/share/doc/edgewatch/copyright"
install -D -m 0644 deploy/deb/lintian-overrides "$pkg/usr/share/lintian/overrides/edgewatch"
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
Depends: libc6 (>= 2.27), passwd
Section: misc
Priority: optional
Description: inference daemon for the edge: folders and cameras to MQTT
 edgewatch watches folders and V4L2 cameras, runs an ONNX vision model
 (text detection by default; YOLO boxes and classification too) on the
 CPU within a fixed memory budget, and publishes the detections over MQTT
 through a durable outbox. It runs as a hardened systemd service with a
 watchdog. The service is installed but not enabled.
CONTROL

mkdir -p "$out"
deb="$out/edgewatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
echo "built $deb ($(stat -c %s "$deb") bytes)"
