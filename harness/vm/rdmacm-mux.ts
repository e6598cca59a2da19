/**
 * A stand-in for QEMU's rdmacm-mux (contrib/rdmacm-mux, not shipped by
 * Debian), enough for pvrdma's verbs.
 *
 * QEMU 7.2's pvrdma registers every GID the guest driver adds with the mux
 * and fails the guest's CREATE_BIND command when nobody answers ("could not
 * create binding, error: -14", then "GID add failed"), so without a mux the
 * port has no usable GID and no RC QP can be brought up. The real mux also
 * relays CM MADs between the guest and the backend's umad device; this one
 * accepts GID (un)registration and refuses MADs, so rdma_cm does not work on
 * pvrdma here and fails at once instead of timing out.
 *
 * QEMU connects as a client to this unix socket at start-up, sends one
 * fixed-size RdmaCmMuxMsg per request and blocks until the answer: the same
 * message with msg_type RESP and an err_code.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';

/**
 * sizeof(RdmaCmMuxMsg) on x86_64, QEMU 7.2's contrib/rdmacm-mux/rdmacm-mux.h:
 * the header (msg_type, op_code, union ibv_gid sgid, err_code: 28 bytes)
 * is padded to 32 because ibv_gid holds two 64-bit fields; then umad_len
 * (4) and struct ib_user_mad (64, libibumad's layout) with 256 bytes of MAD:
 * 356, padded to 360. QEMU reads exactly this much per answer while holding
 * its big lock, so an answer 8 bytes short (352, as first written here)
 * froze the second-level guest at its first GID registration.
 */
export const RDMACM_MUX_MSG_SIZE = 360;

const MSG_TYPE_RESP = 1;
export const OP_REG = 0;
export const OP_UNREG = 1;
export const OP_MAD = 2;
const ERR_OK = 0;
const ERR_EINVAL = 1;

const OFF_MSG_TYPE = 0;
const OFF_OP_CODE = 4;
const OFF_ERR_CODE = 24;

/** The answer to one request: the request echoed back as a response. */
export function muxAnswer(request: Buffer): Buffer {
  const answer = Buffer.from(request);
  const op = request.readUInt32LE(OFF_OP_CODE);
  answer.writeUInt32LE(MSG_TYPE_RESP, OFF_MSG_TYPE);
  answer.writeUInt32LE(op === OP_REG || op === OP_UNREG ? ERR_OK : ERR_EINVAL, OFF_ERR_CODE);
  return answer;
}

export interface MuxServer {
  /** Requests seen, by op code name, for the run's log. */
  counts: Record<'reg' | 'unreg' | 'mad' | 'other', number>;
  close(): Promise<void>;
}

/** Serves the mux protocol on `socketPath` until closed. */
export async function startRdmacmMux(socketPath: string): Promise<MuxServer> {
  fs.rmSync(socketPath, { force: true });
  const counts = { reg: 0, unreg: 0, mad: 0, other: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= RDMACM_MUX_MSG_SIZE) {
        const request = pending.subarray(0, RDMACM_MUX_MSG_SIZE);
        pending = pending.subarray(RDMACM_MUX_MSG_SIZE);
        const op = request.readUInt32LE(OFF_OP_CODE);
        counts[op === OP_REG ? 'reg' : op === OP_UNREG ? 'unreg' : op === OP_MAD ? 'mad' : 'other']++;
        socket.write(muxAnswer(request));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return {
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
