#!/bin/sh
# Stands in for qemu-system-x86_64 (run-in-guest.sh --icount puts it first in
# PATH under that name): runs the real qemu ($EWBENCH_REAL_QEMU) with
# single-threaded TCG, because -icount refuses multi-threaded TCG and
# tests/vm/run-in-vm.sh always asks for thread=multi. Nothing else changes.
[ -n "${EWBENCH_REAL_QEMU:-}" ] || { echo "qemu-single-thread.sh: EWBENCH_REAL_QEMU is not set" >&2; exit 125; }
for a; do
  shift
  case "$a" in
    tcg,thread=multi) a=tcg,thread=single ;;
    tcg,thread=multi,*) a="tcg,thread=single,${a#tcg,thread=multi,}" ;;
  esac
  set -- "$@" "$a"
done
exec "$EWBENCH_REAL_QEMU" "$@"
