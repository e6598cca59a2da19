#!/bin/bash
# The series' paths from an RDMA MR to device memory, in the test guest
# (bench/p2p-paths.c; issue 26's cover-letter table):
#   node dist/cli.js bench --kernels patched-7.3,patched --suites p2p-paths
# Memories: the first NVMe CMB (p2pmem/allocate), the ivshmem BAR through
# vfio-pci in no-IOMMU mode (Linux 7.x) or through v2's /dev/ivshmem_p2pN
# (6.12 with kernel-patches/), and host memory. p2p-paths is built on the
# host by `make build` (test/guest/c/Makefile).
set -eu
cd "$(dirname "$0")/.."
bin=build/guest-c/p2p-paths
[ -x $bin ] || { echo "$bin missing: run 'make build' on the host" >&2; exit 1; }
echo "kernel $(uname -r) (${P2PDMA_KERNEL:-?}), ${P2PDMA_TOPOLOGY:-?} topology"
args=(-i "${ITERATIONS:-7}" -r "${ROUNDS:-3}")
for cmb in /sys/bus/pci/devices/*/p2pmem/allocate; do
	[ -e "$cmb" ] && args+=(-c "$cmb")
	break
done
for node in /dev/ivshmem_p2p*; do
	[ -e "$node" ] && args+=(-s "$node")
	break
done
bdf=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && bdf=$(basename "$d") && break
done
if [ -n "$bdf" ] && [ -d /sys/bus/pci/drivers/vfio-pci ]; then
	# ivshmem to vfio-pci, no-IOMMU mode (the guest has no IOMMU), given back after.
	dev=/sys/bus/pci/devices/$bdf
	before=$(basename "$(readlink "$dev/driver" 2>/dev/null)" 2>/dev/null || true)
	noiommu=/sys/module/vfio/parameters/enable_unsafe_noiommu_mode
	was=$(cat $noiommu)
	echo Y > $noiommu
	[ -n "$before" ] && echo "$bdf" > "$dev/driver/unbind"
	echo vfio-pci > "$dev/driver_override"
	echo "$bdf" > /sys/bus/pci/drivers/vfio-pci/bind
	trap 'echo "$bdf" > /sys/bus/pci/drivers/vfio-pci/unbind; echo > "$dev/driver_override"; [ -n "$before" ] && echo "$bdf" > "/sys/bus/pci/drivers/$before/bind"; echo "$was" > $noiommu' EXIT
	args+=(-v "$bdf")
fi
$bin "${args[@]}"
