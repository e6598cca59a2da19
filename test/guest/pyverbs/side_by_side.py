#!/usr/bin/python3
# rdma-core's pyverbs doing what test/guest/rdma-pyverbs.test.ts does with
# the addon, on the same device in the same guest: atomics on an RC pair,
# two RC QPs sharing an SRQ, a UD SEND through an address handle. Prints one
# JSON object of the results; the test compares them with the addon's.
#
#   side_by_side.py DEVICE GID_INDEX
import json
import sys

import pyverbs.enums as e
from pyverbs.addr import AH, AHAttr, GlobalRoute
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.srq import SRQ, SrqAttr, SrqInitAttr
from pyverbs.wr import SGE, RecvWR, SendWR
from rc import poll, rc_pair

DEV, GID_INDEX = sys.argv[1], int(sys.argv[2])
PORT = 1
QKEY = 0x11111111
ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ | e.IBV_ACCESS_REMOTE_ATOMIC


def data(n):
    """The bytes both sides send: (i * 7 + 3) & 0xff."""
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def atomics(ctx, pd, cq):
    a, _ = rc_pair(ctx, pd, cq, GID_INDEX, ACCESS)
    target = MR(pd, 8, ACCESS)
    target.write((0x1122334455667788).to_bytes(8, sys.byteorder), 8)
    local = MR(pd, 8, e.IBV_ACCESS_LOCAL_WRITE)
    out = []
    for opcode, compare_add, swap in ((e.IBV_WR_ATOMIC_FETCH_AND_ADD, 5, 0), (e.IBV_WR_ATOMIC_CMP_AND_SWP, 0x112233445566778D, 0xDEADBEEF)):
        wr = SendWR(opcode=opcode, num_sge=1, sg=[SGE(local.buf, 8, local.lkey)], send_flags=e.IBV_SEND_SIGNALED)
        wr.set_wr_atomic(rkey=target.rkey, addr=target.buf, compare_add=compare_add, swap=swap)
        a.post_send(wr)
        poll(cq)
        out.append(hex(int.from_bytes(local.read(8, 0), sys.byteorder)))
    out.append(hex(int.from_bytes(target.read(8, 0), sys.byteorder)))
    return out


def srq_shared(ctx, pd, cq):
    srq = SRQ(pd, SrqInitAttr(SrqAttr(max_wr=16, max_sge=1)))
    s1, c1 = rc_pair(ctx, pd, cq, GID_INDEX, ACCESS, srq=srq)
    s2, c2 = rc_pair(ctx, pd, cq, GID_INDEX, ACCESS, srq=srq)
    dst = MR(pd, 2048, e.IBV_ACCESS_LOCAL_WRITE)
    src = MR(pd, 256, e.IBV_ACCESS_LOCAL_WRITE)
    src.write(data(256), 256)
    for i in range(2):
        srq.post_recv(RecvWR(wr_id=100 + i, num_sge=1, sg=[SGE(dst.buf + i * 1024, 1024, dst.lkey)]))
    for client, n in ((c1, 100), (c2, 200)):
        client.post_send(SendWR(opcode=e.IBV_WR_SEND, num_sge=1, sg=[SGE(src.buf, n, src.lkey)], send_flags=e.IBV_SEND_SIGNALED))
    wcs = poll(cq, 4)  # two sends, two receives
    by_qp = {wc.qp_num: wc.byte_len for wc in wcs if wc.opcode == e.IBV_WC_RECV}
    return {"s1": by_qp.get(s1.qp_num), "s2": by_qp.get(s2.qp_num)}


def ud(ctx, pd, cq):
    cap = QPCap(max_send_wr=4, max_recv_wr=4, max_send_sge=1, max_recv_sge=1)
    init = QPInitAttr(qp_type=e.IBV_QPT_UD, scq=cq, rcq=cq, cap=cap, sq_sig_all=1)
    # As rdma-core's tests/base.py UDResources: a QPAttr takes a UD QP to RTS.
    attr = QPAttr(port_num=PORT)
    attr.qkey = QKEY
    attr.pkey_index = 0
    u1 = QP(pd, init, attr)
    u2 = QP(pd, init, attr)
    src = MR(pd, 64, e.IBV_ACCESS_LOCAL_WRITE)
    src.write(data(64), 64)
    dst = MR(pd, 40 + 64, e.IBV_ACCESS_LOCAL_WRITE)
    u2.post_recv(RecvWR(wr_id=7, num_sge=1, sg=[SGE(dst.buf, 40 + 64, dst.lkey)]))
    gid = ctx.query_gid(PORT, GID_INDEX)
    ah = AH(pd, attr=AHAttr(port_num=PORT, is_global=1, gr=GlobalRoute(dgid=gid, sgid_index=GID_INDEX), dlid=0))
    wr = SendWR(opcode=e.IBV_WR_SEND, num_sge=1, sg=[SGE(src.buf, 64, src.lkey)], send_flags=e.IBV_SEND_SIGNALED)
    wr.set_wr_ud(ah, u2.qp_num, QKEY)
    u1.post_send(wr)
    wcs = poll(cq, 2)
    recv = [wc for wc in wcs if wc.opcode == e.IBV_WC_RECV][0]
    return {"byteLen": recv.byte_len, "srcIsSender": recv.src_qp == u1.qp_num, "payload": dst.read(64, 40).hex()}


def main():
    out = {}
    with Context(name=DEV) as ctx:
        with PD(ctx) as pd:
            for name, f in (("atomics", atomics), ("srq", srq_shared), ("ud", ud)):
                cq = CQ(ctx, 32)
                try:
                    out[name] = f(ctx, pd, cq)
                except Exception as x:  # each part on its own: one failing does not hide the others
                    out[name] = {"error": f"{type(x).__name__}: {x}"}
    print(json.dumps(out))


main()
