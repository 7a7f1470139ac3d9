#!/usr/bin/env bash
# The README's two commands on fresh Debian 12 machines, built here with
# mmdebstrap from Debian's packages:
#
#   plain  --variant=apt + build-essential, git, ca-certificates
#   llvm   the same + llvm-14-dev (libclang-cpp14 but no libclang: the
#          machine on which the quick start once died in bindgen)
#
# In each root it clones this repository's committed HEAD, runs
# ./deploy/quickstart.sh, then the test command (./deploy/test.sh), and
# prints PASS/FAIL with the time of each. The host's Rust toolchain is
# mounted read-only (rustup's home under a throw-away overlay, so
# `rustup target add` in cross/build.sh writes only into the root); the
# host's CA bundle, pip settings, resolver and apt options are copied in,
# which is all this machine needs to reach the package registries.
#
# Usage: deploy/fresh-check.sh [--quickstart-only] [--keep] [plain] [llvm]
#   (default: both roots, both commands; logs and roots under
#   $FRESH_DIR, default /var/tmp/edgewatch-fresh; --keep leaves the roots)
# Needs root (mounts, chroot) and mmdebstrap (apt-get install mmdebstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=${FRESH_DIR:-/var/tmp/edgewatch-fresh}
suite=bookworm
quick_only=false
keep=false
roots=()
for arg in "$@"; do
  case $arg in
    --quickstart-only) quick_only=true ;;
    --keep) keep=true ;;
    plain | llvm) roots+=("$arg") ;;
    *) echo "usage: $0 [--quickstart-only] [--keep] [plain] [llvm]" >&2; exit 2 ;;
  esac
done
[[ ${#roots[@]} -eq 0 ]] && roots=(plain llvm)

[[ $(id -u) -eq 0 ]] || { echo "error: fresh-check needs root (mmdebstrap, mounts, chroot); run it with sudo" >&2; exit 1; }
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "installing mmdebstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
[[ -d $rustup_home/toolchains ]] || { echo "error: no rustup toolchains under $rustup_home; fresh-check mounts the host's rustup toolchain" >&2; exit 1; }
git -C "$repo" diff --quiet HEAD || echo "note: uncommitted changes are not checked; the roots clone HEAD ($(git -C "$repo" rev-parse --short HEAD))"

mkdir -p "$work"
mounted=()
unmount_all() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  mounted=()
}
trap unmount_all EXIT
bind() { # bind SRC DEST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounted+=("$2")
  [[ ${3:-} == ro ]] && mount -o remount,bind,ro "$2"
  return 0
}

# Host apt options that matter for reaching the mirror (proxies, date checks).
aptopts=()
for f in /etc/apt/apt.conf.d/*; do
  grep -q '^Acquire::' "$f" 2>/dev/null && aptopts+=("--aptopt=$f")
done

# Removes a root only when nothing is mounted below it any more: a mount
# left behind would make rm walk into the host's /dev or /sys.
remove_root() {
  local left
  left=$(findmnt -rn -o TARGET | grep -F "$1/" || true)
  if [[ -n $left ]]; then
    echo "warning: not removing $1: still mounted there: $left" >&2
    return 0
  fi
  rm -rf "$1"
}

elapsed() { local s=$1; printf '%dm%02ds' $((s / 60)) $((s % 60)); }
results=()
status=0
for name in "${roots[@]}"; do
  root=$work/$name
  include=build-essential,git,ca-certificates
  [[ $name == llvm ]] && include+=,llvm-14-dev
  remove_root "$root"
  echo "== $name: mmdebstrap $suite ($include) -> $root"
  t0=$(date +%s)
  if ! mmdebstrap --variant=apt --include="$include" "${aptopts[@]}" "$suite" "$root" \
      "deb http://deb.debian.org/debian $suite main" \
      "deb http://deb.debian.org/debian $suite-updates main" \
      "deb http://deb.debian.org/debian-security $suite-security main" >"$work/$name-mmdebstrap.log" 2>&1; then
    echo "FAIL $name root: mmdebstrap failed; see $work/$name-mmdebstrap.log"
    results+=("FAIL $name root")
    status=1
    continue
  fi
  echo "root built in $(elapsed $(( $(date +%s) - t0 )))"
  # What reaching the registries takes on this machine.
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$root/etc/pip.conf"
  # The toolchain: rustup's home read-only below an overlay, cargo's bin read-only.
  mkdir -p "$root/opt/rustup" "$root/opt/cargo-bin" "$work/$name-rustup-upper" "$work/$name-rustup-work"
  mount -t overlay overlay -o "lowerdir=$rustup_home,upperdir=$work/$name-rustup-upper,workdir=$work/$name-rustup-work" "$root/opt/rustup"
  mounted+=("$root/opt/rustup")
  bind "$cargo_bin" "$root/opt/cargo-bin" ro
  bind "$repo" "$root/src" ro
  bind /proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mounted+=("$root/dev")
  bind /sys "$root/sys"

  env_in=(env -i HOME=/root TERM=dumb LANG=C.UTF-8
    PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$(rustup show active-toolchain | cut -d' ' -f1)"
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 PIP_BREAK_SYSTEM_PACKAGES=1 CI="${CI:-}")
  run_in() { chroot "$root" "${env_in[@]}" bash -c "$1"; }
  run_in "git config --global --add safe.directory '*' && git clone -q /src /root/edgewatch" >"$work/$name-clone.log" 2>&1 \
    || { echo "FAIL $name clone: see $work/$name-clone.log"; results+=("FAIL $name clone"); status=1; unmount_all; continue; }

  steps=("quickstart:./deploy/quickstart.sh")
  $quick_only || steps+=("test:./deploy/test.sh")
  for step in "${steps[@]}"; do
    label=${step%%:*}
    cmd=${step#*:}
    log=$work/$name-$label.log
    echo "== $name: $cmd (log: $log)"
    t0=$(date +%s)
    if run_in "cd /root/edgewatch && $cmd" >"$log" 2>&1; then
      line="PASS $name $label $(elapsed $(( $(date +%s) - t0 )))"
    else
      line="FAIL $name $label $(elapsed $(( $(date +%s) - t0 ))) (last lines of $log:)"
      status=1
    fi
    echo "$line"
    results+=("$line")
    [[ $line == FAIL* ]] && { tail -15 "$log" | sed 's/^/    /'; break; }
  done
  # Cargo's first-build time, as the quick start reported it.
  grep -h 'Finished `release`' "$work/$name-quickstart.log" 2>/dev/null | head -1 | sed "s/^/  $name quickstart build: /" || true
  unmount_all
  $keep || { remove_root "$root"; rm -rf "$work/$name-rustup-upper" "$work/$name-rustup-work"; }
done

echo
echo "== fresh-check summary"
printf '%s\n' "${results[@]}"
exit $status
