#!/usr/bin/env node
// RDMA WRITE through the addon against perftest on the same rxe device, in
// the same guest, side by side:
//   node dist/cli.js vm run --kernel baseline -- node bench/rdma.js
// Bandwidth: 4 KiB..1 MiB with a queue depth of QD WRITEs in flight (the
// addon: a loopback QP pair; perftest: ib_write_bw server and client over
// the loopback address, -t QD). Latency: 64 B.
//
// The latencies do not measure the same thing: ib_write_lat reports half a
// ping-pong (each side WRITEs and spins on memory for the peer's), the
// addon's the time from posting a WRITE to its promise resolving (a round
// trip with the responder's ACK, plus the event loop's wake-up), so the
// addon's figure includes roughly one more one-way trip. The addon is
// measured with completion-channel events (the default) and with
// `busyPoll` (a core burnt polling the CQ).
//
// The addon is also measured the way ib_write_lat measures: a ping-pong of
// 64 B WRITEs between two QPs, each side spinning on the memory the peer
// writes, half the round trip reported ("ping-pong"); and, for bandwidth,
// with `qp.postAll()` (one promise per batch of QD/4 WRITEs).
//
// The per-request-free paths (issue 25), beside the ones above:
// bandwidth with `qp.prepare()` + `prepared.post(QD/4)` (one native call
// and one promise per chain, only its last WRITE signaled), event-driven
// and busy-poll CQ; latency with `prepared.postSync()` + `mr.pollByte()`
// (ping-pong, no promise or event loop: two calls into the addon per half
// round trip; on one thread, and with the peer on a worker thread as
// ib_write_lat's two processes) and `postSync()` + `cq.poll()` (post to
// completion).
//
// Env: SIZES (bytes, comma-separated), QD, BYTES (per size), LAT_ITERS, DEV,
// ADDR, NO_PERFTEST=1 (the addon only), P2PDMA_DIST (another build's dist/,
// to compare two builds in one boot).
'use strict';
const { spawn } = require('node:child_process');
const { Rdma } = require(process.env.P2PDMA_DIST ?? '../dist');
const { record, human } = require('./lib/results');
const { keepInFlight } = require('./lib/in-flight');

const DEV = process.env.DEV ?? 'rxe0';
const ADDR = process.env.ADDR ?? '10.0.2.15';
const SIZES = (process.env.SIZES ?? '4096,65536,1048576').split(',').map(Number);
const QD = Number(process.env.QD ?? 32);
const BYTES = Number(process.env.BYTES ?? 24 << 20);
const LAT_ITERS = Number(process.env.LAT_ITERS ?? 1000);

function iterationsFor(size) {
  return Math.max(QD * 2, Math.min(5000, Math.round(BYTES / size)));
}

/** Runs a perftest server and its client; resolves with the client's stdout. */
function perftest(tool, args) {
  const children = [];
  const run = (extra) =>
    new Promise((resolve, reject) => {
      const p = spawn(tool, [...args, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(p);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${tool} ${[...args, ...extra].join(' ')}: exit ${code}\n${out}`))));
    });
  const port = String(18515 + Math.floor(Math.random() * 1000));
  const server = run(['-p', port]);
  // The server must listen before the client connects; on a busy host it
  // may take longer than the first wait: the client tries again.
  const client = async (tries) => {
    await new Promise((r) => setTimeout(r, 1500));
    try {
      return await run(['-p', port, ADDR]);
    } catch (e) {
      if (tries > 1 && /Couldn't connect/.test(e.message)) return client(tries - 1);
      throw e;
    }
  };
  // A client that never connected leaves its server waiting: end it, or this process never exits.
  return Promise.all([client(10), server]).then(
    ([out]) => out,
    (e) => {
      for (const c of children) if (c.exitCode === null) c.kill();
      throw e;
    },
  );
}

/** The numbers of the result line that starts with `size`. */
function resultLine(out, size) {
  const line = out.split('\n').find((l) => l.trim().split(/\s+/)[0] === String(size));
  if (!line) throw new Error(`no result line for ${size} in:\n${out}`);
  return line.trim().split(/\s+/).map(Number);
}

async function perftestBw(size) {
  const n = iterationsFor(size);
  const out = await perftest('ib_write_bw', ['-d', DEV, '-s', String(size), '-n', String(n), '-t', String(QD), '-F']);
  // #bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate[Mpps]; MB = 2^20 bytes
  return resultLine(out, size)[3] * 1.048576;
}

async function perftestLat() {
  const out = await perftest('ib_write_lat', ['-d', DEV, '-s', '64', '-n', String(LAT_ITERS), '-F']);
  // #bytes #iterations t_min t_max t_typical t_avg ...
  return resultLine(out, 64)[5];
}

async function addonBw(pd, size, busyPoll = false) {
  const [a, b] = Rdma.loopbackPair(pd, { cqSize: QD * 2 + 8, cap: { maxSendWr: QD, maxRecvWr: 1 }, busyPoll });
  // Memory the MRs own (pd.allocMemory): a Buffer's may be freed under the NIC.
  const src = pd.allocMemorySync(size, { access: 'local-write' });
  new Uint8Array(src.mapping.buffer).fill(1);
  const dst = pd.allocMemorySync(size, { access: ['local-write', 'remote-write'] });
  try {
    const n = iterationsFor(size);
    const wr = { op: 'write', local: src, remote: dst };
    const t0 = process.hrtime.bigint();
    await keepInFlight(a, wr, n, QD);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return (n * size) / s / 1e6;
  } finally {
    a.close();
    b.close();
    src.close();
    dst.close();
  }
}

/**
 * postAll() batches of QD/4 WRITEs, QD in flight. With `unsignaled`, only
 * the last WRITE of a batch asks for a completion, as perftest's
 * ib_write_bw does (its --cq-mod, 100 by default): one CQE, one dispatch
 * and one promise per batch instead of per WRITE.
 */
async function addonBwBatch(pd, size, unsignaled = false) {
  const [a, b] = Rdma.loopbackPair(pd, { cqSize: QD * 2 + 8, cap: { maxSendWr: QD, maxRecvWr: 1 } });
  const src = pd.allocMemorySync(size, { access: 'local-write' });
  const dst = pd.allocMemorySync(size, { access: ['local-write', 'remote-write'] });
  try {
    const n = iterationsFor(size);
    const per = Math.max(1, QD >> 2);
    const wr = { op: 'write', local: src, remote: dst };
    const wrs = new Array(per).fill(wr);
    if (unsignaled) for (let i = 0; i < per - 1; i++) wrs[i] = { ...wr, signaled: false };
    const t0 = process.hrtime.bigint();
    let posted = 0;
    // QD in flight as batches of QD/4: a settled batch is replaced by the next.
    const lane = async () => {
      while (posted < n) {
        const k = Math.min(per, n - posted);
        posted += k;
        await a.postAll(k === per ? wrs : wrs.slice(per - k));
      }
    };
    await Promise.all(Array.from({ length: Math.ceil(QD / per) }, lane));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return (n * size) / s / 1e6;
  } finally {
    a.close();
    b.close();
    src.close();
    dst.close();
  }
}

/**
 * qp.prepare(): the WRITE checked and built once, posted as chains of QD/4
 * copies with `prepared.post(k)` (only the last signaled, one promise per
 * chain, no JS object per WRITE), QD in flight: perftest's shape (one
 * completion per chain, as its --cq-mod).
 */
async function addonBwPrepared(pd, size, busyPoll = false) {
  const [a, b] = Rdma.loopbackPair(pd, { cqSize: QD * 2 + 8, cap: { maxSendWr: QD, maxRecvWr: 1 }, busyPoll });
  const src = pd.allocMemorySync(size, { access: 'local-write' });
  const dst = pd.allocMemorySync(size, { access: ['local-write', 'remote-write'] });
  const w = a.prepare({ op: 'write', local: src, remote: dst });
  try {
    const n = iterationsFor(size);
    const per = Math.max(1, QD >> 2);
    const t0 = process.hrtime.bigint();
    let posted = 0;
    const lane = async () => {
      while (posted < n) {
        const k = Math.min(per, n - posted);
        posted += k;
        await w.post(k);
      }
    };
    await Promise.all(Array.from({ length: Math.ceil(QD / per) }, lane));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return (n * size) / s / 1e6;
  } finally {
    w.close();
    a.close();
    b.close();
    src.close();
    dst.close();
  }
}

/** { avg, median } of per-operation times (us). */
function avgAndMedian(times) {
  const sorted = [...times].sort((x, y) => x - y);
  return { avg: sorted.reduce((x, y) => x + y, 0) / sorted.length, median: sorted[sorted.length >> 1] };
}

/**
 * ib_write_lat's loop with the latency path: prepared 64 B inline WRITEs
 * posted with postSync() (one call into the addon, no promise; one in 16
 * signaled and reaped by postSync itself when the queue fills) and the
 * peer's byte awaited with mr.pollByte() (a native spin): two calls per
 * half round trip, no event loop. Half the round trip, as ib_write_lat.
 */
function addonPingPongSync(pd) {
  const cq = pd.context.createCq(64);
  const cap = { maxSendWr: 32, maxRecvWr: 1, maxInlineData: 64 };
  const a = pd.createQp({ sendCq: cq, cap });
  const b = pd.createQp({ sendCq: cq, cap });
  a.connect(b.info());
  b.connect(a.info());
  const mem = [0, 1, 2, 3].map(() => pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] }));
  const [srcA, srcB, inA, inB] = mem;
  const [sa, sb] = [srcA, srcB].map((m) => new Uint8Array(m.mapping.buffer));
  const inline = a.cap.maxInlineData >= 64;
  const wa = a.prepare({ op: 'write', local: srcA, remote: inB, inline });
  const wb = b.prepare({ op: 'write', local: srcB, remote: inA, inline });
  const timeout = { timeout: 10000 };
  const round = (i) => {
    const seq = (i % 255) + 1;
    sa[63] = seq;
    wa.postSync();
    inB.pollByte(63, seq, timeout);
    sb[63] = seq;
    wb.postSync();
    inA.pollByte(63, seq, timeout);
  };
  try {
    for (let i = 0; i < 50; i++) round(i); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < LAT_ITERS; i++) round(i);
    return Number(process.hrtime.bigint() - t0) / 1e3 / (2 * LAT_ITERS);
  } finally {
    wa.close();
    wb.close();
    a.close();
    b.close();
    for (const m of mem) m.close();
    cq.close();
  }
}

/**
 * The same ping-pong with each side on its own thread (the peer in a
 * worker, its own context, PD and CQ), as ib_write_lat runs its two sides
 * in two processes: each thread spins on its own CPU, so neither waits for
 * the other's turn on one thread.
 */
function addonPingPongThreads() {
  const { Worker } = require('node:worker_threads');
  const peer = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { Rdma } = require(workerData.dist);
    const ctx = Rdma.open(workerData.dev);
    const pd = ctx.allocPd();
    const cq = ctx.createCq(64);
    const qp = pd.createQp({ sendCq: cq, cap: { maxSendWr: 32, maxRecvWr: 1, maxInlineData: 64 } });
    const [src, inb] = [0, 1].map(() => pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] }));
    parentPort.postMessage({ info: qp.info(), remote: inb.remote() });
    parentPort.once('message', ({ info, remote, iters }) => {
      qp.connect(info);
      const w = qp.prepare({ op: 'write', local: src, remote, inline: qp.cap.maxInlineData >= 64 });
      const s = new Uint8Array(src.mapping.buffer);
      parentPort.postMessage('ready');
      for (let i = 0; i < iters; i++) {
        const seq = (i % 255) + 1;
        inb.pollByte(63, seq, { timeout: 10000 });
        s[63] = seq;
        w.postSync();
      }
      while (qp.outstanding.send > 0 && cq.poll({ timeout: 1000 }) > 0);
      w.close(); qp.close(); src.close(); inb.close(); cq.close(); pd.close(); ctx.close();
      parentPort.postMessage('done');
    });`;
  const dist = require.resolve(process.env.P2PDMA_DIST ?? '../dist');
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(64);
  const qp = pd.createQp({ sendCq: cq, cap: { maxSendWr: 32, maxRecvWr: 1, maxInlineData: 64 } });
  const [src, ina] = [0, 1].map(() => pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] }));
  const worker = new Worker(peer, { eval: true, workerData: { dist, dev: DEV } });
  const next = () => new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const WARM = 50;
  return next()
    .then(({ info, remote }) => {
      qp.connect(info);
      const w = qp.prepare({ op: 'write', local: src, remote, inline: qp.cap.maxInlineData >= 64 });
      const ready = next();
      worker.postMessage({ info: qp.info(), remote: ina.remote(), iters: WARM + LAT_ITERS });
      return ready.then(() => w);
    })
    .then((w) => {
      const s = new Uint8Array(src.mapping.buffer);
      const done = next();
      let t0 = 0n;
      for (let i = 0; i < WARM + LAT_ITERS; i++) {
        if (i === WARM) t0 = process.hrtime.bigint();
        const seq = (i % 255) + 1;
        s[63] = seq;
        w.postSync();
        ina.pollByte(63, seq, { timeout: 10000 });
      }
      const us = Number(process.hrtime.bigint() - t0) / 1e3 / (2 * LAT_ITERS);
      while (qp.outstanding.send > 0 && cq.poll({ timeout: 1000 }) > 0);
      w.close();
      return done.then(() => us);
    })
    .finally(() => {
      qp.close();
      src.close();
      ina.close();
      cq.close();
      pd.close();
      ctx.close();
      return worker.terminate();
    });
}

/** Post to completion with the latency path: postSync() (every post signaled), then cq.poll() spinning natively for its completion. */
function addonLatSync(pd) {
  const cq = pd.context.createCq(16);
  const a = pd.createQp({ sendCq: cq, cap: { maxSendWr: 4, maxRecvWr: 1, maxInlineData: 64 } });
  const b = pd.createQp({ sendCq: cq, cap: { maxSendWr: 4, maxRecvWr: 1 } });
  a.connect(b.info());
  b.connect(a.info());
  const src = pd.allocMemorySync(64, { access: 'local-write' });
  const dst = pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] });
  const w = a.prepare({ op: 'write', local: src, remote: dst, inline: a.cap.maxInlineData >= 64 }, { signalEvery: 1 });
  const timeout = { timeout: 10000 };
  const one = () => {
    w.postSync();
    if (cq.poll(timeout) !== 1) throw new Error('latency: no completion in 10 s');
  };
  try {
    for (let i = 0; i < 50; i++) one();
    const times = [];
    for (let i = 0; i < LAT_ITERS; i++) {
      const t0 = process.hrtime.bigint();
      one();
      times.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    return avgAndMedian(times);
  } finally {
    w.close();
    a.close();
    b.close();
    src.close();
    dst.close();
    cq.close();
  }
}

/** Whether this build has the latency and prepared paths (P2PDMA_DIST may be an older one). */
const hasPrepared = typeof require(process.env.P2PDMA_DIST ?? '../dist').PreparedRequest === 'function';

/** ib_write_lat's measure: 64 B WRITEs back and forth, each side spinning on the bytes the peer writes; half the round trip. */
async function addonPingPong(pd, busyPoll) {
  const cq = pd.context.createCq(64, { busyPoll });
  const a = pd.createQp({ sendCq: cq, cap: { maxSendWr: 32, maxRecvWr: 1 } });
  const b = pd.createQp({ sendCq: cq, cap: { maxSendWr: 32, maxRecvWr: 1 } });
  a.connect(b.info());
  b.connect(a.info());
  const mem = [0, 1, 2, 3].map(() => pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] }));
  const [srcA, srcB, inA, inB] = mem;
  const [sa, sb, va, vb] = mem.map((m) => new Uint8Array(m.mapping.buffer));
  const spin = (view, seq) => {
    const t = Date.now();
    while (Atomics.load(view, 63) !== seq) if (Date.now() - t > 10000) throw new Error('ping-pong: no WRITE arrived in 10 s');
  };
  try {
    let pending = [];
    const round = async (i) => {
      const seq = (i % 255) + 1;
      sa[63] = seq;
      pending.push(a.write(srcA, inB));
      spin(vb, seq);
      sb[63] = seq;
      pending.push(b.write(srcB, inA));
      spin(va, seq);
      // Reap completions now and then, as ib_write_lat polls its CQ.
      if (pending.length >= 16) {
        await Promise.all(pending);
        pending = [];
      }
    };
    for (let i = 0; i < 50; i++) await round(i); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < LAT_ITERS; i++) await round(i);
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / (2 * LAT_ITERS);
    await Promise.all(pending);
    return us;
  } finally {
    a.close();
    b.close();
    for (const m of mem) m.close();
    cq.close();
  }
}

async function addonLat(pd, busyPoll) {
  const ctx = pd.context;
  const cq = ctx.createCq(16, { busyPoll });
  const a = pd.createQp({ sendCq: cq, cap: { maxSendWr: 4, maxRecvWr: 1 } });
  const b = pd.createQp({ sendCq: cq, cap: { maxSendWr: 4, maxRecvWr: 1 } });
  a.connect(b.info());
  b.connect(a.info());
  const src = pd.allocMemorySync(64, { access: 'local-write' });
  new Uint8Array(src.mapping.buffer).fill(1);
  const dst = pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] });
  try {
    for (let i = 0; i < 50; i++) await a.write(src, dst); // warm-up
    const times = [];
    for (let i = 0; i < LAT_ITERS; i++) {
      const t0 = process.hrtime.bigint();
      await a.write(src, dst);
      times.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    return avgAndMedian(times);
  } finally {
    a.close();
    b.close();
    src.close();
    dst.close();
    cq.close();
  }
}

async function main() {
  const { execSync } = require('node:child_process');
  human(`# RDMA WRITE on ${DEV}, kernel ${execSync('uname -r').toString().trim()}, node ${process.version}, QD ${QD}`);
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const rows = [];
  const perf = process.env.NO_PERFTEST !== '1';
  // busy-poll: the CQ polled in a spin, as perftest polls its own (no
  // completion events, no wake-ups): what the event path costs at 4 KiB.
  human('size      perftest MB/s  addon MB/s  ratio  postAll MB/s  busy-poll MB/s  postAll 1-signaled MB/s  ratio  prepared MB/s  ratio  prepared busy-poll MB/s  ratio');
  for (const size of SIZES) {
    const p = perf ? await perftestBw(size) : NaN;
    const a = await addonBw(pd, size);
    let ab = NaN;
    try {
      ab = await addonBwBatch(pd, size);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e; // a build without postAll
    }
    const bp = await addonBw(pd, size, true);
    let au = NaN;
    try {
      au = await addonBwBatch(pd, size, true);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
    }
    const pr = hasPrepared ? await addonBwPrepared(pd, size) : NaN;
    const prb = hasPrepared ? await addonBwPrepared(pd, size, true) : NaN;
    rows.push({ size, perftest: p, addon: a, ratio: a / p, postAll: ab, busyPoll: bp, postAllUnsignaled: au, prepared: pr, preparedBusyPoll: prb });
    if (hasPrepared) {
      record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'addon-prepared', pr);
      record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'addon-prepared-busypoll', prb);
    }
    record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'addon-busypoll', bp);
    if (!Number.isNaN(au)) record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'addon-postall-1signaled', au);
    record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'addon', a);
    if (!Number.isNaN(ab)) record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'addon-postall', ab);
    if (perf) record('rdma', `WRITE bandwidth ${size} B`, 'MB/s', 'perftest', p, { anchor: true });
    human(`${String(size).padEnd(9)} ${p.toFixed(1).padStart(13)} ${a.toFixed(1).padStart(11)} ${(a / p).toFixed(2).padStart(6)}x ${ab.toFixed(1).padStart(12)} ${bp.toFixed(1).padStart(15)} ${au.toFixed(1).padStart(24)} ${(au / p).toFixed(2).padStart(6)}x ${pr.toFixed(1).padStart(14)} ${(pr / p).toFixed(2).padStart(6)}x ${prb.toFixed(1).padStart(24)} ${(prb / p).toFixed(2).padStart(6)}x`);
  }
  const pl = perf ? await perftestLat() : NaN;
  const pp = await addonPingPong(pd, false);
  const ev = await addonLat(pd, false);
  const bp = await addonLat(pd, true);
  const ps = hasPrepared ? addonPingPongSync(pd) : NaN;
  const ls = hasPrepared ? addonLatSync(pd) : { avg: NaN, median: NaN };
  const pt = hasPrepared ? await addonPingPongThreads() : NaN;
  if (hasPrepared) {
    record('rdma', 'WRITE latency 64 B', 'us', 'addon-pingpong-sync', ps, { better: 'lower' });
    record('rdma', 'WRITE latency 64 B', 'us', 'addon-sync-poll', ls.avg, { better: 'lower' });
    record('rdma', 'WRITE latency 64 B', 'us', 'addon-pingpong-threads', pt, { better: 'lower' });
  }
  record('rdma', 'WRITE latency 64 B', 'us', 'addon-pingpong', pp, { better: 'lower' });
  // Not the same measure (see the top of this file): the ratio overstates the addon's cost by about one one-way trip.
  record('rdma', 'WRITE latency 64 B', 'us', 'addon', ev.avg, { better: 'lower' });
  record('rdma', 'WRITE latency 64 B', 'us', 'addon-busypoll', bp.avg, { better: 'lower' });
  if (perf) record('rdma', 'WRITE latency 64 B', 'us', 'perftest', pl, { anchor: true, better: 'lower' });
  human(`64 B latency: ib_write_lat t_avg ${pl.toFixed(1)} us; addon ping-pong (half round trip) ${pp.toFixed(1)} us (${(pp / pl).toFixed(2)}x); ` +
    `post->completion avg ${ev.avg.toFixed(1)} us (median ${ev.median.toFixed(1)}), ` +
    `busy-poll avg ${bp.avg.toFixed(1)} us (median ${bp.median.toFixed(1)}); ratios ${(ev.avg / pl).toFixed(2)}x / ${(bp.avg / pl).toFixed(2)}x`);
  human(`latency path (prepared, postSync + native spin): ping-pong (half round trip) ${ps.toFixed(1)} us (${(ps / pl).toFixed(2)}x); ` +
    `postSync + cq.poll() avg ${ls.avg.toFixed(1)} us (median ${ls.median.toFixed(1)}) (${(ls.avg / pl).toFixed(2)}x); ` +
    `ping-pong with the peer on a worker thread ${pt.toFixed(1)} us (${(pt / pl).toFixed(2)}x)`);
  human(JSON.stringify({ qd: QD, bw: rows, lat: { perftest: pl, pingPong: pp, addon: ev, addonBusyPoll: bp, pingPongSync: ps, syncPoll: ls, pingPongThreads: pt } }));
  pd.close();
  ctx.close();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
