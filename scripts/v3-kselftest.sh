#!/usr/bin/env bash
# The v3 series' kselftest of the p2p_dma_buf path (kernel-patches/v3 0009,
# tools/testing/selftests/rdma/p2p_dma_buf_mr.c), which build.sh does not
# build: compiled here against the patched 7.3 tree and its uapi headers,
# then run in a guest with ivshmem bound to vfio-pci in no-IOMMU mode (the
# bar_mr tests) and the first NVMe CMB's p2pmem/allocate (p2pmem_mr).
#
#   scripts/v3-kselftest.sh [patched-7.3|baseline-7.3] [--debug]
#
# The kernels must be built (build.sh --source 7.3 patched [--debug]: this
# script asks build.sh for the patched tree, which builds it if it is not).
# Expected: 7/7 on patched-7.3; on baseline-7.3 5 of 7 fail (only the
# ranges past the mapping are EFAULT there too), as the path is not there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${P2PDMA_CACHE:-$HOME/.cache/p2pdma}
kernel=patched-7.3
case ${1:-} in patched-7.3|baseline-7.3) kernel=$1; shift ;; esac
img=$("$repo/scripts/kernel/build.sh" --print-path --source 7.3 patched 2>/dev/null)
tree=$cache/build/patched-7.3/src
out=$(mktemp -d /tmp/p2pdma-kselftest.XXXXXX)
gcc -O2 -Wall -I"$tree/tools/testing/selftests" -isystem "$img/headers/include" \
	-o "$out/p2p_dma_buf_mr" "$tree/tools/testing/selftests/rdma/p2p_dma_buf_mr.c" -libverbs
cat > "$out/run.sh" <<'GUEST'
#!/bin/bash
# ivshmem-plain (1af4:1110) to vfio-pci, no-IOMMU mode (the guest has no IOMMU)
set -e
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && bdf=$(basename "$d") && break
done
echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
[ -e "/sys/bus/pci/devices/$bdf/driver" ] && echo "$bdf" > "/sys/bus/pci/devices/$bdf/driver/unbind"
echo vfio-pci > "/sys/bus/pci/devices/$bdf/driver_override"
echo "$bdf" > /sys/bus/pci/drivers/vfio-pci/bind
for d in /sys/bus/pci/devices/*; do
	[ -e "$d/p2pmem/allocate" ] && p2pmem=$d/p2pmem/allocate && break
done
P2P_DMA_BUF_BDF=$bdf P2P_DMA_BUF_P2PMEM=${p2pmem:-} "$(dirname "$0")/p2p_dma_buf_mr"
GUEST
chmod +x "$out/run.sh"
cd "$repo"
flock /tmp/p2pdma-vm.lock node dist/cli.js vm run --kernel "$kernel" "$@" --rwdir "$out" -- bash "$out/run.sh"
