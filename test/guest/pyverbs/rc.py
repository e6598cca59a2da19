# Shared by the pyverbs scripts: completions with a deadline, and an RC pair
# connected to itself through the device (the addon's loopbackPair).
import time

import pyverbs.enums as e
from pyverbs.addr import AHAttr, GlobalRoute
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr

PORT = 1


def poll(cq, n=1, limit_s=5):
    """n successful completions, or an exception (a time limit: never a hang)."""
    got = []
    end = time.monotonic() + limit_s
    while len(got) < n:
        npolled, wcs = cq.poll(num_entries=n - len(got))
        for wc in wcs[:npolled]:
            if wc.status != e.IBV_WC_SUCCESS:
                raise RuntimeError(f"completion status {wc.status} (wr_id {wc.wr_id})")
            got.append(wc)
        if time.monotonic() > end:
            raise TimeoutError(f"{len(got)} of {n} completions in {limit_s} s")
    return got


def rc_pair(ctx, pd, cq, gid_index, access, srq=None):
    """Two RC QPs connected to each other through the device (the addon's loopbackPair)."""
    cap = QPCap(max_send_wr=16, max_recv_wr=16, max_send_sge=1, max_recv_sge=1)
    qps = [QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, srq=srq if i == 0 else None, cap=cap, sq_sig_all=1)) for i in range(2)]
    gid = ctx.query_gid(PORT, gid_index)
    for me, peer in ((qps[0], qps[1]), (qps[1], qps[0])):
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = access
        attr.path_mtu = e.IBV_MTU_1024
        attr.dest_qp_num = peer.qp_num
        attr.rq_psn = 0
        attr.sq_psn = 0
        attr.max_rd_atomic = 1
        attr.max_dest_rd_atomic = 1
        attr.min_rnr_timer = 12
        attr.timeout = 14
        attr.retry_cnt = 7
        attr.rnr_retry = 7
        attr.ah_attr = AHAttr(port_num=PORT, is_global=1, gr=GlobalRoute(dgid=gid, sgid_index=gid_index), dlid=0)
        me.to_rts(attr)
    return qps
