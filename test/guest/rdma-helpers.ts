// Shared by the RDMA guest tests: a pattern generator and a loopback rig
// (context, PD, a connected QP pair) closed when the test ends, on rxe0, or
// on QEMU's pvrdma in the nested pvrdma lane (make test-pvrdma).
import type { Test } from 'tap';
import * as fs from 'node:fs';
import { alignedBuffer, guest } from './helpers';
import { Rdma, type MemoryRegion, type ProtectionDomain, type QueuePair, type RdmaContext } from '../../lib';

/** The pvrdma lane: no rxe, and rdma_cm's MADs have no relay there (harness/vm/rdmacm-mux.ts). */
export const onPvrdma = process.env.P2PDMA_RDMA === 'pvrdma';
/** Test options for what only the pvrdma lane checks (test/guest/pvrdma/). */
export const pvrdmaLane: { skip: string | false } = guest.skip ? guest : { skip: onPvrdma ? false : 'runs only in the pvrdma lane (make test-pvrdma)' };
export const DEV = onPvrdma ? 'vmw_pvrdma0' : 'rxe0';
export const ADDR = '10.0.2.15';

export function pattern(n: number, seed: number): Buffer {
  return fillPattern(Buffer.alloc(n), seed);
}

function fillPattern(b: Buffer, seed: number): Buffer {
  let s = seed >>> 0;
  const n = b.length;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    b[i] = s >>> 16;
  }
  return b;
}

/**
 * Zeroed host memory to register: memory JS cannot free under the NIC (an
 * MR refuses a plain ArrayBuffer). QEMU 7.2's pvrdma refuses most memory
 * that does not start on a page boundary (test/guest/pvrdma/device.test.ts),
 * so there it is a Mapping's page-aligned ArrayBuffer; on rxe, a
 * SharedArrayBuffer (unaligned).
 */
export function hostMemory(n: number): ArrayBuffer | SharedArrayBuffer {
  return onPvrdma ? (alignedBuffer(n).buffer as ArrayBuffer) : new SharedArrayBuffer(n);
}

/** `Buffer.from(hostMemory(n))`: a Buffer an MR takes. */
export function hostBuffer(n: number, fill = 0): Buffer {
  return Buffer.from(hostMemory(n)).fill(fill);
}

/** `pattern(n, seed)` in `hostBuffer(n)`. */
export function hostPattern(n: number, seed: number): Buffer {
  return fillPattern(hostBuffer(n), seed);
}

export interface Setup {
  ctx: RdmaContext;
  pd: ProtectionDomain;
  a: QueuePair;
  b: QueuePair;
  mr(buf: ArrayBufferView | ArrayBuffer | SharedArrayBuffer, access?: Parameters<ProtectionDomain['registerMemorySync']>[1]): MemoryRegion;
  /** `hostMemory()` as a Buffer, filled with `fill`. */
  buffer(n: number, fill?: number): Buffer;
  /** `hostMemory()` holding `pattern(n, seed)`. */
  pattern(n: number, seed: number): Buffer;
}

/** A context, a PD and a connected loopback pair, closed when the test ends. */
export function setup(t: Test, cap?: { maxSendWr?: number; maxRecvWr?: number; maxInlineData?: number; maxSendSge?: number; maxRecvSge?: number }, device = DEV): Setup {
  const ctx = Rdma.open(device);
  const pd = ctx.allocPd();
  // QEMU's pvrdma raises no completion interrupt: poll its CQ.
  const [a, b] = Rdma.loopbackPair(pd, { cap, busyPoll: onPvrdma && device === DEV });
  const mrs: MemoryRegion[] = [];
  t.teardown(() => {
    a.close();
    b.close();
    for (const m of mrs) m.close();
    pd.close();
    ctx.close();
  });
  return {
    ctx,
    pd,
    a,
    b,
    mr(buf, access = ['local-write', 'remote-write', 'remote-read']) {
      const m = pd.registerMemorySync(buf, { access });
      mrs.push(m);
      return m;
    },
    buffer: hostBuffer,
    pattern: hostPattern,
  };
}


/** rxe0's RNR NAKs sent so far: v2's responder answered a revoked MR with them (issue 26). */
export function rnrNaksSent(): number {
  return Number(fs.readFileSync('/sys/class/infiniband/rxe0/ports/1/hw_counters/send_rnr_err', 'utf8'));
}
