#!/usr/bin/env node
// The flagship P2P flow, run inside the test guest by `make demo`:
// NVMe controller A DMAs a pattern out of its own CMB onto its namespace, then
// reads it back straight into controller B's CMB (peer-to-peer), and the
// bytes are checked through a zero-copy mapping of B's CMB. The bounce path
// (read into RAM, copy into the CMB) runs beside it for comparison. All of it
// through the p2pdma API: P2pMem (providers, buffers, topology) and Nvme.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Nvme, P2pMem, Pci } = require('../dist');

const LENGTH = 4 << 20;
const CHUNK = 1 << 20;

async function timed(label, fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`  ${label}: ${(LENGTH / s / 1e6).toFixed(1)} MB/s`);
}

/** The first namespace of the NVMe controller at `bdf`. */
function namespaceOf(bdf) {
  const ctrl = fs.readdirSync(path.join(Pci.device(bdf).sysfsPath, 'nvme'))[0];
  return `/dev/${ctrl}n1`;
}

// RDMA into the CMB over rxe0 through the addon's verbs: a memory region on
// a P2pBuffer on the CMB (p2pmem/allocate), an RDMA WRITE into it checked
// through the mapping, an RDMA READ back. A stock kernel refuses the MR
// with EFAULT (it cannot pin peer memory); kernel-patches/ maps it through
// p2p_map. Settles after main() returns: its promise keeps the process up.
function rdmaIntoCmb(provider) {
  const { Rdma } = require('../dist');
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
    const map = P2pMem.allocate(provider, SIZE);
    open.push(map, b, a, pd, ctx);
    map.write(Buffer.alloc(SIZE, 0x5a));
    let cmb;
    const t0 = process.hrtime.bigint();
    try {
      cmb = await pd.registerMemory(map, { access: ['local-write', 'remote-write', 'remote-read'] });
    } catch (err) {
      return fail('memory region on the CMB refused', err);
    }
    open.unshift(cmb);
    console.log(`  memory region on the CMB: lkey ${cmb.lkey}, rkey ${cmb.rkey}, ${SIZE >> 10} KiB, registered in ${Number(process.hrtime.bigint() - t0) / 1e3 | 0} us`);
    // An MR takes memory JS cannot free under the NIC: shared, not a plain Buffer.
    const src = Buffer.from(new SharedArrayBuffer(SIZE));
    for (let i = 0; i < SIZE; i++) src[i] = (i * 7 + (i >> 10)) & 0xff;
    const srcMr = pd.registerMemorySync(src, { access: 'local-write' });
    open.unshift(srcMr);
    const w0 = process.hrtime.bigint();
    await a.write(srcMr, cmb);
    const ws = Number(process.hrtime.bigint() - w0) / 1e9;
    const landed = map.read(Buffer.alloc(SIZE)).equals(src);
    console.log(`  RDMA WRITE host -> CMB: ${(SIZE / ws / 1e6).toFixed(1)} MB/s, seen through the mapping: ${landed ? 'yes' : 'NO'}`);
    const back = Buffer.from(new SharedArrayBuffer(SIZE));
    const backMr = pd.registerMemorySync(back, { access: 'local-write' });
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

async function main() {
  const providers = P2pMem.providers().filter((p) => p.p2pmem.published && p.p2pmem.allocate);
  console.log(`kernel ${require('node:os').release()}, topology ${process.env.P2PDMA_TOPOLOGY ?? '?'}`);
  if (providers.length < 2) {
    console.error(`need two published p2pmem providers, found ${providers.length}`);
    return 1;
  }
  const [a, b] = providers;
  const topo = P2pMem.topology(b, a);
  console.log(`CMB A ${a.bdf} (${a.p2pmem.size >> 20} MiB), CMB B ${b.bdf}, namespace ${namespaceOf(a.bdf)}`);
  console.log(`  A -> B map type: ${topo.mapType}${topo.kernel ? ` (kernel: ${topo.kernel})` : ''}: ${topo.reason}`);

  const ns = Nvme.open(namespaceOf(a.bdf));
  const cmbA = P2pMem.allocate(a, LENGTH);
  const cmbB = P2pMem.allocate(b, LENGTH);
  try {
    const bytesA = new Uint8Array(cmbA.buffer);
    const bytesB = new Uint8Array(cmbB.buffer);
    for (let i = 0; i < LENGTH; i++) bytesA[i] = (i * 31 + (i >> 12)) & 0xff;
    await timed('NVMe write from its own CMB (P2P read by the controller)', async () => {
      for (let off = 0; off < LENGTH; off += CHUNK) await ns.write(cmbA, off, CHUNK, { bufferOffset: off });
    });
    bytesB.fill(0);
    try {
      await timed('NVMe read into the peer CMB (P2P write)', async () => {
        for (let off = 0; off < LENGTH; off += CHUNK) await ns.read(cmbB, off, CHUNK, { bufferOffset: off });
      });
    } catch (err) {
      console.log(`  peer-to-peer refused by the kernel: ${err.code}`);
      console.log(`  ${err.message}`);
      return topo.mapType === 'NOT_SUPPORTED' ? 0 : 1;
    }
    const same = Buffer.compare(Buffer.from(cmbA.buffer), Buffer.from(cmbB.buffer)) === 0;
    console.log(`  peer CMB holds the pattern: ${same ? 'yes' : 'NO'}`);
    const ram = Buffer.alloc(LENGTH + 4096);
    const aligned = ram.subarray(4096 - (ram.byteOffset % 4096)).subarray(0, LENGTH);
    await timed('bounce: NVMe read into RAM, then copy into the CMB', async () => {
      for (let off = 0; off < LENGTH; off += CHUNK) await ns.read(aligned, off, CHUNK, { bufferOffset: off });
      bytesB.set(aligned);
    });
    console.log('RDMA WRITE/READ into CMB B over rxe0');
    rdmaIntoCmb(b);
    return same ? 0 : 1;
  } finally {
    ns.close();
    cmbA.close();
    cmbB.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err);
    process.exitCode = 1;
  },
);
