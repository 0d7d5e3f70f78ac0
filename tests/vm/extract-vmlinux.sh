#!/usr/bin/env bash
# extract-vmlinux.sh VMLINUZ OUT: writes the uncompressed ELF vmlinux held in
# an x86 bzImage. Direct boot of the ELF skips the in-guest decompression,
# which under TCG costs seconds per boot; the ELF also keeps .BTF, so the
# guest's vmlinux.h can be generated on the host.
#
# How: the bzImage header (boot protocol >= 2.08) says where the compressed
# payload is (payload_offset/payload_length at 0x248/0x24c, counted from the
# end of the real-mode setup sectors). Its magic picks the decompressor. The
# kernel build appends the uncompressed size as a little-endian u32 to the
# payload, so the result is checked against it. When the header is unusable,
# every offset where a known magic occurs is tried until an ELF comes out.
# Exit 0 with OUT written, or 1 with the reason on stderr (OUT removed).
set -euo pipefail

die() { echo "extract-vmlinux: $*" >&2; rm -f "${out:-}.part"; exit 1; }
[ $# -eq 2 ] || die "usage: extract-vmlinux.sh VMLINUZ OUT"
in=$1 out=$2
[ -r "$in" ] || die "cannot read $in"

trap 'rm -f "$out.part"' EXIT
size=$(stat -c %s "$in")

# Unsigned little-endian integer of WIDTH bytes at OFFSET ("" past the end).
le() { [ $(($1 + $2)) -le "$size" ] && od -A n -t "u$2" -j "$1" -N "$2" "$in" | tr -d ' \n'; return 0; }
hexat() { [ $(($1 + $2)) -le "$size" ] && od -A n -t x1 -j "$1" -N "$2" "$in" | tr -d ' \n'; return 0; }

# Decompresses the bytes from OFFSET (LENGTH bytes, or to the end when empty)
# with the tool named by the magic found there. Trailing bytes after the
# compressed stream (the appended size, padding) make some tools complain:
# their exit status is ignored and the output is judged instead.
try_at() {
  local offset=$1 length=$2 magic cmd
  magic=$(hexat "$offset" 6)
  case "$magic" in
    1f8b08*) cmd="gzip -dc" ;;
    fd377a585a00) cmd="xz -dc --single-stream" ;;
    28b52ffd*) cmd="zstd -dc" ;;
    5d0000*) cmd="xz -dc --format=lzma" ;;
    425a68*) cmd="bzip2 -dc" ;;
    02214c18*) cmd="lz4 -dc" ;;
    894c5a4f*) cmd="lzop -dc" ;;
    *) return 1 ;;
  esac
  command -v "${cmd%% *}" >/dev/null || { echo "extract-vmlinux: payload at $offset needs ${cmd%% *}, not installed" >&2; return 1; }
  if [ -n "$length" ]; then
    tail -c +"$((offset + 1))" "$in" | head -c "$length" | $cmd >"$out.part" 2>/dev/null || true
  else
    tail -c +"$((offset + 1))" "$in" | $cmd >"$out.part" 2>/dev/null || true
  fi
  [ "$(head -c 4 "$out.part" | od -A n -t x1 | tr -d ' \n')" = 7f454c46 ] || return 1
}

done_ok() { mv "$out.part" "$out"; exit 0; }

# 1. The header's own payload pointer.
if [ "$(hexat $((0x202)) 4)" = 48647253 ] && [ "$(le $((0x206)) 2)" -ge $((0x208)) ]; then # "HdrS"
  setup_sects=$(le $((0x1f1)) 1)
  [ "$setup_sects" -eq 0 ] && setup_sects=4
  start=$(((setup_sects + 1) * 512 + $(le $((0x248)) 4)))
  length=$(le $((0x24c)) 4)
  [ $((start + length)) -le "$size" ] || die "the header puts the payload past the end of $in (truncated?)"
  if try_at "$start" "$length"; then
    # The last 4 payload bytes: the uncompressed size the build recorded.
    expected=$(le $((start + length - 4)) 4)
    actual=$(stat -c %s "$out.part")
    [ "$expected" = "$actual" ] || die "decompressed $actual bytes, the image records $expected (truncated or corrupt payload)"
    done_ok
  fi
fi

# 2. Every offset of a known magic.
for magic in '\x1f\x8b\x08' '\xfd7zXZ\x00' '\x28\xb5\x2f\xfd' '\x5d\x00\x00' 'BZh' '\x02\x21\x4c\x18' '\x89LZO'; do
  for offset in $(LC_ALL=C grep -obUaP "$magic" "$in" 2>/dev/null | cut -d: -f1); do
    try_at "$offset" "" && done_ok
  done
done
die "no compressed ELF kernel found in $in"
