#!/usr/bin/env node
// The flagship P2P flow, run inside the test guest by `make demo`:
// NVMe controller A DMAs a pattern out of its own CMB onto its namespace, then
// reads it back straight into controller B's CMB (peer-to-peer), and the
// bytes are checked through a zero-copy mapping of B's CMB. The bounce path
// (read into RAM, copy into the CMB) runs beside it for comparison.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { capabilities, mmap } = require('../dist');

const LENGTH = 4 << 20;
const CHUNK = 1 << 20;

function mapCmb(provider) {
  const fd = fs.openSync(provider.allocate, 'r+');
  const mapping = mmap(fd, LENGTH, { prot: 'rw', flags: 'shared' });
  return { bytes: new Uint8Array(mapping.buffer), close: () => { mapping.unmap(); fs.closeSync(fd); } };
}

function namespaceOf(bdf) {
  const ctrl = fs.readdirSync(`/sys/bus/pci/devices/${bdf}/nvme`)[0];
  return `/dev/${ctrl}n1`;
}

function timed(label, fn) {
  const t0 = process.hrtime.bigint();
  fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`  ${label}: ${(LENGTH / s / 1e6).toFixed(1)} MB/s`);
}

// RDMA into the CMB over rxe0 through the addon's verbs: a memory region on
// a mapping of the CMB (p2pmem/allocate), an RDMA WRITE into it checked
// through the mapping, an RDMA READ back. A stock kernel refuses the MR
// with EFAULT (it cannot pin peer memory); kernel-patches/ maps it through
// p2p_map. Settles after main() returns: its promise keeps the process up.
function rdmaIntoCmb(provider) {
  const { Rdma, Fd } = require('../dist');
  const SIZE = 1 << 20;
  const patched = process.env.P2PDMA_KERNEL !== 'baseline';
  const open = [];
  const fail = (what, err) => {
    console.log(`  ${what}: ${err.message}`);
    if (patched || err.code !== 'EFAULT') process.exitCode = 1;
    else console.log('  (expected on the baseline kernel: `make demo` boots the patched one first)');
  };
  return (async () => {
    const ctx = Rdma.open('rxe0');
    const pd = ctx.allocPd();
    const [a, b] = Rdma.loopbackPair(pd);
    const fd = Fd.open(provider.allocate, 'r+');
    const map = mmap(fd, SIZE, { prot: 'rw', flags: 'shared' });
    open.push(() => map.unmap(), fd, b, a, pd, ctx);
    map.write(Buffer.alloc(SIZE, 0x5a));
    let cmb;
    const t0 = process.hrtime.bigint();
    try {
      cmb = await pd.registerMemory(map, ['local-write', 'remote-write', 'remote-read']);
    } catch (err) {
      return fail('memory region on the CMB refused', err);
    }
    open.unshift(cmb);
    console.log(`  memory region on the CMB: lkey ${cmb.lkey}, rkey ${cmb.rkey}, ${SIZE >> 10} KiB, registered in ${Number(process.hrtime.bigint() - t0) / 1e3 | 0} us`);
    const src = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i++) src[i] = (i * 7 + (i >> 10)) & 0xff;
    const srcMr = pd.registerMemorySync(src, 'local-write');
    open.unshift(srcMr);
    const w0 = process.hrtime.bigint();
    await a.write(srcMr, cmb);
    const ws = Number(process.hrtime.bigint() - w0) / 1e9;
    const landed = map.read(0, SIZE).equals(src);
    console.log(`  RDMA WRITE host -> CMB: ${(SIZE / ws / 1e6).toFixed(1)} MB/s, seen through the mapping: ${landed ? 'yes' : 'NO'}`);
    const back = Buffer.alloc(SIZE);
    const backMr = pd.registerMemorySync(back, 'local-write');
    open.unshift(backMr);
    await a.read(backMr, cmb);
    const same = back.equals(src);
    console.log(`  RDMA READ CMB -> host matches: ${same ? 'yes' : 'NO'}`);
    if (!landed || !same) process.exitCode = 1;
  })()
    .catch((err) => fail('RDMA step failed', err))
    .finally(() => {
      for (const x of open) typeof x === 'function' ? x() : x.close();
    });
}

function main() {
  const caps = capabilities();
  console.log(`kernel ${caps.kernel}, topology ${process.env.P2PDMA_TOPOLOGY ?? '?'}`);
  const providers = caps.p2pmem.providers.filter((p) => p.published && p.allocate);
  if (providers.length < 2) {
    console.error(`need two published p2pmem providers: ${caps.p2pmem.reason ?? `found ${providers.length}`}`);
    return 1;
  }
  const [a, b] = providers;
  const ns = namespaceOf(a.bdf);
  console.log(`CMB A ${a.bdf} (${a.size >> 20} MiB), CMB B ${b.bdf}, namespace ${ns}`);

  const cmbA = mapCmb(a);
  const cmbB = mapCmb(b);
  const fd = fs.openSync(ns, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    for (let i = 0; i < LENGTH; i++) cmbA.bytes[i] = (i * 31 + (i >> 12)) & 0xff;
    timed('NVMe write from its own CMB (P2P read by the controller)', () => {
      for (let off = 0; off < LENGTH; off += CHUNK) fs.writeSync(fd, cmbA.bytes, off, CHUNK, off);
    });
    cmbB.bytes.fill(0);
    try {
      timed('NVMe read into the peer CMB (P2P write)', () => {
        for (let off = 0; off < LENGTH; off += CHUNK) fs.readSync(fd, cmbB.bytes, off, CHUNK, off);
      });
    } catch (err) {
      console.log(`  peer-to-peer refused by the kernel: ${err.code ?? err.errno} (${err.message})`);
      console.log('  (expected on a topology whose map type is NOT_SUPPORTED)');
      return process.env.P2PDMA_TOPOLOGY === 'none' ? 0 : 1;
    }
    const same = Buffer.compare(Buffer.from(cmbA.bytes.buffer, 0, LENGTH), Buffer.from(cmbB.bytes.buffer, 0, LENGTH)) === 0;
    console.log(`  peer CMB holds the pattern: ${same ? 'yes' : 'NO'}`);
    const ram = Buffer.alloc(LENGTH + 4096);
    const aligned = ram.subarray(4096 - (ram.byteOffset % 4096)).subarray(0, LENGTH);
    timed('bounce: NVMe read into RAM, then copy into the CMB', () => {
      for (let off = 0; off < LENGTH; off += CHUNK) fs.readSync(fd, aligned, off, CHUNK, off);
      cmbB.bytes.set(aligned);
    });
    console.log('RDMA WRITE/READ into CMB B over rxe0');
    rdmaIntoCmb(b);
    return same ? 0 : 1;
  } finally {
    fs.closeSync(fd);
    cmbA.close();
    cmbB.close();
  }
}

process.exitCode = main();
