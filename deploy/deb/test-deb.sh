#!/usr/bin/env bash
# Installs a built edgewatch .deb into a throw-away root (dpkg --root, the
# maintainer scripts run outside a chroot with DPKG_ROOT set), checks what it
# installed, runs the installed binary on an image to see that `auto` takes
# the packaged ONNX Runtime, verifies the installed unit, runs lintian, then
# removes and purges it.
#   deploy/deb/test-deb.sh DEB [RUNNER...]   (RUNNER: e.g. qemu-aarch64 -L /usr/aarch64-linux-gnu)
set -euo pipefail
deb=$(realpath "$1")
shift
runner=("$@")
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail() { echo "package test: $*" >&2; exit 1; }

mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status" "$root/etc/shadow" "$root/etc/gshadow"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\n' >"$root/etc/group"
# --force-architecture: the arm64 package is tested on this x86 machine.
dpkg_root() { DPKG_ROOT="$root" dpkg --root="$root" --force-script-chrootless --force-depends --force-architecture --log=/dev/null "$@"; }

echo "== install $(basename "$deb") into $root"
dpkg_root -i "$deb"
for f in usr/bin/edgewatch lib/systemd/system/edgewatch.service etc/edgewatch/edgewatch.toml \
         usr/share/edgewatch/fetch-models.sh usr/share/edgewatch/fetch-onnxruntime.sh \
         usr/share/doc/edgewatch/copyright; do
  [[ -e $root/$f ]] || fail "/$f not installed"
done
grep -q '^edgewatch:x:[0-9]*:[0-9]*:.*:/var/lib/edgewatch:/usr/sbin/nologin$' "$root/etc/passwd" \
  || fail "service user not created: $(cat "$root/etc/passwd")"
[[ $(stat -c %a "$root/var/lib/edgewatch/engines") == 770 ]] || fail "engines/ not 0770"
[[ $(stat -c %u "$root/var/lib/edgewatch") == $(awk -F: '$1=="edgewatch"{print $3}' "$root/etc/passwd") ]] \
  || fail "/var/lib/edgewatch not owned by edgewatch"
grep -qx /etc/edgewatch/edgewatch.toml "$root/var/lib/dpkg/info/edgewatch.conffiles" \
  || fail "edgewatch.toml is not a conffile"
[[ -z $(find "$root/etc" -path '*wants*' -name 'edgewatch*') ]] || fail "the service was enabled"

echo "== the installed binary takes the packaged ONNX Runtime"
ort=$(ls "$root"/usr/lib/edgewatch/libonnxruntime.so.* 2>/dev/null) || fail "no ONNX Runtime in /usr/lib/edgewatch"
[[ -s $root/usr/share/doc/edgewatch/onnxruntime/LICENSE && -s $root/usr/share/doc/edgewatch/onnxruntime/ThirdPartyNotices.txt.gz ]] \
  || fail "ONNX Runtime's licence or notices not installed"
grep -q "^Files: usr/lib/edgewatch/libonnxruntime" "$root/usr/share/doc/edgewatch/copyright" || fail "copyright does not cover ONNX Runtime"
# The model alone in its folder: engines/onnxruntime/ beside the repo's copy
# would be found first.
mkdir "$root/model"
cp "$repo/engines/ppocr-det-v4.onnx" "$root/model/"
"$repo/target/debug/make-samples" "$root/model" 1 640 480 4 22 34 >/dev/null
printf '[model]\npath = "%s/model/ppocr-det-v4.onnx"\n' "$root" >"$root/detect.toml"
"${runner[@]}" "$root/usr/bin/edgewatch" detect --config "$root/detect.toml" "$root/model/sample-000.jpg" \
  >"$root/detect.json" 2>"$root/detect.log" || { cat "$root/detect.log" >&2; fail "the installed binary failed to detect"; }
grep -q "ONNX Runtime 1\.[0-9.]* from .*/lib/edgewatch/libonnxruntime" "$root/detect.log" \
  || { cat "$root/detect.log" >&2; fail "auto did not take $(basename "$ort") from /usr/lib/edgewatch"; }
python3 - "$root/detect.json" <<'PY' || fail "detect's answer (above) is not ONNX Runtime's boxes"
import json, sys
msg = json.loads(open(sys.argv[1]).readline())
assert msg["model"]["backend"] == "onnxruntime-cpu", msg["model"]
assert msg["detections"], "the sample has text; none found"
print(f"installed binary on {msg['model']['backend']}: {len(msg['detections'])} boxes")
PY
rm -rf "$root/model" "$root/detect.toml" "$root/detect.json" "$root/detect.log"

echo "== systemd-analyze verify (installed unit, ExecStart under the root)"
sed "s#/usr/bin/edgewatch#$root/usr/bin/edgewatch#" "$root/lib/systemd/system/edgewatch.service" >"$root/edgewatch.service"
out=$(systemd-analyze verify "$root/edgewatch.service" 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify: $out"

if command -v lintian >/dev/null; then
  echo "== lintian"
  # Explained in README "Packages": not an upload to Debian (no bug to
  # close), no man page (--help is the manual), the passwd/group reads make
  # DPKG_ROOT installs work. Anything else fails the test.
  lintian --tag-display-limit 0 \
    --suppress-tags initial-upload-closes-no-bugs,no-manual-page,maintainer-script-should-not-parse-etc-passwd-or-group \
    "$deb" 2>&1 | grep -v 'running with root privileges' | tee "$root/lintian.txt" || true
  ! grep -q '^[EW]:' "$root/lintian.txt" || fail "lintian found problems (above)"
fi

echo "== remove, then purge"
echo "# edited by the operator" >>"$root/etc/edgewatch/edgewatch.toml"
dpkg_root -r edgewatch
[[ ! -e $root/usr/bin/edgewatch ]] || fail "binary left after remove"
grep -q 'edited by the operator' "$root/etc/edgewatch/edgewatch.toml" || fail "remove lost the edited config"
dpkg_root --purge edgewatch
[[ ! -e $root/etc/edgewatch ]] || fail "/etc/edgewatch left after purge"
[[ -d $root/var/lib/edgewatch ]] || fail "purge deleted /var/lib/edgewatch (it may hold undelivered detections)"
left=$( (find "$root/usr" "$root/lib" -type f 2>/dev/null || true) | wc -l)
[[ $left == 0 ]] || fail "$left file(s) left after purge"
echo "package test ok: $(basename "$deb")"
