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
# and an RDMA READ brought back what the CPU wrote there.
#
#   vfio_bar_mr.py DEVICE GID_INDEX REGION_OFFSET BAR_SIZE VMA_OFFSET DMABUF_OFFSET LENGTH
import ctypes
import json
import mmap
import os
import resource
import sys

import pyverbs.enums as e
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR, DmaBufMR
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsRDMAError
from pyverbs.wr import SGE, SendWR
from rc import poll, rc_pair

DEV, GID_INDEX = sys.argv[1], int(sys.argv[2])
REGION_OFFSET, BAR_SIZE, VMA_OFFSET, DMABUF_OFFSET, LENGTH = (int(a) for a in sys.argv[3:8])
VFIO_FD, DMABUF_FD = 3, 4
# A bound, not a measure: rxe copies 64 KiB under TCG (and KASAN) well within it.
POLL_S = 30
ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ


def vmpin_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmPin:"))


def rdma(rc, rkey, raddr, bar, at, seed):
    """WRITE a pattern to (rkey, raddr), check it in the BAR at `at`; then READ back what the CPU puts there."""
    cq, (a, _), host = rc
    pattern = bytes((i * seed + 5) & 0xFF for i in range(LENGTH))
    host.write(pattern, LENGTH)
    bar[at:at + LENGTH] = bytes(LENGTH)  # not what an earlier run left there
    wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(host.buf, LENGTH, host.lkey)])
    wr.set_wr_rdma(rkey, raddr)
    a.post_send(wr)
    poll(cq, limit_s=POLL_S)
    wrote = bar[at:at + LENGTH] == pattern
    back = bytes((i * (seed + 2) + 11) & 0xFF for i in range(LENGTH))
    bar[at:at + LENGTH] = back
    wr = SendWR(opcode=e.IBV_WR_RDMA_READ, num_sge=1, sg=[SGE(host.buf, LENGTH, host.lkey)])
    wr.set_wr_rdma(rkey, raddr)
    a.post_send(wr)
    poll(cq, limit_s=POLL_S)
    return {"write": wrote, "read": host.read(LENGTH, 0) == back}


def register(make, run):
    """One path: the registration (and VmPin across it), then the RDMA through it."""
    out = {}
    before = vmpin_kb()
    try:
        mr = make()
    except PyverbsRDMAError as x:
        out["reg_mr"] = os.strerror(x.error_code) if x.error_code else str(x)
        out["errno"] = x.error_code
        return out
    out["reg_mr"] = "ok"
    out["vmpin_kb"] = vmpin_kb() - before
    try:
        out.update(run(mr))
    except Exception as x:  # reported, not raised: the test says what failed
        out["rdma"] = f"{type(x).__name__}: {x}"
    mr.close()
    return out


def main():
    bar = mmap.mmap(VFIO_FD, BAR_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=REGION_OFFSET)
    base = ctypes.addressof(ctypes.c_char.from_buffer(bar))
    out = {"uid": os.getuid()}
    with Context(name=DEV) as ctx:
        with PD(ctx) as pd:
            cq = CQ(ctx, 8)
            # Both QPs are kept: a collected peer QP is destroyed.
            rc = (cq, rc_pair(ctx, pd, cq, GID_INDEX, ACCESS), MR(pd, LENGTH, ACCESS))
            if out["uid"] != 0:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
                out["memlock"] = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
            out["vma"] = register(
                lambda: MR(pd, LENGTH, ACCESS, address=base + VMA_OFFSET),
                lambda mr: rdma(rc, mr.rkey, mr.buf, bar, VMA_OFFSET, 13))
            # pyverbs registers at iova = the offset in the dma-buf (0).
            out["dmabuf"] = register(
                lambda: DmaBufMR(pd, LENGTH, ACCESS, dmabuf=DMABUF_FD),
                lambda mr: rdma(rc, mr.rkey, 0, bar, DMABUF_OFFSET, 17))
    print(json.dumps(out))


main()
