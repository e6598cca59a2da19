#!/bin/bash
# MR registration time against size, host memory (GUP) vs device memory
# registered through p2p_map (patched kernel), in the test guest:
#   node dist/cli.js vm run --kernel patched -- bench/mr-reg.sh
# mr-reg is built on the host by `make build` (test/guest/c/Makefile).
set -eu
cd "$(dirname "$0")/.."
bin=build/guest-c/mr-reg
[ -x $bin ] || { echo "$bin missing: run 'make build' on the host" >&2; exit 1; }
echo "kernel $(uname -r), ${P2PDMA_TOPOLOGY:-?} topology"
for cmb in /sys/bus/pci/devices/*/p2pmem/allocate; do
	echo "== NVMe CMB ${cmb%/p2pmem/allocate}"
	$bin -i "${ITERATIONS:-7}" "$cmb"
	break
done
for bar in /dev/ivshmem_p2p*; do
	[ -e "$bar" ] || continue
	echo "== ivshmem BAR $bar (16 MiB)"
	$bin -i "${ITERATIONS:-7}" -m $((16 << 20)) "$bar"
done
