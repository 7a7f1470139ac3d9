#!/usr/bin/env bash
# Fails when BINARY needs a glibc newer than MAX (default 2.27, the Jetson
# Nano's Ubuntu 18.04): reads the versioned symbols it imports.
#   cross/check-glibc.sh BINARY [MAX]
set -euo pipefail
bin=$1
max=${2:-2.27}
# readelf reads any architecture's ELF, unlike the host objdump.
versions=$(readelf --dyn-syms --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV)
[[ -n $versions ]] || { echo "error: $bin imports no versioned glibc symbols; is it a dynamic glibc binary?" >&2; exit 1; }
newest=$(tail -n1 <<<"$versions")
if [[ $(printf '%s\n%s\n' "$newest" "$max" | sort -V | tail -n1) != "$max" ]]; then
  echo "error: $bin needs glibc $newest, newer than $max; these symbols are the problem:" >&2
  readelf --dyn-syms --wide "$bin" | grep -E "GLIBC_($(sed 's/\./\\./g' <<<"$newest"))" >&2
  exit 1
fi
echo "glibc ok: $bin needs at most glibc $newest (limit $max)"
