#!/usr/bin/env node
// NVMe over Fabrics between two nodes (p2pdma bench --nodes 2 --suites nvmeof):
// node B exports its second NVMe namespace through nvmet-rdma on rxe0, once
// with the namespace's p2pmem off and once pointing at B's CMB; node A
// connects (NvmeOf.connect) and writes, then reads, BYTES through the
// addon's io path (Nvme.write/read on the remote namespace, BLOCK bytes per
// I/O, QD in flight, from a shared memfd mapping: zero copy on A). A
// records the throughput; B records the target's CPU time per GB moved
// (/proc/stat, every CPU, all states but idle and iowait: nvmet's work runs
// in kernel threads and softirqs) and whether nvmet said it used p2pmem.
// fio is not in the image; the addon's io path stands in for it. B writes
// the range once on its own drive first (see prefill()).
// Env: BYTES, BLOCK, QD.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { memfd, mmap, Nvme, NvmeOf } = require(process.env.P2PDMA_DIST ?? '../dist');
const { record, human } = require('./lib/results');
const { Control, role, NODE_ADDR, PEER_ADDR } = require('./lib/peer');

const CONTROL_PORT = 7402;
const BYTES = Number(process.env.BYTES ?? 64 << 20);
const BLOCK = Number(process.env.BLOCK ?? 128 << 10);
const QD = Number(process.env.QD ?? 8);
const POSITION = 64 << 20;
const NQN = 'nqn.2026-12.io.p2pdma:bench';

/** Busy jiffies of all CPUs (USER_HZ). */
function busyJiffies() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return total - f[3] - f[4];
}

/** The second NVMe controller with a CMB: its namespace and PCI address. */
function backingDrive() {
  const ctrls = fs.readdirSync('/sys/class/nvme').sort().flatMap((name) => {
    const dev = fs.realpathSync(path.join('/sys/class/nvme', name, 'device'));
    return fs.existsSync(path.join(dev, 'p2pmem')) ? [{ ns: `/dev/${name}n1`, bdf: path.basename(dev) }] : [];
  });
  if (ctrls.length < 2) throw new Error('node b needs two NVMe controllers with CMBs');
  return ctrls[1];
}

function kmsgTail() {
  try {
    return require('node:child_process').execFileSync('dmesg', ['--notime'], { encoding: 'utf8' }).split('\n');
  } catch {
    return [];
  }
}

/**
 * Writes the measured range once on B's own drive: the first write to a
 * block of QEMU's sparse image allocates it on the host, which would make
 * whichever mode runs first slower.
 */
async function prefill(dev) {
  const chunk = 4 << 20;
  const fd = memfd('nvmeof-prefill');
  fs.ftruncateSync(fd.fd, chunk);
  const m = mmap(fd, chunk);
  fd.close();
  const ns = Nvme.open(dev);
  try {
    for (let at = 0; at < BYTES; at += chunk) await ns.write(m, POSITION + at);
  } finally {
    ns.close();
    m.unmap();
  }
}

async function serve(ctl) {
  const drive = backingDrive();
  await prefill(drive.ns);
  for (const mode of ['off', 'cmb']) {
    const before = kmsgTail().length;
    const tgt = NvmeOf.createTarget({ nqn: NQN, device: drive.ns, transport: 'rdma', address: NODE_ADDR, p2pmem: mode === 'cmb' ? drive.bdf : false });
    try {
      ctl.send({ type: 'target', mode, port: tgt.port });
      for (;;) {
        const m = await ctl.expect('start');
        if (m.op === 'end') break;
        const j0 = busyJiffies();
        ctl.send({ type: 'started' });
        const { bytes } = await ctl.expect('stop');
        const cpuSec = (busyJiffies() - j0) / 100;
        record('nvmeof', `target CPU per GB, ${m.op}`, 's/GB', `p2pmem-${mode}`, cpuSec / (bytes / 1e9), { anchor: mode === 'off', better: 'lower' });
        human(`[b] p2pmem ${mode}, ${m.op}: target CPU ${cpuSec.toFixed(2)} s for ${(bytes / 1e6).toFixed(0)} MB`);
        ctl.send({ type: 'stopped' });
      }
      await ctl.expect('disconnected');
      const said = kmsgTail().slice(before).filter((l) => /nvmet: using p2pmem on/.test(l));
      human(`[b] p2pmem ${mode}: ${said.length ? said.join('; ') : `nvmet staged in host memory (no "using p2pmem" line): ${tgt.p2pmemFor().reason}`}`);
    } finally {
      tgt.close();
    }
  }
}

async function drive(ctl) {
  const buf = (() => {
    const fd = memfd('nvmeof-bench');
    fs.ftruncateSync(fd.fd, BLOCK * QD);
    const m = mmap(fd, BLOCK * QD);
    fd.close();
    return m;
  })();
  new Uint8Array(buf.buffer).fill(0x5a);
  for (let i = 0; i < 2; i++) {
    const { mode, port } = await ctl.expect('target');
    const conn = await NvmeOf.connect({ nqn: NQN, transport: 'rdma', address: PEER_ADDR, port });
    const ns = conn.open();
    try {
      for (const op of ['write', 'read']) {
        ctl.send({ type: 'start', op });
        await ctl.expect('started');
        const blocks = BYTES / BLOCK;
        let next = 0;
        const t0 = process.hrtime.bigint();
        // QD lanes, each with its own BLOCK of the mapping.
        await Promise.all(Array.from({ length: QD }, async (_, lane) => {
          const view = new Uint8Array(buf.buffer, lane * BLOCK, BLOCK);
          while (next < blocks) {
            const at = POSITION + next++ * BLOCK;
            await (op === 'write' ? ns.write(view, at) : ns.read(view, at));
          }
        }));
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        ctl.send({ type: 'stop', bytes: BYTES });
        await ctl.expect('stopped');
        const mbs = BYTES / s / 1e6;
        record('nvmeof', `${op} throughput, ${BLOCK >> 10} KiB QD${QD}`, 'MB/s', `p2pmem-${mode}`, mbs, { anchor: mode === 'off' });
        human(`[a] p2pmem ${mode}, ${op}: ${mbs.toFixed(1)} MB/s`);
      }
      ctl.send({ type: 'start', op: 'end' });
    } finally {
      conn.close();
    }
    ctl.send({ type: 'disconnected' });
  }
  buf.unmap();
}

async function main() {
  const ctl = await Control.open(CONTROL_PORT);
  human(`# NVMe-oF (nvmet-rdma on rxe0) between nodes: node ${role}, ${BYTES >> 20} MiB per op, ${BLOCK >> 10} KiB x QD${QD}`);
  await (role === 'b' ? serve(ctl) : drive(ctl));
  ctl.close();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
