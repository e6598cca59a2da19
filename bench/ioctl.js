#!/usr/bin/env node
/*
 * ioctl round trip: JS `ioctlSync(fd, FIONREAD, Int32Array)` through the public
 * API vs a C loop doing the same successful ioctl, printed as a ratio.
 *
 *   node bench/ioctl.js [iterations] [rounds]
 *   P2PDMA_DIST=other/dist/index.js node bench/ioctl.js ...   another build's API
 *
 * Writes only to $P2PDMA_BENCH_DIR or os.tmpdir() (the C binary) and os.tmpdir() (a FIFO), so
 * it runs from a read-only tree. The JS side is lib/ (transpiled in memory
 * with the typescript devDependency) or, without typescript, dist/.
 * The JS loop calls `api.ioctlSync(...)` as a consumer's compiled code does
 * (`(0, p2pdma_1.ioctlSync)(...)`), so a slow export shape would show here.
 * Goal: ratio <= 1.5 on the host, <= 1.2 in a TCG guest.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { record, human } = require('./lib/results');
const { buildC, ANCHORS } = require('./lib/build-c');
const { openPipe } = require('./lib/fifo');

const root = path.resolve(__dirname, '..');
const iterations = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 9);

/**
 * The public API: lib/*.ts transpiled in memory, or dist/. Under `p2pdma
 * bench`, dist/ (what the other suites measure; and loading TypeScript takes
 * minutes in a TCG guest).
 */
function loadApi() {
  // Another build's dist/ (its index.js), to compare builds in one boot.
  if (process.env.P2PDMA_DIST) return { api: require(path.resolve(process.env.P2PDMA_DIST)), from: path.dirname(path.resolve(process.env.P2PDMA_DIST)) };
  if (process.env.P2PDMA_BENCH_RESULTS) return { api: require(path.join(root, 'dist', 'index.js')), from: 'dist/' };
  let ts;
  try {
    ts = require(require.resolve('typescript', { paths: [root] }));
  } catch {
    return { api: require(path.join(root, 'dist', 'index.js')), from: 'dist/' };
  }
  const prev = require.extensions['.ts'];
  require.extensions['.ts'] = (module, filename) => {
    const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
      fileName: filename,
    });
    module._compile(out.outputText, filename);
  };
  try {
    return { api: require(path.join(root, 'lib', 'index.ts')), from: 'lib/ (transpiled)' };
  } finally {
    if (prev) require.extensions['.ts'] = prev;
    else delete require.extensions['.ts'];
  }
}

/** { cpu, wall }: ns per call of one round of `fn(iterations)`. */
function timeRound(fn) {
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  fn(iterations);
  const wall = Number(process.hrtime.bigint() - w0) / iterations;
  const c = process.cpuUsage(c0);
  return { cpu: ((c.user + c.system) * 1000) / iterations, wall };
}

/** { cpu, wall }: ns per call of one round of the C loop (a fresh process, timed inside). */
function cRound(bin) {
  const r = spawnSync(bin, [String(iterations), '1'], { encoding: 'utf8' });
  const [cpu, wall] = r.stdout.trim().split(' ').map(Number);
  if (r.status !== 0 || !(cpu > 0) || !(wall > 0)) throw new Error(`the C loop failed: ${r.stderr}`);
  return { cpu, wall };
}

function best(a, b) {
  return { cpu: Math.min(a.cpu, b.cpu), wall: Math.min(a.wall, b.wall) };
}

function main() {
  const bin = buildC(...ANCHORS.ioctl);
  const { api, from } = loadApi();
  const nativeModule = from === 'dist/' ? 'dist/core/native.js' : from.startsWith('/') ? path.join(from, 'core', 'native.js') : 'lib/core/native.ts';
  const { native } = require(path.resolve(root, nativeModule));
  const { r, w } = openPipe();
  const FIONREAD = api.requests.FIONREAD;
  const count = new Int32Array(1);

  const viaApi = (n) => {
    for (let i = 0; i < n; i++) api.ioctlSync(r, FIONREAD, count);
    if (count[0] !== 1) throw new Error(`FIONREAD gave ${count[0]}`);
  };
  const viaNative = (n) => {
    for (let i = 0; i < n; i++) native.ioctlView(r, FIONREAD, count);
  };
  viaApi(50_000); // warm up the JIT
  viaNative(50_000);

  // Interleave C and JS rounds so load or frequency drift hits both alike,
  // and keep the best round of each (the least disturbed one). The ratio
  // uses CPU time (user + system), which other processes' load does not
  // inflate; wall-clock figures are shown too.
  const inf = { cpu: Infinity, wall: Infinity };
  let c = inf;
  let js = inf;
  let raw = inf;
  const sample = (variant, m, anchor = false) => {
    record('ioctl', 'FIONREAD CPU', 'ns/call', variant, m.cpu, { anchor, better: 'lower' });
    record('ioctl', 'FIONREAD wall', 'ns/call', variant, m.wall, { anchor, better: 'lower' });
    return m;
  };
  for (let round = 0; round < rounds; round++) {
    c = best(c, sample('c', cRound(bin), true));
    js = best(js, sample('addon', timeRound(viaApi)));
    raw = best(raw, sample('addon-binding', timeRound(viaNative)));
  }
  fs.closeSync(r);
  fs.closeSync(w);

  const line = (name, m) =>
    `  ${name.padEnd(18)} ${m.cpu.toFixed(1).padStart(7)} ns/call CPU (${(m.cpu / c.cpu).toFixed(2)}x)` +
    `  ${m.wall.toFixed(1).padStart(7)} ns/call wall (${(m.wall / c.wall).toFixed(2)}x)`;
  human(`ioctl FIONREAD round trip, best of ${rounds} x ${iterations}`);
  human(`  (${os.release()}, node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}, API from ${from})`);
  human(line('C loop', c));
  human(line('JS native binding', raw));
  human(line('JS ioctlSync() API', js));
  human(`ratio ${(js.cpu / c.cpu).toFixed(2)} (JS ioctlSync() / C, CPU time; goal <= 1.5 host, <= 1.2 TCG guest)`);
}

main();
