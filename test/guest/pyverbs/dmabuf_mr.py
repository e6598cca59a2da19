#!/usr/bin/python3
# pyverbs' DmaBufMR (ibv_reg_dmabuf_mr()) on a dma-buf of host memory (a
# dma-heap buffer, a udmabuf, a vgem buffer: fd 3, LENGTH bytes), for
# test/guest/rdma-thirdparty-dmabuf.test.ts. The CPU sees the buffer
# through its own mmap, each access between DMA_BUF_IOCTL_SYNC's start and
# end. Run as another user than root, RLIMIT_MEMLOCK goes to 0 after the RC
# pair and its host MR, before the registration: a dma-buf MR pins nothing.
# Prints one JSON object: the user, which libibverbs and rxe provider ran,
# how the registration went and, where it worked, whether an RDMA WRITE
# landed in the buffer and an RDMA READ brought back what the CPU wrote.
#
#   dmabuf_mr.py DEVICE GID_INDEX LENGTH
import contextlib
import fcntl
import json
import mmap
import struct
import sys

from pyverbs.mr import DmaBufMR
from mr_io import ACCESS, rc_session, rdma, register

DEV, GID_INDEX, LENGTH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
DMABUF_FD = 3
POLL_S = 30
# <linux/dma-buf.h>: _IOW('b', 0, struct dma_buf_sync { __u64 flags; })
DMA_BUF_IOCTL_SYNC = 0x40086200
DMA_BUF_SYNC_RW, DMA_BUF_SYNC_END = 3, 4


@contextlib.contextmanager
def cpu_access():
    fcntl.ioctl(DMABUF_FD, DMA_BUF_IOCTL_SYNC, struct.pack("Q", DMA_BUF_SYNC_RW))
    try:
        yield
    finally:
        fcntl.ioctl(DMABUF_FD, DMA_BUF_IOCTL_SYNC, struct.pack("Q", DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END))


def main():
    view = mmap.mmap(DMABUF_FD, LENGTH, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    with rc_session(DEV, GID_INDEX, LENGTH) as (pd, rc, out):
        # pyverbs registers at iova = the offset in the dma-buf (0).
        out["dmabuf"] = register(
            lambda: DmaBufMR(pd, LENGTH, ACCESS, dmabuf=DMABUF_FD),
            lambda mr: rdma(rc, mr.rkey, 0, view, 0, LENGTH, 19, POLL_S, cpu_access))
    print(json.dumps(out))


main()
