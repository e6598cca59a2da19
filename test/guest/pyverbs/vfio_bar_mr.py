#!/usr/bin/python3
# pyverbs on the ivshmem BAR through vfio-pci, for
# test/guest/rdma-thirdparty.test.ts, both ways an application may hold it:
#  - the VMA path: MR(pd, length, access, address=...) on a mmap of the VFIO
#    device fd (fd 3) at the BAR region's offset: a plain ibv_reg_mr();
#  - the fd path: DmaBufMR(pd, length, access, dmabuf=4) on a dma-buf of the
#    BAR (fd 4, VFIO_DEVICE_FEATURE_DMA_BUF over [DMABUF_OFFSET, +LENGTH)):
#    ibv_reg_dmabuf_mr().
# The test opens the device and exports the dma-buf with the addon and hands
# both fds over. Run as another user than root (the test spawns it as uid
# 65534: no credential change in this process, so uverbs takes its post_send
# write()s), the RC pair and its host MR are made first, then RLIMIT_MEMLOCK
# goes to 0 before either registration: nothing may be pinned.
# Prints one JSON object: per path, how the registration went and, where it
# worked, whether an RDMA WRITE landed in the BAR (seen through the mapping)
# and an RDMA READ brought back what the CPU wrote there; and which
# libibverbs and rxe provider ran (LD_LIBRARY_PATH picks
# scripts/rdma-core/build.sh's, whose rxe has reg_dmabuf_mr).
#
#   vfio_bar_mr.py DEVICE GID_INDEX REGION_OFFSET BAR_SIZE VMA_OFFSET DMABUF_OFFSET LENGTH
import ctypes
import json
import mmap
import sys

from pyverbs.mr import MR, DmaBufMR
from mr_io import ACCESS, rc_session, rdma, register

DEV, GID_INDEX = sys.argv[1], int(sys.argv[2])
REGION_OFFSET, BAR_SIZE, VMA_OFFSET, DMABUF_OFFSET, LENGTH = (int(a) for a in sys.argv[3:8])
VFIO_FD, DMABUF_FD = 3, 4
# A bound, not a measure: rxe copies 64 KiB under TCG (and KASAN) well within it.
POLL_S = 30


def main():
    bar = mmap.mmap(VFIO_FD, BAR_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=REGION_OFFSET)
    base = ctypes.addressof(ctypes.c_char.from_buffer(bar))
    with rc_session(DEV, GID_INDEX, LENGTH) as (pd, rc, out):
        out["vma"] = register(
            lambda: MR(pd, LENGTH, ACCESS, address=base + VMA_OFFSET),
            lambda mr: rdma(rc, mr.rkey, mr.buf, bar, VMA_OFFSET, LENGTH, 13, POLL_S))
        # pyverbs registers at iova = the offset in the dma-buf (0).
        out["dmabuf"] = register(
            lambda: DmaBufMR(pd, LENGTH, ACCESS, dmabuf=DMABUF_FD),
            lambda mr: rdma(rc, mr.rkey, 0, bar, DMABUF_OFFSET, LENGTH, 17, POLL_S))
    print(json.dumps(out))


main()
