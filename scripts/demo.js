#!/usr/bin/env node
// The flagship P2P flow, run inside the test guest by `make demo`:
// NVMe controller A DMAs a pattern out of its own CMB onto its namespace, then
// reads it back straight into controller B's CMB (peer-to-peer), and the
// bytes are checked through a zero-copy mapping of B's CMB. The bounce path
// (read into RAM, copy into the CMB) runs beside it for comparison. All of it
// through the p2pdma API: P2pMem (providers, buffers, topology) and Nvme.
'use strict';
const { spawnSync } = require('node:child_process');
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
    rdmaIntoCmb({ bdf: b.bdf, allocate: b.p2pmem.allocate });
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
