// Nvme against the guest's QEMU controllers: identify, the P2P data path
// byte for byte (host memory -> nvme0n1 -> nvme1's CMB -> nvme0n1 -> host
// memory) with O_DIRECT read/write and with passthrough commands, the
// topology's verdict when the controllers cannot reach each other, the
// in-flight cap, and bad input. I/O stays in [128 MiB, 160 MiB) of nvme0n1,
// away from the ranges other guest files use at the same time. Runs on the
// default engine (io_uring where the kernel has it); with
// P2PDMA_NVME_ENGINE=threadpool, the same expectations on the thread pool.
import t from 'tap';
import * as crypto from 'node:crypto';

import { Nvme, nvmeOpcodes, P2pMem, type P2pBuffer } from '../../lib';
import { EXPECTED_MAP_TYPE } from '../../harness/vm/qemu-args';
import { alignedBuffer, guest, linuxMajor, nvmeControllers, P2P_REFUSAL, topology } from './helpers';

const MiB = 1 << 20;
const BASE = 128 * MiB;
const LEN = MiB;
const LBA = 512;

function pattern(seed: number, length = LEN): Buffer {
  const b = alignedBuffer(length);
  for (let i = 0; i < length; i++) b[i] = (i * 7 + (i >> 12) + seed) & 0xff;
  return b;
}

/** Where the P2P read lands: the peer's CMB where the topology allows it, else nvme0's own. */
const peerReachable = topology !== 'none';

t.test('identify(): model, serial, LBA size, capacity and the CMB from CMBSZ/CMBLOC', guest, async (t) => {
  const [a] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  t.equal(ns.kind, 'namespace');
  t.equal(ns.controller, a.name);
  t.equal(ns.pci, a.bdf);
  t.equal(ns.nsid, 1);
  t.equal(ns.logicalBlockSize, LBA);
  t.equal(ns.size, 256n * BigInt(MiB), 'the harness makes 256 MiB namespaces');
  const id = await ns.identify();
  t.equal(id.controller.model, 'QEMU NVMe Ctrl');
  t.equal(id.controller.serial, a.serial);
  t.equal(id.controller.vendorId, 0x1b36);
  t.ok(id.controller.namespaces >= 1);
  t.match(id.controller.version, /^\d+\.\d+\.\d+$/);
  t.equal(id.namespace?.lbaSize, LBA);
  t.equal(id.namespace?.bytes, ns.size, 'NSZE x LBA size is the block device size');
  t.equal(id.controller.cmb?.size, 64 * MiB, 'CMBSZ: 64 MiB');
  t.match(id.controller.cmb?.flags, { rds: true, wds: true }, 'read and write data in the CMB');
  t.same(ns.identifySync(), id, 'identifySync() reads the same');
  using ctrl = Nvme.open(`/dev/${a.name}`);
  t.equal(ctrl.kind, 'controller');
  const cid = await ctrl.identify();
  t.equal(cid.namespace, undefined, 'a controller handle identifies the controller only');
  t.equal(cid.controller.serial, a.serial);
});

t.test('P2P data path with O_DIRECT read/write, byte for byte', guest, async (t) => {
  const [a, b] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  const data = pattern(1);
  t.equal(await ns.write(data, BASE), LEN, 'pattern written from host memory');
  using cmb = P2pMem.allocate(peerReachable ? b.bdf : a.bdf, LEN);
  new Uint8Array(cmb.buffer).fill(0);
  t.equal(await ns.read(cmb, BASE), LEN, `read into ${peerReachable ? "nvme1's" : "nvme0's own"} CMB`);
  t.ok(Buffer.from(cmb.buffer).equals(data), 'the CMB holds the pattern (checked through the mapping)');
  t.equal(await ns.write(cmb, BASE + 2 * LEN), LEN, 'written from the CMB to another LBA range');
  const back = alignedBuffer(LEN);
  t.equal(await ns.read(back, BASE + 2 * LEN), LEN, 'read back into host memory');
  t.ok(back.equals(data), 'bytes match');
  t.equal(ns.readSync(back.fill(0), BASE + 2 * LEN), LEN, 'readSync too');
  t.ok(back.equals(data));
});

t.test('P2P data path with passthrough read/write commands, byte for byte', guest, async (t) => {
  const [a, b] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  const data = pattern(2);
  // One command moves at most maxTransfer bytes (QEMU's MDTS: 512 KiB).
  // Into the controller's own CMB (the none topology) on 7.x, one page per
  // command: 7.x sends user passthrough commands with SGLs, and QEMU 7.2
  // takes a CMB data block behind a descriptor list in host memory as
  // Invalid Use of Controller Memory Buffer; a one-page command carries its
  // data block in the command itself. Stock 7.3 does the same.
  const step = !peerReachable && linuxMajor >= 7 ? 4096 : Math.min(ns.maxTransfer, 256 * 1024);
  t.ok(step > 0, `maxTransfer ${ns.maxTransfer}`);
  const rw = async (opcode: number, buf: Buffer | P2pBuffer, offset: number) => {
    for (let at = 0; at < LEN; at += step) {
      const data = buf instanceof Buffer ? buf.subarray(at, at + step) : new Uint8Array(buf.buffer, at, step);
      await ns.passthru({ opcode, data, cdw10: (offset + at) / LBA, cdw11: 0, cdw12: step / LBA - 1 });
    }
  };
  await rw(nvmeOpcodes.WRITE, data, BASE + 4 * LEN);
  using cmb = P2pMem.allocate(peerReachable ? b.bdf : a.bdf, LEN);
  new Uint8Array(cmb.buffer).fill(0);
  await rw(nvmeOpcodes.READ, cmb, BASE + 4 * LEN);
  t.ok(Buffer.from(cmb.buffer).equals(data), 'NVMe Read into the CMB');
  await rw(nvmeOpcodes.WRITE, cmb, BASE + 6 * LEN);
  const back = alignedBuffer(LEN);
  await rw(nvmeOpcodes.READ, back, BASE + 6 * LEN);
  t.ok(back.equals(data), 'NVMe Write from the CMB, read back into host memory');
  const sync = alignedBuffer(step);
  ns.passthruSync({ opcode: nvmeOpcodes.READ, data: sync, cdw10: (BASE + 6 * LEN) / LBA, cdw12: step / LBA - 1 });
  t.ok(sync.equals(data.subarray(0, step)), 'passthruSync too');
  await t.rejects(ns.passthru({ opcode: nvmeOpcodes.READ, data: alignedBuffer(ns.maxTransfer + 4096) }), { code: 'ERR_OUT_OF_RANGE', message: /maximum transfer/ }, 'more than one command can carry is refused up front');
});

t.test('copyTo(): namespace to namespace through a CMB (peer to peer) or host memory, one promise; the thread pool the same', guest, async (t) => {
  const [a, b] = nvmeControllers();
  using src = Nvme.open(a.namespace);
  // Through the destination's CMB where the topology lets nvme0 reach it;
  // on none, nvme0 to itself through its own CMB.
  using dst = Nvme.open(peerReachable ? b.namespace : a.namespace);
  const data = pattern(7);
  t.equal(await src.write(data, BASE + 10 * LEN), LEN);
  const check = async (at: number, what: string) => {
    const back = alignedBuffer(LEN);
    t.equal(await dst.read(back, at), LEN);
    t.ok(back.equals(data), what);
  };
  using cmb = P2pMem.allocate(peerReachable ? b.bdf : a.bdf, 4 * 65536);
  t.equal(await src.copyTo(dst, { from: BASE + 10 * LEN, to: BASE + 12 * LEN, length: LEN, via: cmb }), LEN, 'the whole length, 64 KiB x 4 in flight');
  await check(BASE + 12 * LEN, `landed through ${peerReachable ? "nvme1's" : "nvme0's own"} CMB`);
  const host = alignedBuffer(2 * 262144);
  t.equal(await src.copyTo(dst, { from: BASE + 10 * LEN, to: BASE + 13 * LEN, length: LEN, via: host, chunk: 262144, depth: 2 }), LEN);
  await check(BASE + 13 * LEN, 'landed through host memory, 256 KiB x 2');
  const engine = Nvme.engine;
  Nvme.engine = 'threadpool';
  try {
    t.equal(await src.copyTo(dst, { from: BASE + 10 * LEN, to: BASE + 14 * LEN, length: LEN, via: cmb, depth: 3 }), LEN);
  } finally {
    Nvme.engine = engine;
  }
  await check(BASE + 14 * LEN, 'the thread pool copies the same');
  const opts = { from: BASE + 10 * LEN, to: BASE + 15 * LEN, length: LEN, via: cmb };
  await t.rejects(src.copyTo(dst, { ...opts, from: BASE + 1 }), { code: 'ERR_OUT_OF_RANGE', message: /logical block size/ });
  await t.rejects(src.copyTo(dst, { ...opts, chunk: 1000 }), { code: 'ERR_OUT_OF_RANGE', message: /options.chunk/ });
  await t.rejects(src.copyTo(dst, { ...opts, depth: 5 }), { code: 'ERR_OUT_OF_RANGE', message: /buffer's size/ }, 'via holds fewer than depth chunks');
  await t.rejects(src.copyTo(dst, { ...opts, to: 256 * MiB - 4096 }), { code: 'ERR_OUT_OF_RANGE', message: /end of namespace/ });
  await t.rejects(src.copyTo({} as never, opts), { code: 'ERR_INVALID_ARG_TYPE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(src.copyTo(dst, { ...opts, signal: ac.signal }), { name: 'AbortError' });
});

t.test(`${topology}: nvme0 DMAing into nvme1's CMB is ${EXPECTED_MAP_TYPE[topology]}`, guest, async (t) => {
  const [a, b] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  await ns.write(pattern(3), BASE + 8 * LEN);
  using cmb = P2pMem.allocate(b.bdf, LEN);
  if (topology !== 'none') {
    t.equal(await ns.read(cmb, BASE + 8 * LEN), LEN);
    t.ok(Buffer.from(cmb.buffer).equals(pattern(3)), 'data arrives peer to peer');
    return;
  }
  const why = new RegExp(
    `^${P2P_REFUSAL.code}: ${P2P_REFUSAL.message}, read '${a.namespace}': ${a.name} \\(${a.bdf}\\) and the p2pmem provider ${b.bdf} cannot reach each other peer to peer .*NOT_SUPPORTED: .*no common upstream bridge.*not in the kernel's P2PDMA whitelist`,
  );
  await t.rejects(ns.read(cmb, BASE + 8 * LEN), { code: P2P_REFUSAL.code, errno: P2P_REFUSAL.errno, syscall: 'read', path: a.namespace, message: why });
  t.throws(() => ns.readSync(cmb, BASE + 8 * LEN), { code: P2P_REFUSAL.code, message: why }, 'readSync says the same');
  await t.rejects(
    ns.passthru({ opcode: nvmeOpcodes.READ, data: cmb, dataLength: 64 * 1024, cdw10: (BASE + 8 * LEN) / LBA, cdw12: (64 * 1024) / LBA - 1 }),
    { code: P2P_REFUSAL.code, request: /^NVME_(IOCTL_IO64_CMD|URING_CMD_IO)$/, message: /cannot reach each other peer to peer/ },
    'so does a passthrough read',
  );
});

t.test('bad input is refused with clear errors before any I/O', guest, async (t) => {
  const [a, b] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  const buf = alignedBuffer(8192);
  const cmb = P2pMem.allocate(a.bdf, 8192);
  cmb.close();
  await t.rejects(ns.read(cmb, BASE), { code: 'ERR_P2PDMA_CLOSED', message: 'P2pBuffer is closed' }, 'a closed P2pBuffer');
  await t.rejects(ns.read(buf, BASE + 100), { code: 'ERR_OUT_OF_RANGE', message: /multiple of the logical block size \(512\)/ }, 'misaligned offset');
  await t.rejects(ns.read(buf, BASE, 1000), { code: 'ERR_OUT_OF_RANGE', message: /multiple of the logical block size/ }, 'misaligned length');
  await t.rejects(ns.read(buf, BASE, 16384), { code: 'ERR_OUT_OF_RANGE', message: /the buffer's size/ }, 'longer than the buffer');
  await t.rejects(ns.read(buf.subarray(1, 513), BASE), { code: 'ERR_INVALID_ARG_VALUE', message: /DMA alignment/ }, 'misaligned memory');
  await t.rejects(ns.read(buf, ns.size - 4096n), { code: 'ERR_OUT_OF_RANGE', message: /end of namespace/ }, 'beyond the end of the namespace');
  await t.rejects(ns.read('x' as never, BASE), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(ns.read(buf, -512), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => ns.passthruSync({ opcode: nvmeOpcodes.READ, nsid: 2, data: buf, cdw12: 0 }), { code: 'ERR_INVALID_ARG_VALUE', message: /this namespace's id \(1/ }, 'an I/O command for another namespace through this one');
  await t.rejects(ns.passthru({ opcode: nvmeOpcodes.READ, data: buf, direction: 'write' }), { code: 'ERR_INVALID_ARG_VALUE', message: /must agree with the opcode/ });
  await t.rejects(ns.passthru({ opcode: nvmeOpcodes.READ }), { code: 'ERR_INVALID_ARG_VALUE', message: /data.*required/ });
  using ctrl = Nvme.open(`/dev/${a.name}`);
  await t.rejects(ctrl.read(buf, 0), { code: 'ERR_P2PDMA_NVME_NOT_NAMESPACE' }, 'read on a controller');
  await t.rejects(
    ctrl.passthru({ admin: true, opcode: nvmeOpcodes.IDENTIFY, nsid: 0x7777, cdw10: 0, data: Buffer.alloc(4096) }),
    { code: 'ERR_P2PDMA_NVME_STATUS', statusName: 'INVALID_NS', message: /Invalid Namespace or Format/ },
    `a namespace ${a.name} does not have`,
  );
  using other = Nvme.open(b.namespace);
  t.equal(other.nsid, ns.nsid, 'the other controller numbers its namespace 1 as well');
  t.not(other.pci, ns.pci, 'on another PCI function');
});

t.test('a bad opcode comes back as a named NVMe status', guest, async (t) => {
  const [a] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  await t.rejects(ns.passthru({ opcode: 0x7c }), {
    code: 'ERR_P2PDMA_NVME_STATUS',
    statusCodeType: 0,
    statusCode: 1,
    statusName: 'INVALID_OPCODE',
    dnr: true,
    message: /NVMe I\/O command 0x7c failed on \/dev\/nvme\d+n1: Invalid Command Opcode \(INVALID_OPCODE, status 0x4001: SCT 0, SC 0x01, do not retry\)/,
  });
  t.throws(() => ns.passthruSync({ admin: true, opcode: 0xfc }), { code: 'ERR_P2PDMA_NVME_STATUS', statusName: 'INVALID_OPCODE' }, 'admin too');
  await t.rejects(ns.passthru({ opcode: 0x100 }), { code: 'ERR_OUT_OF_RANGE' });
});

t.test('many reads in flight wait for pool slots in JS, and the pool stays free for others', guest, async (t) => {
  // The thread-pool engine's cap (the io_uring engine has none: test/guest/nvme-uring.test.ts).
  const engine = Nvme.engine;
  Nvme.engine = 'threadpool';
  t.teardown(() => {
    Nvme.engine = engine;
  });
  const [a] = nvmeControllers();
  using ns = Nvme.open(a.namespace, { readOnly: true });
  const max = Nvme.maxInFlight;
  t.equal(max, Math.max(1, Math.floor((Number(process.env.UV_THREADPOOL_SIZE) || 4) / 2)), 'half the pool threads');
  // Warm up the crypto job first: its first run loads OpenSSL state, slow under TCG.
  crypto.pbkdf2Sync('p', 's', 1, 32, 'sha256');
  const bufs = Array.from({ length: 32 }, () => alignedBuffer(512 * 1024));
  let peak = 0;
  let othersDoneWhileQueued = false;
  const reads = bufs.map((b, i) =>
    ns.read(b, BASE + i * b.length).then((n) => {
      peak = Math.max(peak, Nvme.queue.inFlight);
      return n;
    }),
  );
  t.equal(Nvme.queue.inFlight, max, 'only maxInFlight handed to the pool');
  t.equal(Nvme.queue.waiting, bufs.length - max, 'the rest queued in JS');
  // Pool work (crypto, fs, dns.lookup) still gets a thread meanwhile.
  await new Promise<void>((resolve, reject) =>
    crypto.pbkdf2('p', 's', 1, 32, 'sha256', (e) => {
      if (e) reject(e);
      othersDoneWhileQueued = Nvme.queue.waiting > 0 || Nvme.queue.inFlight > 0;
      resolve();
    }),
  );
  t.same(await Promise.all(reads), bufs.map((b) => b.length));
  t.ok(othersDoneWhileQueued, 'a crypto job on the pool finished while NVMe reads were still queued');
  t.ok(peak <= max, `never more than ${max} in the pool`);
  const ac = new AbortController();
  const queued = Array.from({ length: max + 2 }, (_, i) => ns.read(bufs[i], BASE, undefined, { signal: ac.signal }));
  ac.abort();
  t.equal(Nvme.queue.inFlight, max, 'the started reads are on the pool');
  const settled = await Promise.allSettled(queued);
  // lib/core/abort.ts: every promise rejects at once; the reads already on the
  // pool run to their end, keeping their slots until then.
  t.same(settled.map((s) => s.status === 'rejected' && (s.reason as { name: string }).name), Array(max + 2).fill('AbortError'), 'queued and started reads reject with AbortError');
  t.equal(Nvme.queue.waiting, 0, 'the queued ones never started');
  for (let i = 0; i < 200 && Nvme.queue.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(Nvme.queue.inFlight, 0, 'the started ones gave their pool slots back once they ended');
});

t.test('close() during I/O waits for it; the handle refuses new work', guest, async (t) => {
  const [a] = nvmeControllers();
  const ns = Nvme.open(a.namespace);
  const buf = alignedBuffer(LEN);
  const p = ns.read(buf, BASE);
  ns.close();
  t.equal(await p, LEN, 'the read in flight completes on its fd');
  await t.rejects(ns.read(buf, BASE), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => ns.readSync(buf, BASE), { code: 'ERR_P2PDMA_CLOSED' });
  await t.rejects(ns.identify(), { code: 'ERR_P2PDMA_CLOSED' });
});
