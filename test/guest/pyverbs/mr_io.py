# Shared by vfio_bar_mr.py and dmabuf_mr.py: the RC pair and host MR each
# runs its registrations beside; one registration (VmPin
# across it), then an RDMA WRITE checked through the CPU's view of the
# memory and an RDMA READ of what the CPU wrote there; and which libibverbs
# and rxe provider the process runs (the system's or
# scripts/rdma-core/build.sh's, picked by LD_LIBRARY_PATH).
import contextlib
import os
import resource

import pyverbs.enums as e
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsRDMAError
from pyverbs.wr import SGE, SendWR
from rc import poll, rc_pair

ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ


def vmpin_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmPin:"))


def loaded_libs():
    """The files of libibverbs and of rxe's provider mapped in this process."""
    libs = {}
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            name = os.path.basename(path)
            if name.startswith("libibverbs.so"):
                libs["libibverbs"] = path
            elif name.startswith("librxe-rdmav"):
                libs["rxe"] = path
    return libs


@contextlib.contextmanager
def rc_session(dev, gid_index, length):
    """The PD, an RC pair with a host MR of `length` bytes (`rc` for rdma())
    and the output dict (the user, the libraries loaded). Run as another
    user than root, RLIMIT_MEMLOCK goes to 0 after them, before the
    registrations under test: those may pin nothing."""
    out = {"uid": os.getuid()}
    with Context(name=dev) as ctx:
        out["libs"] = loaded_libs()
        with PD(ctx) as pd:
            cq = CQ(ctx, 8)
            # Both QPs are kept: a collected peer QP is destroyed.
            rc = (cq, rc_pair(ctx, pd, cq, gid_index, ACCESS), MR(pd, length, ACCESS))
            if out["uid"] != 0:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
                out["memlock"] = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
            yield pd, rc, out


def register(make, run):
    """One registration, then the RDMA through it: a dict of what happened."""
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


def rdma(rc, rkey, raddr, view, at, length, seed, limit_s, cpu=contextlib.nullcontext):
    """WRITE a pattern to (rkey, raddr) and check it in `view` at `at`; then
    READ back what the CPU puts there. `cpu()` brackets each CPU access
    (a dma-buf's begin/end_cpu_access)."""
    cq, (a, _), host = rc
    pattern = bytes((i * seed + 5) & 0xFF for i in range(length))
    host.write(pattern, length)
    with cpu():
        view[at:at + length] = bytes(length)  # not what an earlier run left there
    wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(host.buf, length, host.lkey)])
    wr.set_wr_rdma(rkey, raddr)
    a.post_send(wr)
    poll(cq, limit_s=limit_s)
    back = bytes((i * (seed + 2) + 11) & 0xFF for i in range(length))
    with cpu():
        wrote = view[at:at + length] == pattern
        view[at:at + length] = back
    wr = SendWR(opcode=e.IBV_WR_RDMA_READ, num_sge=1, sg=[SGE(host.buf, length, host.lkey)])
    wr.set_wr_rdma(rkey, raddr)
    a.post_send(wr)
    poll(cq, limit_s=limit_s)
    return {"write": wrote, "read": host.read(length, 0) == back}
