#!/usr/bin/env node
/*
 * One hot loop of a missed goal, alone, for a profiler to look at
 * (bench/profile-hot.js runs each under node --cpu-prof and perf):
 *
 *   node bench/hot.js NAME [iterations]      prints ns per operation
 *
 *   ioctl-api        ioctlSync(fd, FIONREAD, Int32Array) through the exports
 *   ioctl-binding    the raw binding under it (native.ioctlView)
 *   dmabuf-sync      buf.beginCpuAccess('rw').end() on a system-heap dma-buf
 *   dmabuf-binding   the raw binding under it (native.dmabufSync x 2)
 *   rdma-write-4k    4 KiB RDMA WRITEs on rxe0, 32 in flight, a promise each
 *                    (bench/rdma.js's addon loop: a chain per CQ drain)
 *   rdma-postall-4k  the same as qp.postAll() batches of 8
 *   rdma-prepared-4k the same as prepared.post(8) chains (qp.prepare())
 *   rdma-pingpong    64 B ping-pong with postSync() + mr.pollByte() (the
 *                    latency path; an operation is one half round trip)
 *   nvme-copy-64k    NVMe -> CMB -> NVMe, 64 KiB, one copy in flight
 *                    (bench/nvme-p2p-copy.js's addon P2P at QD 1; writes
 *                    [160 MiB, 192 MiB) of the second namespace)
 *
 * Uses dist/ (or P2PDMA_DIST, another build's dist/index.js).
 */
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { openPipe } = require('./lib/fifo');
const { keepInFlight } = require('./lib/in-flight');

const dist = path.dirname(path.resolve(process.env.P2PDMA_DIST ?? path.join(__dirname, '..', 'dist', 'index.js')));
const api = require(dist);
const { native } = require(path.join(dist, 'core', 'native.js'));


/** name -> () => (n) => void: set up, then the loop. */
const LOOPS = {
  'ioctl-api': () => {
    const { r } = openPipe();
    const count = new Int32Array(1);
    const FIONREAD = api.requests.FIONREAD;
    return (n) => {
      for (let i = 0; i < n; i++) api.ioctlSync(r, FIONREAD, count);
    };
  },
  'ioctl-binding': () => {
    const { r } = openPipe();
    const count = new Int32Array(1);
    const FIONREAD = api.requests.FIONREAD;
    return (n) => {
      for (let i = 0; i < n; i++) native.ioctlView(r, FIONREAD, count);
    };
  },
  'dmabuf-sync': () => {
    const buf = api.DmaHeap.open('system').allocSync(1 << 20);
    return (n) => {
      for (let i = 0; i < n; i++) buf.beginCpuAccess('rw').end();
    };
  },
  'dmabuf-binding': () => {
    const buf = api.DmaHeap.open('system').allocSync(1 << 20);
    const fd = buf.fd;
    return (n) => {
      for (let i = 0; i < n; i++) {
        native.dmabufSync(fd, 3); // START | READ | WRITE
        native.dmabufSync(fd, 7); // END | READ | WRITE
      }
    };
  },
};

/** A loopback pair and two 4 KiB MRs on rxe0, and their teardown. */
function rdmaPair() {
  const ctx = api.Rdma.open(process.env.DEV ?? 'rxe0');
  const pd = ctx.allocPd();
  const [a, b] = api.Rdma.loopbackPair(pd, { cqSize: 80, cap: { maxSendWr: 32, maxRecvWr: 1 } });
  const src = pd.allocMemorySync(4096, { access: 'local-write' });
  const dst = pd.allocMemorySync(4096, { access: ['local-write', 'remote-write'] });
  return { a, b, pd, wr: { op: 'write', local: src, remote: dst } };
}

LOOPS['rdma-write-4k'] = () => {
  const { a, wr } = rdmaPair();
  return (n) => keepInFlight(a, wr, n, 32);
};

LOOPS['rdma-postall-4k'] = () => {
  const { a, wr } = rdmaPair();
  const batch = new Array(8).fill(wr);
  return async (n) => {
    let posted = 0;
    const lane = async () => {
      while (posted < n) {
        posted += 8;
        await a.postAll(batch);
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
  };
};

LOOPS['rdma-prepared-4k'] = () => {
  const { a, wr } = rdmaPair();
  const w = a.prepare(wr);
  return async (n) => {
    let posted = 0;
    const lane = async () => {
      while (posted < n) {
        posted += 8;
        await w.post(8);
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
  };
};

LOOPS['rdma-pingpong'] = () => {
  const { pd } = rdmaPair();
  const cq = pd.context.createCq(64);
  const cap = { maxSendWr: 32, maxRecvWr: 1, maxInlineData: 64 };
  const a = pd.createQp({ sendCq: cq, cap });
  const b = pd.createQp({ sendCq: cq, cap });
  a.connect(b.info());
  b.connect(a.info());
  const [srcA, srcB, inA, inB] = [0, 1, 2, 3].map(() => pd.allocMemorySync(64, { access: ['local-write', 'remote-write'] }));
  const [sa, sb] = [srcA, srcB].map((m) => new Uint8Array(m.mapping.buffer));
  const wa = a.prepare({ op: 'write', local: srcA, remote: inB, inline: true });
  const wb = b.prepare({ op: 'write', local: srcB, remote: inA, inline: true });
  const timeout = { timeout: 10000 };
  return (n) => {
    for (let i = 0; i < n; i += 2) {
      const seq = ((i >> 1) % 255) + 1;
      sa[63] = seq;
      wa.postSync();
      inB.pollByte(63, seq, timeout);
      sb[63] = seq;
      wb.postSync();
      inA.pollByte(63, seq, timeout);
    }
  };
};

LOOPS['nvme-copy-64k'] = () => {
  const { Nvme, P2pMem } = api;
  const [a, b] = P2pMem.providers();
  const ns = (p) => `/dev/${fs.readdirSync(path.join(p.sysfsPath, 'nvme'))[0]}n1`;
  const src = Nvme.open(ns(a));
  const dst = Nvme.open(ns(b));
  const cmb = P2pMem.allocate(b, 65536);
  const base = 160 << 20;
  Nvme.maxInFlight = 1;
  return async (n) => {
    for (let i = 0; i < n; i++) {
      const at = base + (i % 512) * 65536;
      await src.read(cmb, at, 65536);
      await dst.write(cmb, at, 65536);
    }
  };
};

/**
 * P2PDMA_HOT_PROFILE=DIR: profile the timed loop only (not the start-up,
 * which under TCG takes seconds), twice: under V8's CPU profiler through
 * node:inspector (DIR/hot.cpuprofile), then, where perf works, under `perf
 * record -p` on this process (DIR/perf.txt, reported here: run node with
 * --perf-basic-prof so JIT frames have names). Not both at once: V8's
 * sampler interrupts the thread with a signal every millisecond, and under
 * TCG delivering those shows in perf as a fifth of the time
 * (irqentry_exit_to_user_mode).
 */
async function profileV8(dir, run) {
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((res, rej) => session.post(method, params, (e, r) => (e ? rej(e) : res(r))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 1000 });
  await post('Profiler.start');
  await run();
  const { profile } = await post('Profiler.stop');
  fs.writeFileSync(path.join(dir, 'hot.cpuprofile'), JSON.stringify(profile));
  session.disconnect();
}

async function profilePerf(dir, run) {
  const { spawn, spawnSync } = require('node:child_process');
  const why = require('./suites').perfUnavailable();
  if (why) {
    fs.writeFileSync(path.join(dir, 'perf-unavailable.txt'), `${why}\n`);
    return;
  }
  const data = path.join(os.tmpdir(), `p2pdma-hot-${process.pid}.perf.data`);
  const perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '999', '-p', String(process.pid), '-o', data], { stdio: 'ignore' });
  // perf needs a moment to attach.
  await new Promise((r) => setTimeout(r, 1500));
  await run();
  await new Promise((r) => {
    perf.on('close', r);
    perf.kill('SIGINT');
  });
  const r = spawnSync('perf', ['report', '-i', data, '--stdio', '-t', '|', '--sort', 'dso,sym', '--percent-limit', '0.1'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  // --sort dso,sym: the command column is always node here.
  const text = r.stdout.replace(/^( *[\d.]+%\s*\|)/gm, '$1node|');
  fs.writeFileSync(path.join(dir, r.status === 0 ? 'perf.txt' : 'perf-unavailable.txt'), r.status === 0 ? text : `perf report failed: ${r.stderr.trim()}\n`);
  fs.rmSync(data, { force: true });
}

async function main() {
  const [name, iterations = '200000'] = process.argv.slice(2);
  if (!LOOPS[name]) {
    process.stderr.write(`usage: node bench/hot.js ${Object.keys(LOOPS).join('|')} [iterations]\n`);
    process.exit(2);
  }
  const loop = LOOPS[name]();
  const n = Number(iterations);
  await loop(Math.min(n, 20000)); // warm up the JIT
  let ns = 0;
  const timed = async () => {
    const t0 = process.hrtime.bigint();
    await loop(n);
    ns = Number(process.hrtime.bigint() - t0) / n;
  };
  const dir = process.env.P2PDMA_HOT_PROFILE;
  if (dir) {
    fs.mkdirSync(dir, { recursive: true });
    await timed();
    const plain = ns;
    await profileV8(dir, timed);
    const underV8 = ns;
    await profilePerf(dir, timed);
    console.log(`${name}: ${plain.toFixed(1)} ns/op, ${underV8.toFixed(1)} under V8's profiler, ${ns.toFixed(1)} under perf (${n} iterations, ${dist})`);
  } else {
    await timed();
    console.log(`${name}: ${ns.toFixed(1)} ns/op (${n} iterations, ${dist})`);
  }
  // The RDMA loops leave their resources to process exit.
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
