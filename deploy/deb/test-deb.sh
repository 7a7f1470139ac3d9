#!/usr/bin/env bash
# Installs a built edgewatch .deb into a throw-away root (dpkg --root, the
# maintainer scripts run outside a chroot with DPKG_ROOT set), checks what it
# installed, verifies the installed unit, runs lintian, then removes and
# purges it.
#   deploy/deb/test-deb.sh DEB
set -euo pipefail
deb=$(realpath "$1")
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
