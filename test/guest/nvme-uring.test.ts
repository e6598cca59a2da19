// The io_uring engine against the guest's NVMe (lib/pci/nvme.ts, native/pci/uring.h):
// which engine runs what, the P2P path and passthrough through the ring
// (URING_CMD on /dev/ngXnY) byte for byte against the thread pool, 32 in
// flight, abort before the flush, close with I/O in flight, a worker, the
// fallback when kernel.io_uring_disabled = 2, and the finding on registered
// (fixed) buffers in p2pmem. I/O stays in [224 MiB, 256 MiB) of nvme0n1.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';

import { Nvme, nvmeOpcodes, P2pMem } from '../../lib/index';
import { native } from '../../lib/core/native';
import { alignedBuffer, guest, nvmeControllers, topology } from './helpers';

const MiB = 1 << 20;
const BASE = 224 * MiB;
const LEN = MiB;
const LBA = 512;
const peerReachable = topology !== 'none';
const release = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();

function pattern(seed: number, length = LEN): Buffer {
  const b = alignedBuffer(length);
  for (let i = 0; i < length; i++) b[i] = (i * 13 + (i >> 9) + seed) & 0xff;
  return b;
}

t.test('io_uring runs read/write and I/O commands; admin commands of a namespace stay on the pool', guest, async (t) => {
  const [a] = nvmeControllers();
  t.match(Nvme.engineInfo, { engine: 'io_uring', reason: /io_uring_setup works$/ }, `kernel ${release}`);
  using ns = Nvme.open(a.namespace);
  t.equal(ns.generic, `/dev/${a.name.replace('nvme', 'ng')}n1`, 'the generic char device of the namespace');
  t.same(ns.engines, { io: 'io_uring', passthru: 'io_uring', admin: 'threadpool' });
  using ctrl = Nvme.open(`/dev/${a.name}`);
  t.same(ctrl.engines, { io: undefined, passthru: 'threadpool', admin: 'io_uring' });
  t.equal((await ctrl.identify()).controller.serial, a.serial, 'Identify through NVME_URING_CMD_ADMIN on the controller');
  await t.rejects(ctrl.passthru({ admin: true, opcode: 0xfc }), { code: 'ERR_P2PDMA_NVME_STATUS', statusName: 'INVALID_OPCODE' }, 'a bad admin opcode: a named status from the CQE');
  await t.rejects(ns.passthru({ opcode: 0x7c }), { code: 'ERR_P2PDMA_NVME_STATUS', statusName: 'INVALID_OPCODE', dnr: true }, 'a bad I/O opcode through the generic device');
});

for (const engine of ['io_uring', 'threadpool'] as const) {
  t.test(`${engine}: host -> nvme0n1 -> CMB -> nvme0n1 -> host, by read/write and by passthrough`, guest, async (t) => {
    const before = Nvme.engine;
    Nvme.engine = engine;
    t.teardown(() => {
      Nvme.engine = before;
    });
    const [a, b] = nvmeControllers();
    using ns = Nvme.open(a.namespace);
    t.equal(ns.engines.io, engine);
    const data = pattern(engine === 'io_uring' ? 1 : 2);
    t.equal(await ns.write(data, BASE), LEN);
    using cmb = P2pMem.allocate(peerReachable ? b.bdf : a.bdf, LEN);
    new Uint8Array(cmb.buffer).fill(0);
    t.equal(await ns.read(cmb, BASE), LEN, 'P2P read into the CMB');
    t.ok(Buffer.from(cmb.buffer).equals(data), 'the CMB holds the pattern');
    t.equal(await ns.write(cmb, BASE + 2 * LEN), LEN, 'P2P write from the CMB');
    const back = alignedBuffer(LEN);
    t.equal(await ns.read(back, BASE + 2 * LEN), LEN);
    t.ok(back.equals(data), 'bytes match');
    // Passthrough: CMB -> LBA range 4 by WRITE commands, read back by READ commands into host memory.
    const step = Math.min(ns.maxTransfer, 256 * 1024);
    for (let at = 0; at < LEN; at += step) {
      const lba = (BASE + 4 * LEN + at) / LBA;
      await ns.passthru({ opcode: nvmeOpcodes.WRITE, data: cmb.window(at, step), cdw10: lba, cdw12: step / LBA - 1 });
    }
    const viaCmd = alignedBuffer(LEN);
    await Promise.all(
      Array.from({ length: LEN / step }, (_, i) =>
        ns.passthru({ opcode: nvmeOpcodes.READ, data: viaCmd.subarray(i * step, (i + 1) * step), cdw10: (BASE + 4 * LEN + i * step) / LBA, cdw12: step / LBA - 1 }),
      ),
    );
    t.ok(viaCmd.equals(data), 'passthrough WRITE from the CMB and READ into a staged Buffer');
    await t.rejects(ns.read(back, BASE + 100), { code: 'ERR_OUT_OF_RANGE', message: /multiple of the logical block size/ }, 'bad input: the same errors');
    await t.rejects(ns.read(back, ns.size), { code: 'ERR_OUT_OF_RANGE', message: /end of namespace/ });
  });
}

t.test('io_uring: 32 reads in flight settle, byte for byte, with no pool slot taken', guest, async (t) => {
  const [a] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  const data = pattern(3, 4 * LEN);
  await ns.write(data, BASE + 8 * LEN);
  const CH = 128 * 1024;
  const sab = new Uint8Array(new SharedArrayBuffer(4 * LEN + 4096), 0, 4 * LEN);
  const reads = Array.from({ length: 32 }, (_, i) => ns.read(sab.subarray(i * CH, (i + 1) * CH), BASE + 8 * LEN + i * CH));
  t.same(Nvme.queue, { inFlight: 0, waiting: 32 }, 'queued for the turn, not in JS nor on the pool');
  t.same(await Promise.all(reads), reads.map(() => CH));
  t.ok(Buffer.from(sab.buffer, 0, 4 * LEN).equals(data), 'every chunk in place (SharedArrayBuffer)');
  t.same(Nvme.queue, { inFlight: 0, waiting: 0 });
});

t.test('io_uring: an abort before the flush cancels the write; close() with I/O in flight waits for it', guest, async (t) => {
  const [a] = nvmeControllers();
  const ns = Nvme.open(a.namespace);
  await ns.write(pattern(4), BASE + 12 * LEN);
  const ac = new AbortController();
  const w = ns.write(alignedBuffer(LEN).fill(0xee), BASE + 12 * LEN, undefined, { signal: ac.signal });
  ac.abort();
  await t.rejects(w, { name: 'AbortError' });
  const check = alignedBuffer(LEN);
  await ns.read(check, BASE + 12 * LEN);
  t.ok(check.equals(pattern(4)), 'the aborted write never reached the device');
  await t.rejects(ns.read(check, BASE, undefined, { signal: AbortSignal.abort() }), { name: 'AbortError' }, 'aborted before the call');
  const bufs = Array.from({ length: 8 }, () => alignedBuffer(LEN));
  const ps = bufs.map((b) => ns.read(b, BASE + 12 * LEN));
  ns.close();
  t.same(await Promise.all(ps), bufs.map(() => LEN), 'reads in flight complete on their fd after close()');
  t.ok(bufs.every((b) => b.equals(pattern(4))));
  await t.rejects(ns.read(check, BASE), { code: 'ERR_P2PDMA_CLOSED' });
  await t.rejects(ns.passthru({ opcode: nvmeOpcodes.READ, data: check, cdw12: 0 }), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('io_uring in a worker thread: its own ring; terminated with reads in flight, nothing crashes', guest, async (t) => {
  const [a] = nvmeControllers();
  const lib = path.resolve('dist/index.js');
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { Nvme } = require(${JSON.stringify(lib)});
    const ns = Nvme.open(workerData.dev);
    const b = new Uint8Array(new SharedArrayBuffer(${LEN}));
    ns.read(b, ${BASE + 12 * LEN}).then((n) => {
      parentPort.postMessage({ engine: Nvme.engine, n, first: b[0], last: b[${LEN - 1}] });
      // 16 lanes that never stop: terminate() always finds reads in flight.
      const lane = (m) => ns.read(m, ${BASE}).then(() => lane(m), () => {});
      for (let i = 0; i < 16; i++) lane(new Uint8Array(new SharedArrayBuffer(${LEN})));
      parentPort.postMessage('busy');
    });`;
  const w = new Worker(code, { eval: true, workerData: { dev: a.namespace } });
  const msgs: unknown[] = [];
  await new Promise<void>((resolve) => w.on('message', (m) => (msgs.push(m), m === 'busy' && resolve())));
  const p4 = pattern(4);
  t.same(msgs[0], { engine: 'io_uring', n: LEN, first: p4[0], last: p4[LEN - 1] });
  t.equal(await w.terminate(), 1, 'terminated with 16 reads in flight');
});

t.test('kernel.io_uring_disabled = 2: the thread pool runs, and says why', guest, async (t) => {
  const sysctl = '/proc/sys/kernel/io_uring_disabled';
  if (!fs.existsSync(sysctl)) {
    t.comment(`no ${sysctl} on ${release}`);
    return;
  }
  const old = fs.readFileSync(sysctl, 'utf8').trim();
  const [a] = nvmeControllers();
  fs.writeFileSync(sysctl, '2');
  let r;
  try {
    const code = `const { Nvme } = require(${JSON.stringify(path.resolve('dist/index.js'))});
      const ns = Nvme.open(${JSON.stringify(a.namespace)}); const b = new Uint8Array(new SharedArrayBuffer(4096));
      ns.read(b, ${BASE}).then((n) => console.log(JSON.stringify({ ...Nvme.engineInfo, engines: ns.engines, n })));`;
    r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, P2PDMA_NVME_ENGINE: '' } });
  } finally {
    fs.writeFileSync(sysctl, old);
  }
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), {
    engine: 'threadpool',
    reason: 'EPERM from io_uring_setup (kernel.io_uring_disabled = 2)',
    engines: { io: 'threadpool', passthru: 'threadpool', admin: 'threadpool' },
    n: 4096,
  });
});

// Registered buffers are pinned long term (io_uring/rsrc.c
// io_sqe_buffer_register -> io_pin_pages: pin_user_pages_fast(FOLL_WRITE |
// FOLL_LONGTERM)), without FOLL_PCI_P2PDMA, which gup refuses together with
// FOLL_LONGTERM so that the provider stays unpluggable: p2pmem pages are not
// pinned, and io_pin_pages reports it as EFAULT, as ibv_reg_mr does.
t.test('registered (fixed) buffers: host memory works, a P2pBuffer is refused (EFAULT on 6.12)', guest, async (t) => {
  const [a, b] = nvmeControllers();
  using ns = Nvme.open(a.namespace);
  await ns.write(pattern(5), BASE + 16 * LEN);
  const host = alignedBuffer(LEN);
  t.same(native.nvmeUringFixedProbe(host, ns.fd, BASE + 16 * LEN), { register: 0, read: LEN }, 'host memory: registered, READ_FIXED works');
  t.ok(host.equals(pattern(5)));
  using cmb = P2pMem.allocate(peerReachable ? b.bdf : a.bdf, LEN);
  const r = native.nvmeUringFixedProbe(new Uint8Array(cmb.buffer), ns.fd, BASE + 16 * LEN);
  t.comment(`kernel ${release}: IORING_REGISTER_BUFFERS of p2pmem -> ${JSON.stringify(r)}`);
  if (/^6\.12\./.test(release)) t.same(r, { register: 14, read: undefined }, 'EFAULT: p2pmem cannot be pinned FOLL_LONGTERM');
  else t.ok(r.register !== 0 || r.read === LEN, `${release}: refused, or registered and read`);
  t.equal(await ns.read(cmb, BASE + 16 * LEN), LEN, 'a plain IORING_OP_READ into the same CMB works');
  t.ok(Buffer.from(cmb.buffer).equals(pattern(5)));
});
