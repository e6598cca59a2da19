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

// RDMA into the CMB over rxe0: EFAULT on a stock kernel, an MR through
// p2p_map with kernel-patches/ applied.
function rdmaIntoCmb(provider) {
  const bin = path.join(__dirname, '..', 'build', 'guest-c', 'rdma_p2p');
  if (!fs.existsSync(bin)) return console.log(`  (skipped: ${bin} not built; run make build)`);
  const r = spawnSync(bin, [provider.allocate], { encoding: 'utf8' });
  let res;
  try {
    res = JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return console.log(`  rdma_p2p failed: ${r.stdout}${r.stderr}`);
  }
  if (res.ok) {
    console.log(`  ibv_reg_mr on the CMB: ok in ${res.reg_us} us; RDMA WRITE verified: ${res.write_verified}, READ verified: ${res.read_verified}`);
  } else {
    console.log(`  ${res.stage} failed: ${res.errno ?? res.error}${res.errno === 'EFAULT' ? ' (the stock kernel cannot pin p2pmem long-term; try KERNEL=patched)' : ''}`);
  }
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
