#!/usr/bin/env node
/*
 * dma-buf CPU access: JS over a mapped system-heap dma-buf vs C on the same
 * dma-buf (bench/dmabuf.c, given the fd), in one run, as ratios:
 *  - fill (Buffer.fill vs memset), copy in (Buffer.copy vs memcpy into
 *    the mapping), copy out (the reverse): GB/s, goal JS/C >= 0.9; and the
 *    same with Uint8Array.fill/set, which V8 runs in its own loops;
 *  - a CPU-access bracket, `buf.beginCpuAccess('rw').end()` vs C's
 *    DMA_BUF_IOCTL_SYNC START+END: ns per pair, goal JS/C <= 1.3.
 * Needs /dev/dma_heap/system, so it runs in the guest:
 *   node dist/cli.js vm run -- node bench/dmabuf.js [MiB] [syncIterations] [rounds]
 * (or `make bench-dmabuf`). Uses dist/ (npm run build first). Writes only to
 * $P2PDMA_BENCH_DIR or os.tmpdir() (the C binary).
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { record, human } = require('./lib/results');
const { buildC, ANCHORS } = require('./lib/build-c');

const root = path.resolve(__dirname, '..');
const size = Number(process.argv[2] ?? 16) << 20;
const syncIters = Number(process.argv[3] ?? 20000);
const rounds = Number(process.argv[4] ?? 5);

function best(fn) {
  let b = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    fn(r);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (dt < b) b = dt;
  }
  return b;
}

function main() {
  const api = require(path.resolve(process.env.P2PDMA_DIST ?? path.join(root, 'dist', 'index.js')));
  const bin = buildC(...ANCHORS.dmabuf);
  const heap = api.DmaHeap.open('system');
  const buf = heap.allocSync(size);
  const map = buf.map();
  const view = new Uint8Array(map.buffer);
  const nodeView = Buffer.from(map.buffer); // Node's Buffer: fill/copy in C++ (memset/memmove)
  const src = Buffer.alloc(size, 0x5a);
  const dst = Buffer.alloc(size);

  // One pass of the C side (a process of its own, best of `rounds`).
  const runC = () => {
    const r = spawnSync(bin, [String(size), String(syncIters), String(rounds)], { stdio: ['ignore', 'pipe', 'inherit', buf.fd], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${bin} exited ${r.status}`);
    return JSON.parse(r.stdout);
  };
  // Warm up the JIT and fault the pages in, as the C side's first round does.
  view.fill(1);
  dst.set(view);

  const runJs = () => {
    const js = {
      fillGBs: size / best((r) => nodeView.fill(r & 0xff)) / 1e9,
      copyInGBs: size / best(() => src.copy(nodeView)) / 1e9,
      copyOutGBs: size / best(() => nodeView.copy(dst)) / 1e9,
      taFillGBs: size / best((r) => view.fill(r & 0xff)) / 1e9,
      taCopyInGBs: size / best(() => view.set(src)) / 1e9,
      taCopyOutGBs: size / best(() => dst.set(view)) / 1e9,
    };
    // Its own loop, warmed right before: under TCG the 16 MiB copies above
    // flush the translated code the sync loop runs on.
    const syncLoop = () => {
      for (let i = 0; i < syncIters; i++) buf.beginCpuAccess('rw').end();
    };
    syncLoop();
    js.syncPairNs = (best(syncLoop) / syncIters) * 1e9;
    return js;
  };
  // C, JS, C, JS: each side gets two passes of `rounds` and keeps its best,
  // so neither has more tries at a quiet moment than the other (the C side
  // used to get two passes to JS's one).
  const c1 = runC();
  const j1 = runJs();
  const c2 = runC();
  const j2 = runJs();
  const bestOf = (a, b) => {
    const o = {};
    for (const k of Object.keys(a)) o[k] = k === 'syncPairNs' ? Math.min(a[k], b[k]) : Math.max(a[k], b[k]);
    return o;
  };
  const c = bestOf(c1, c2);
  const js = bestOf(j1, j2);
  // Samples for `p2pdma bench`: both passes of each side.
  const metrics = [
    ['fill', 'fillGBs', 'taFillGBs'],
    ['copy in', 'copyInGBs', 'taCopyInGBs'],
    ['copy out', 'copyOutGBs', 'taCopyOutGBs'],
  ];
  for (const [metric, key, taKey] of metrics) {
    for (const jx of [j1, j2]) {
      record('dmabuf', metric, 'GB/s', 'addon', jx[key]);
      record('dmabuf', metric, 'GB/s', 'addon-typedarray', jx[taKey]);
    }
    for (const cx of [c1, c2]) record('dmabuf', metric, 'GB/s', 'c', cx[key], { anchor: true });
  }
  for (const jx of [j1, j2]) record('dmabuf', 'CPU access begin+end', 'ns/pair', 'addon', jx.syncPairNs, { better: 'lower' });
  for (const cx of [c1, c2]) record('dmabuf', 'CPU access begin+end', 'ns/pair', 'c', cx.syncPairNs, { anchor: true, better: 'lower' });
  map.unmap();
  buf.close();
  heap.close();

  const rows = [
    ['fill, Buffer.fill (GB/s)', 'fillGBs', true],
    ['copy into the mapping, Buffer.copy (GB/s)', 'copyInGBs', true],
    ['copy out of the mapping, Buffer.copy (GB/s)', 'copyOutGBs', true],
    ['fill, Uint8Array.fill (GB/s)', 'taFillGBs', true, 'fillGBs'],
    ['copy in, Uint8Array.set (GB/s)', 'taCopyInGBs', true, 'copyInGBs'],
    ['copy out, Uint8Array.set (GB/s)', 'taCopyOutGBs', true, 'copyOutGBs'],
    ['begin+end CPU access (ns/pair)', 'syncPairNs', false],
  ];
  human(`# dma-buf bench: ${size >> 20} MiB system-heap buffer, ${syncIters} sync pairs, best of ${rounds}; node ${process.version}, kernel ${os.release()}`);
  human('| measure | C | JS | JS/C | goal |');
  human('|---|---|---|---|---|');
  for (const [label, key, higherIsBetter, cKey = key] of rows) {
    const ratio = js[key] / c[cKey];
    const goal = higherIsBetter ? `>= 0.9x: ${ratio >= 0.9 ? 'met' : '**not met**'}` : `<= 1.3x: ${ratio <= 1.3 ? 'met' : '**not met**'}`;
    human(`| ${label} | ${c[cKey].toFixed(higherIsBetter ? 3 : 1)} | ${js[key].toFixed(higherIsBetter ? 3 : 1)} | **${ratio.toFixed(2)}x** | ${goal} |`);
  }
  human(JSON.stringify({ size, syncIters, rounds, c, c1, c2, js, j1, j2 }));
}

main();
