#!/usr/bin/env node
// NVMe -> CMB -> NVMe copy in the manner of p2pmem-test, three ways side by
// side in one run, for each chunk size and number of copies in flight:
//   addon p2p:    Nvme.read() from nvme0n1 into a P2pBuffer on nvme1's CMB,
//                 Nvme.write() from it to nvme1n1 (the controllers DMA peer to peer)
//   addon copyTo: the same copy as one Nvme.copyTo() call (native lanes, one promise)
//   C p2p:        the same with pread/pwrite and N threads (bench/nvme-p2p-copy.c)
//   C io_uring:   the same from one thread on an io_uring, each read linked to
//                 its write (the least C can spend per copy; P2PDMA_BENCH_RESULTS only)
//   addon bounce: Nvme.read() into host memory, copy into the CMB by the CPU,
//                 Nvme.write() from the CMB
// Rates, process CPU and guest CPU (all CPUs, /proc/stat) seconds per GB.
// Run in the guest (writes [160 MiB, 160 MiB + TOTAL) of both namespaces):
//   node dist/cli.js vm run --kernel baseline -- bench/nvme-p2p-copy.sh
// P2PDMA_NVME_ENGINE=threadpool runs the addon on the thread pool instead of
// io_uring: run it once each way to compare the engines. Not a test.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Nvme, P2pMem } = require('../dist');
const { record, human } = require('./lib/results');

const MiB = 1 << 20;
const OFFSET = 160 * MiB;
// 96 MiB (the namespaces' 256 MiB less OFFSET): /proc/stat counts guest CPU
// in 10 ms ticks, and 32 MiB at 1-4 s/GB was 3-13 ticks, too few to compare.
const TOTAL = Number(process.env.TOTAL_MIB ?? 96) * MiB;
const CHUNKS = (process.env.CHUNKS ?? '65536,1048576').split(',').map(Number);
const DEPTHS = (process.env.DEPTHS ?? '1,8').split(',').map(Number);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const C_BIN = path.join(__dirname, '..', 'build', 'guest-c', 'nvme-p2p-copy');

function guestCpu() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100; // USER_HZ is 100 on Linux
}

async function addon(mode, src, dst, cmb, depth, chunk) {
  const host = mode === 'bounce' ? Array.from({ length: depth }, () => Buffer.alloc(chunk + 4096)) : [];
  const hostBuf = host.map((b) => b.subarray((4096 - (b.byteOffset % 4096)) % 4096).subarray(0, chunk));
  const cmbBytes = new Uint8Array(cmb.buffer);
  Nvme.maxInFlight = depth; // each lane has one read or write in flight (the pool engine's cap; io_uring has none)
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const g0 = guestCpu();
  if (mode === 'copy') await src.copyTo(dst, { from: OFFSET, to: OFFSET, length: TOTAL, via: cmb, chunk, depth });
  else await Promise.all(
    Array.from({ length: depth }, async (_, lane) => {
      const slot = lane * chunk;
      for (let off = lane * chunk; off < TOTAL; off += depth * chunk) {
        if (mode === 'p2p') {
          await src.read(cmb, OFFSET + off, chunk, { bufferOffset: slot });
        } else {
          await src.read(hostBuf[lane], OFFSET + off);
          cmbBytes.set(hostBuf[lane], slot);
        }
        await dst.write(cmb, OFFSET + off, chunk, { bufferOffset: slot });
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  return { bytes: TOTAL, seconds, processCpu: (c.user + c.system) / 1e6, guestCpu: guestCpu() - g0 };
}

function cProgram(mode, src, dst, allocate, depth, chunk) {
  const r = spawnSync(C_BIN, [mode, src, OFFSET, dst, OFFSET, allocate, depth, chunk, TOTAL], { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop();
  const res = line ? JSON.parse(line) : { error: r.stderr.trim() };
  if (res.error) throw new Error(`nvme-p2p-copy: ${res.error}`);
  return res;
}

function best(runs) {
  return runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

async function main() {
  if (!fs.existsSync(C_BIN)) throw new Error(`${C_BIN} missing: run make -C test/guest/c on the host`);
  const [a, b] = P2pMem.providers();
  const srcPath = `/dev/${fs.readdirSync(path.join(a.sysfsPath, 'nvme'))[0]}n1`;
  const dstPath = `/dev/${fs.readdirSync(path.join(b.sysfsPath, 'nvme'))[0]}n1`;
  const topo = P2pMem.topology(b, a);
  human(`# kernel ${require('node:os').release()}, ${process.env.P2PDMA_TOPOLOGY ?? '?'} topology (${srcPath} -> CMB of ${b.bdf}: ${topo.mapType}), ` +
    `${TOTAL / MiB} MiB per run, best of ${ROUNDS}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}, ` +
    `engine ${Nvme.engineInfo.engine} (${Nvme.engineInfo.reason})`);
  const src = Nvme.open(srcPath);
  const dst = Nvme.open(dstPath);
  // Seed the source range once.
  const seed = Buffer.alloc(MiB + 4096);
  const seedBuf = seed.subarray((4096 - (seed.byteOffset % 4096)) % 4096).subarray(0, MiB);
  for (let off = 0; off < TOTAL; off += MiB) {
    seedBuf.fill(off / MiB);
    await src.write(seedBuf, OFFSET + off);
  }
  // Each run maps its own slots of nvme1's CMB (depth x chunk bytes) and
  // returns them, so the C program can map the same pool.
  const withCmb = async (depth, chunk, fn) => {
    const cmb = P2pMem.allocate(b, depth * chunk);
    try {
      return await fn(cmb);
    } finally {
      cmb.close();
    }
  };
  const rows = [];
  for (const chunk of CHUNKS) {
    for (const depth of DEPTHS) {
      const runs = { addon: [], 'addon copyTo': [], c: [], 'c-uring': [], bounce: [] };
      for (let r = 0; r < ROUNDS; r++) {
        runs.addon.push(await withCmb(depth, chunk, (cmb) => addon('p2p', src, dst, cmb, depth, chunk)));
        runs['addon copyTo'].push(await withCmb(depth, chunk, (cmb) => addon('copy', src, dst, cmb, depth, chunk)));
        runs.c.push(cProgram('p2p', srcPath, dstPath, b.p2pmem.allocate, depth, chunk));
        runs['c-uring'].push(cProgram('uring', srcPath, dstPath, b.p2pmem.allocate, depth, chunk));
        runs.bounce.push(await withCmb(depth, chunk, (cmb) => addon('bounce', src, dst, cmb, depth, chunk)));
      }
      const shape = `${chunk >= MiB ? `${chunk / MiB} MiB` : `${chunk / 1024} KiB`} x${depth}`;
      for (const [variant, list] of Object.entries(runs)) {
        const anchor = variant.startsWith('c');
        for (const x of list) {
          record('nvme', `copy ${shape}`, 'MB/s', variant, x.bytes / x.seconds / 1e6, { anchor });
          record('nvme', `guest CPU ${shape}`, 's/GB', variant, x.guestCpu / (x.bytes / 1e9), { anchor, better: 'lower' });
        }
      }
      rows.push({ chunk, depth, addon: best(runs.addon), copy: best(runs['addon copyTo']), c: best(runs.c), bounce: best(runs.bounce) });
    }
  }
  const mbps = (x) => (x.bytes / x.seconds / 1e6).toFixed(1);
  const perGb = (s, x) => (s / (x.bytes / 1e9)).toFixed(2);
  human('| chunk | in flight | addon P2P MB/s | copyTo MB/s | C P2P MB/s | addon/C | copyTo/C | bounce MB/s | guest CPU s/GB: addon P2P | copyTo | C P2P | bounce | P2P/bounce CPU | copyTo/bounce CPU | process CPU s/GB: addon P2P | C P2P | bounce |');
  human('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    human(
      `| ${r.chunk >= MiB ? `${r.chunk / MiB} MiB` : `${r.chunk / 1024} KiB`} | ${r.depth} | ${mbps(r.addon)} | ${mbps(r.copy)} | ${mbps(r.c)} | ` +
        `${(r.c.seconds / r.addon.seconds).toFixed(2)}x | ${(r.c.seconds / r.copy.seconds).toFixed(2)}x | ${mbps(r.bounce)} | ` +
        `${perGb(r.addon.guestCpu, r.addon)} | ${perGb(r.copy.guestCpu, r.copy)} | ${perGb(r.c.guestCpu, r.c)} | ` +
        `${perGb(r.bounce.guestCpu, r.bounce)} | ${(r.addon.guestCpu / r.bounce.guestCpu).toFixed(2)}x | ${(r.copy.guestCpu / r.bounce.guestCpu).toFixed(2)}x | ` +
        `${perGb(r.addon.processCpu, r.addon)} | ${perGb(r.c.processCpu, r.c)} | ${perGb(r.bounce.processCpu, r.bounce)} |`,
    );
  }
  src.close();
  dst.close();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
