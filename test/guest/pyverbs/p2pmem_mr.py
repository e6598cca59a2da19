#!/usr/bin/python3
# pyverbs registering an MR on a mapping of an NVMe CMB (p2pmem/allocate),
# for test/guest/rdma-pyverbs.test.ts: rdma-core's own bindings take the
# same path as the addon (a plain ibv_reg_mr() of the address). With UID,
# the file and the device are opened as root, then RLIMIT_MEMLOCK goes to 0
# and the process becomes UID before registering (nothing may be pinned).
# Started as another user than root (test/guest/rdma-thirdparty.test.ts,
# with the attribute's group handed over), it opens both itself and lowers
# RLIMIT_MEMLOCK to 0 after the RC pair and its host MR: no credential
# change, so RDMA works as for root.
# Prints one JSON object: how the registration went, and where it worked
# (not after a switch of user), whether an RDMA WRITE landed in the CMB and
# an RDMA READ came back.
#
#   p2pmem_mr.py ALLOCATE SIZE DEVICE GID_INDEX [UID]
import ctypes
import json
import mmap
import os
import resource
import sys

import pyverbs.enums as e
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsRDMAError
from pyverbs.wr import SGE, SendWR
from rc import poll, rc_pair

ALLOCATE, SIZE, DEV, GID_INDEX = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
UID = int(sys.argv[5]) if len(sys.argv) > 5 else None
# rxe copies into the CMB with the CPU, an MMIO access per word under TCG.
CMB_LIMIT_S = 60
ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ


def vmpin_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmPin:"))


def rig(ctx, pd):
    """An RC pair and a host MR, made before the switch of user: host memory is pinned."""
    cq = CQ(ctx, 8)
    # Both QPs are kept: a collected peer QP is destroyed.
    qps = rc_pair(ctx, pd, cq, GID_INDEX, ACCESS)
    return cq, qps, MR(pd, SIZE, ACCESS)


def rdma(rc, cmb_mr, cmb):
    """WRITE a pattern into the CMB MR, then READ the CPU's bytes back out of it."""
    cq, (a, _), host = rc
    pattern = bytes((i * 13 + 5) & 0xFF for i in range(SIZE))
    host.write(pattern, SIZE)
    wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(host.buf, SIZE, host.lkey)])
    wr.set_wr_rdma(cmb_mr.rkey, cmb_mr.buf)
    a.post_send(wr)
    poll(cq, limit_s=CMB_LIMIT_S)
    wrote = cmb[:SIZE] == pattern
    cmb[:SIZE] = bytes(SIZE)
    wr = SendWR(opcode=e.IBV_WR_RDMA_READ, num_sge=1, sg=[SGE(host.buf, SIZE, host.lkey)])
    wr.set_wr_rdma(cmb_mr.rkey, cmb_mr.buf)
    a.post_send(wr)
    poll(cq, limit_s=CMB_LIMIT_S)
    return {"write": wrote, "read": host.read(SIZE, 0) == bytes(SIZE)}


def main():
    fd = os.open(ALLOCATE, os.O_RDWR)
    cmb = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(cmb))
    out = {}
    with Context(name=DEV) as ctx:
        with PD(ctx) as pd:
            rc = rig(ctx, pd)
            if UID is not None:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
                os.setuid(UID)
            elif os.getuid() != 0:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
                out["memlock"] = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
            out["uid"] = os.getuid()
            before = vmpin_kb()
            try:
                mr = MR(pd, SIZE, ACCESS, address=addr)
            except PyverbsRDMAError as x:
                out["reg_mr"] = os.strerror(x.error_code) if x.error_code else str(x)
                out["errno"] = x.error_code
            else:
                out["reg_mr"] = "ok"
                out["vmpin_kb"] = vmpin_kb() - before
                # uverbs refuses write() commands (rxe's post_send) from a
                # process whose credentials changed after it opened the
                # device: the switched user only registers.
                try:
                    if UID is None:
                        out.update(rdma(rc, mr, cmb))
                except Exception as x:  # reported, not raised: the test says what failed
                    out["rdma"] = f"{type(x).__name__}: {x}"
                mr.close()
    print(json.dumps(out))


main()
