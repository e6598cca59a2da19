#!/usr/bin/env node
/*
 * Two builds' hot paths in one process, in short alternating slices, with
 * the C anchors run between them: on a loaded machine each slice of each
 * variant meets the same load, and the best slice of each is compared
 * (a before/after that a busy host does not decide).
 *
 *   node bench/ab-hot.js A/dist B/dist [slices] [iterations per slice]
 *
 * Loops: ioctlSync(FIONREAD) through each build's exports and its raw
 * binding; a dma-buf CPU-access bracket (system heap) and its raw binding
 * pair; C: bench/ioctl-loop.c and bench/dmabuf.c's sync pair. Each loop is
 * its own compiled function per build (new Function), so one build's
 * feedback does not make the other's call sites polymorphic.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { buildC, ANCHORS } = require('./lib/build-c');
const { openPipe } = require('./lib/fifo');

const [distA, distB, slicesArg = '15', itersArg = '20000'] = process.argv.slice(2);
if (!distA || !distB) {
  process.stderr.write('usage: node bench/ab-hot.js A/dist B/dist [slices] [iterations per slice]\n');
  process.exit(2);
}
const slices = Number(slicesArg);
const iters = Number(itersArg);


const fd = openPipe().r;
const count = new Int32Array(1);
const hasHeap = fs.existsSync('/dev/dma_heap/system');

/** The loops of one build, each a fresh function (its own feedback). */
function loopsOf(dist, label) {
  const dir = path.resolve(dist);
  const api = require(path.join(dir, 'index.js'));
  const { native } = require(path.join(dir, 'core', 'native.js'));
  const FIONREAD = api.requests.FIONREAD;
  const mk = (body) => new Function('api', 'native', 'fd', 'FIONREAD', 'count', 'buf', 'bfd', `return function (n) { for (let i = 0; i < n; i++) { ${body} } };`);
  const buf = hasHeap ? api.DmaHeap.open('system').allocSync(4096) : null;
  const bfd = buf ? buf.fd : -1;
  const loops = {
    [`${label} ioctlSync`]: mk('api.ioctlSync(fd, FIONREAD, count);'),
    [`${label} ioctl binding`]: mk('native.ioctlView(fd, FIONREAD, count);'),
  };
  if (buf) {
    loops[`${label} dma-buf begin+end`] = mk("buf.beginCpuAccess('rw').end();");
    loops[`${label} dma-buf binding pair`] = mk('native.dmabufSync(bfd, 3); native.dmabufSync(bfd, 7);');
  }
  const out = {};
  for (const [k, f] of Object.entries(loops)) out[k] = f(api, native, fd, FIONREAD, count, buf, bfd);
  return { loops: out, buf };
}

function main() {
  const a = loopsOf(distA, 'A');
  const b = loopsOf(distB, 'B');
  const ioctlC = buildC(...ANCHORS.ioctl);
  const dmabufC = hasHeap ? buildC(...ANCHORS.dmabuf) : null;
  const best = {};
  const note = (k, ns) => (best[k] = Math.min(best[k] ?? Infinity, ns));
  const all = { ...a.loops, ...b.loops };
  for (const f of Object.values(all)) f(iters); // warm up
  for (let s = 0; s < slices; s++) {
    // Alternate which build goes first.
    const order = s % 2 ? [b.loops, a.loops] : [a.loops, b.loops];
    for (const loops of order) {
      for (const [k, f] of Object.entries(loops)) {
        const c0 = process.cpuUsage();
        f(iters);
        const c = process.cpuUsage(c0);
        note(k, ((c.user + c.system) * 1000) / iters);
      }
    }
    const r = spawnSync(ioctlC, [String(iters), '1'], { encoding: 'utf8' });
    note('C ioctl', Number(r.stdout.trim().split(' ')[0]));
    if (dmabufC) {
      const d = spawnSync(dmabufC, ['4096', String(iters), '1'], { stdio: ['ignore', 'pipe', 'inherit', a.buf.fd], encoding: 'utf8' });
      note('C dma-buf sync pair', JSON.parse(d.stdout).syncPairNs);
    }
  }
  console.log(`# best of ${slices} slices x ${iters}, CPU ns per op (A: ${distA}, B: ${distB}); ${os.release()}, node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`);
  const c = { ioctl: best['C ioctl'], dmabuf: best['C dma-buf sync pair'] };
  for (const [k, ns] of Object.entries(best)) {
    const anchor = k.includes('ioctl') ? c.ioctl : c.dmabuf;
    console.log(`${k.padEnd(26)} ${ns.toFixed(1).padStart(9)} ns  ${(ns / anchor).toFixed(2)}x C`);
  }
  console.log(JSON.stringify(best));
}

main();
