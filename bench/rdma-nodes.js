#!/usr/bin/env node
// RDMA WRITE between two nodes (p2pdma bench --nodes 2 --suites rdma-nodes):
// node A writes into node B's memory over rxe0 on the wire between them,
// through the addon (rdma_cm connect, WRITEs from A's MR into B's) and
// through perftest (ib_write_bw / ib_write_lat, server on B, client on A).
// Bandwidth: SIZES with QD WRITEs in flight. Latency, 64 B: ib_write_lat's
// t_avg (half a ping-pong), the addon's ping-pong measured the same way
// (each side WRITEs, then spins on the bytes the peer WRITEs), and the
// addon's post -> completion time of one WRITE (a round trip with the ACK).
// Node A records the samples; B serves. The two keep in step over a TCP
// control channel (bench/lib/peer.js).
// Env: SIZES, QD, BYTES (per size), LAT_ITERS, DEV.
'use strict';
const { spawn } = require('node:child_process');
const { Rdma } = require(process.env.P2PDMA_DIST ?? '../dist');
const { record, human } = require('./lib/results');
const { Control, role, NODE_ADDR, PEER_ADDR } = require('./lib/peer');
const { keepInFlight } = require('./lib/in-flight');

const CONTROL_PORT = 7401;
const DEV = process.env.DEV ?? 'rxe0';
const SIZES = (process.env.SIZES ?? '4096,65536,1048576').split(',').map(Number);
const QD = Number(process.env.QD ?? 32);
const BYTES = Number(process.env.BYTES ?? 24 << 20);
const LAT_ITERS = Number(process.env.LAT_ITERS ?? 1000);
const CAP = { cqSize: QD * 2 + 8, cap: { maxSendWr: QD * 2, maxRecvWr: 4 } };

const iterationsFor = (size) => Math.max(QD * 2, Math.min(5000, Math.round(BYTES / size)));

function run(tool, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${tool} ${args.join(' ')}: exit ${code}\n${out}`))));
  });
}

function resultLine(out, size) {
  const line = out.split('\n').find((l) => l.trim().split(/\s+/)[0] === String(size));
  if (!line) throw new Error(`no result line for ${size} in:\n${out}`);
  return line.trim().split(/\s+/).map(Number);
}

/** A perftest run across the nodes: the server on B, the client on A; A gets the client's output. */
async function perftest(ctl, tool, args, port) {
  if (role === 'b') {
    const server = run(tool, [...args, '-p', String(port)]);
    // perftest's server must listen on its TCP port before the client connects.
    await new Promise((r) => setTimeout(r, 2000));
    ctl.send({ type: 'perftest-ready' });
    await server;
    return undefined;
  }
  await ctl.expect('perftest-ready');
  return run(tool, [...args, '-p', String(port), PEER_ADDR]);
}

/** One rdma_cm connection, A -> B, with memory of `size` bytes on each side; B's region is sent to A. */
async function connection(ctl, size, bAccess) {
  if (role === 'b') {
    const listener = Rdma.listen({ address: NODE_ADDR, port: 0 });
    const accepted = listener.accept(CAP);
    ctl.send({ type: 'listening', port: listener.port });
    const conn = await accepted;
    listener.close();
    const mem = conn.pd.allocMemorySync(size, { access: bAccess });
    ctl.send({ type: 'region', addr: mem.addr, rkey: mem.rkey, length: size });
    return { conn, mem, remote: undefined };
  }
  const { port } = await ctl.expect('listening');
  const conn = await Rdma.connect({ address: PEER_ADDR, port, ...CAP });
  const mem = conn.pd.allocMemorySync(size, { access: ['local-write', 'remote-write'] });
  const r = await ctl.expect('region');
  return { conn, mem, remote: { addr: BigInt(r.addr), rkey: r.rkey, length: r.length } };
}

async function addonBw(ctl, size) {
  const { conn, mem, remote } = await connection(ctl, size, ['local-write', 'remote-write']);
  try {
    if (role === 'b') {
      await ctl.expect('done');
      return undefined;
    }
    new Uint8Array(mem.mapping.buffer).fill(1);
    const n = iterationsFor(size);
    const wr = { op: 'write', local: mem, remote };
    const t0 = process.hrtime.bigint();
    await keepInFlight(conn.qp, wr, n, QD);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    ctl.send({ type: 'done' });
    return (n * size) / s / 1e6;
  } finally {
    mem.close();
    await conn[Symbol.asyncDispose]();
  }
}

/** ib_write_lat's measure across the wire: A WRITEs 64 B into B, B sees it and WRITEs back; half the round trip. */
async function addonPingPong(ctl) {
  const { conn, mem, remote: toB } = await connection(ctl, 64, ['local-write', 'remote-write']);
  const src = conn.pd.allocMemorySync(64, { access: 'local-write' });
  try {
    let toPeer = toB;
    if (role === 'b') {
      const r = await ctl.expect('region-a');
      toPeer = { addr: BigInt(r.addr), rkey: r.rkey, length: r.length };
    } else {
      ctl.send({ type: 'region-a', addr: mem.addr, rkey: mem.rkey, length: 64 });
    }
    const inView = new Uint8Array(mem.mapping.buffer);
    const out = new Uint8Array(src.mapping.buffer);
    const spin = (seq) => {
      const t = Date.now();
      while (Atomics.load(inView, 63) !== seq) if (Date.now() - t > 10000) throw new Error('ping-pong: no WRITE arrived in 10 s');
    };
    let pending = [];
    const round = async (i) => {
      const seq = (i % 255) + 1;
      if (role === 'b') spin(seq);
      out[63] = seq;
      pending.push(conn.qp.write(src, toPeer));
      if (role === 'a') spin(seq);
      if (pending.length >= 16) {
        await Promise.all(pending);
        pending = [];
      }
    };
    for (let i = 0; i < 50; i++) await round(i);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < LAT_ITERS; i++) await round(i + 50);
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / (2 * LAT_ITERS);
    await Promise.all(pending);
    await (role === 'a' ? ctl.expect('pp-done') : ctl.send({ type: 'pp-done' }));
    return us;
  } finally {
    src.close();
    mem.close();
    await conn[Symbol.asyncDispose]();
  }
}

/** Post -> completion of one 64 B WRITE across the wire (a round trip with the responder's ACK). */
async function addonLat(ctl) {
  const { conn, mem, remote } = await connection(ctl, 64, ['local-write', 'remote-write']);
  try {
    if (role === 'b') {
      await ctl.expect('done');
      return undefined;
    }
    for (let i = 0; i < 50; i++) await conn.qp.write(mem, remote);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < LAT_ITERS; i++) await conn.qp.write(mem, remote);
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / LAT_ITERS;
    ctl.send({ type: 'done' });
    return us;
  } finally {
    mem.close();
    await conn[Symbol.asyncDispose]();
  }
}

async function main() {
  const ctl = await Control.open(CONTROL_PORT);
  human(`# RDMA WRITE between nodes on ${DEV}: node ${role} (${NODE_ADDR}), peer ${PEER_ADDR}, QD ${QD}`);
  if (role === 'a') human('size      perftest MB/s  addon MB/s  ratio');
  let port = 18515;
  for (const size of SIZES) {
    const n = iterationsFor(size);
    const out = await perftest(ctl, 'ib_write_bw', ['-d', DEV, '-s', String(size), '-n', String(n), '-t', String(QD), '-F'], port++);
    const a = await addonBw(ctl, size);
    if (role === 'a') {
      // #bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate; MB = 2^20 bytes
      const p = resultLine(out, size)[3] * 1.048576;
      record('rdma-nodes', `WRITE bandwidth ${size} B`, 'MB/s', 'perftest', p, { anchor: true });
      record('rdma-nodes', `WRITE bandwidth ${size} B`, 'MB/s', 'addon', a);
      human(`${String(size).padEnd(9)} ${p.toFixed(1).padStart(13)} ${a.toFixed(1).padStart(11)} ${(a / p).toFixed(2).padStart(6)}x`);
    }
  }
  const latOut = await perftest(ctl, 'ib_write_lat', ['-d', DEV, '-s', '64', '-n', String(LAT_ITERS), '-F'], port++);
  const pp = await addonPingPong(ctl);
  const pc = await addonLat(ctl);
  if (role === 'a') {
    const pl = resultLine(latOut, 64)[5]; // #bytes #iterations t_min t_max t_typical t_avg
    record('rdma-nodes', 'WRITE latency 64 B', 'us', 'perftest', pl, { anchor: true, better: 'lower' });
    record('rdma-nodes', 'WRITE latency 64 B', 'us', 'addon-pingpong', pp, { better: 'lower' });
    // Not the same measure: a full round trip plus the event loop's wake-up.
    record('rdma-nodes', 'WRITE latency 64 B', 'us', 'addon', pc, { better: 'lower' });
    human(`64 B latency: ib_write_lat t_avg ${pl.toFixed(1)} us; addon ping-pong ${pp.toFixed(1)} us (${(pp / pl).toFixed(2)}x); addon post->completion ${pc.toFixed(1)} us`);
  }
  ctl.close();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
