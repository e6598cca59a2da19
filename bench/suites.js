#!/usr/bin/env node
/*
 * The suites of `p2pdma bench` and their runner, in one place (the host or
 * the guest, where `p2pdma bench` starts it):
 *
 *   node bench/suites.js --results FILE [--suites ioctl,dmabuf,...]
 *   (in a node of vm run --nodes 2: FILE-a.jsonl / FILE-b.jsonl, one per node)
 *   node bench/suites.js --prepare     compile the C anchors (bench/lib/build-c.js)
 *
 * With P2PDMA_BENCH_PROFILE=DIR (`p2pdma bench --profile`), each suite runs
 * profiled into DIR/<suite>/: every node process it starts with
 * `--cpu-prof` (a .cpuprofile each), and the whole suite under `perf record
 * -e cpu-clock` where the kernel has perf events and perf is installed, its
 * flat `perf report` saved as perf.txt (made here: it needs this machine's
 * JIT maps, from `--perf-basic-prof`, and kallsyms), or why not as
 * perf-unavailable.txt. harness/bench/profile.ts reduces them.
 *
 * Each suite is one of the bench scripts, which measures the addon and its
 * C anchor (or perftest) side by side in the same process tree and appends
 * samples to FILE (bench/lib/results.js). A suite whose device is missing
 * here is recorded as skipped, with why. Human output goes to stderr.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

const hasDir = (d) => fs.existsSync(d) && fs.readdirSync(d).length > 0;
const onPath = (tool) => (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, tool)));
/** Why a two-node suite cannot run here (null in a node of `vm run --nodes 2`). */
const twoNodes = () => (process.env.P2PDMA_NODE_ROLE ? null : 'needs two nodes (p2pdma bench --nodes 2)');
const p2pmemProviders = () =>
  fs.existsSync('/sys/bus/pci/devices')
    ? fs.readdirSync('/sys/bus/pci/devices').filter((d) => fs.existsSync(`/sys/bus/pci/devices/${d}/p2pmem/allocate`)).length
    : 0;

/**
 * name -> { what, command (from the repository root), needs(): why it cannot
 * run here, or null }. The order is the default order.
 */
const SUITES = {
  ioctl: {
    what: 'ioctl round trip: ioctlSync() vs a C loop',
    command: ['node', 'bench/ioctl.js', process.env.IOCTL_ITERATIONS ?? '200000', process.env.IOCTL_ROUNDS ?? '5'],
    needs: () => null,
  },
  dmabuf: {
    what: 'dma-buf CPU access: mapped system-heap buffer, JS vs C',
    command: ['node', 'bench/dmabuf.js', '16', '5000', '3'],
    needs: () => (fs.existsSync('/dev/dma_heap/system') ? null : 'no /dev/dma_heap/system'),
  },
  nvme: {
    what: 'NVMe -> CMB -> NVMe copy: addon vs C (threads) vs C (io_uring)',
    command: ['bench/nvme-p2p-copy.sh'],
    needs: () => (p2pmemProviders() >= 2 ? null : 'fewer than two p2pmem providers (NVMe CMBs)'),
  },
  'mr-reg': {
    what: 'RDMA MR registration time against size, host memory vs device memory (C)',
    command: ['node', 'bench/mr-reg.js'],
    needs: () => (hasDir('/sys/class/infiniband') ? null : 'no RDMA device'),
  },
  'p2p-paths': {
    what: "the series' paths from an MR to device memory (mapping, dma-buf fd): registration, WRITE bandwidth, revocation (C)",
    command: ['node', 'bench/p2p-paths.js'],
    needs: () => (hasDir('/sys/class/infiniband') ? null : 'no RDMA device'),
  },
  rdma: {
    what: 'RDMA WRITE bandwidth and latency: addon vs perftest',
    command: ['node', 'bench/rdma.js'],
    needs: () =>
      !hasDir('/sys/class/infiniband') ? 'no RDMA device' : onPath('ib_write_bw') ? null : 'perftest (ib_write_bw) not installed',
  },
  'rdma-nodes': {
    what: 'RDMA WRITE bandwidth and latency between two nodes: addon vs perftest',
    command: ['node', 'bench/rdma-nodes.js'],
    nodes: true,
    needs: () =>
      twoNodes() ?? (!hasDir('/sys/class/infiniband') ? 'no RDMA device' : onPath('ib_write_bw') ? null : 'perftest (ib_write_bw) not installed'),
  },
  nvmeof: {
    what: 'NVMe-oF (nvmet-rdma) read/write throughput and target CPU per GB, p2pmem on and off',
    command: ['node', 'bench/nvmeof.js'],
    nodes: true,
    needs: () => twoNodes() ?? (fs.existsSync('/sys/kernel/config') && fs.existsSync('/dev/nvme-fabrics') ? null : 'no configfs or /dev/nvme-fabrics (CONFIG_NVME_TARGET_RDMA, CONFIG_NVME_RDMA)'),
  },
};

/** The suites that measure between the two guests of `p2pdma bench --nodes 2`. */
const NODE_SUITES = Object.keys(SUITES).filter((n) => SUITES[n].nodes);
/** The one-guest suites (the default without --nodes 2). */
const DEFAULT_SUITES = Object.keys(SUITES).filter((n) => !SUITES[n].nodes);

let perfWhy;
/** Why `perf record` cannot run here, or null (probed once). */
function perfUnavailable() {
  if (perfWhy === undefined) perfWhy = probePerf();
  return perfWhy;
}

function probePerf() {
  if (!fs.existsSync('/proc/sys/kernel/perf_event_paranoid')) return 'this kernel has no perf events (CONFIG_PERF_EVENTS is off)';
  if (!onPath('perf')) return 'perf is not installed';
  const probe = path.join(os.tmpdir(), `p2pdma-perf-probe-${process.pid}.data`);
  const r = spawnSync('perf', ['record', '-q', '-e', 'cpu-clock', '-o', probe, '--', 'true'], { encoding: 'utf8' });
  fs.rmSync(probe, { force: true });
  return r.status === 0 ? null : `perf record failed: ${(r.stderr || `exit ${r.status}`).trim().split('\n')[0]}`;
}

/**
 * The suite's command and environment made to profile into DIR/<name>, and
 * what to do once it has run (turn perf.data into perf.txt).
 */
function profiled(name, command, env, profileDir) {
  const dir = path.resolve(profileDir, name);
  fs.mkdirSync(dir, { recursive: true });
  // Node 20 refuses --cpu-prof in NODE_OPTIONS: a `node` first on PATH adds
  // the flags to every node process the suite starts by name.
  const shimDir = path.join(dir, '.bin');
  fs.mkdirSync(shimDir, { recursive: true });
  const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
  fs.writeFileSync(
    path.join(shimDir, 'node'),
    // --perf-basic-prof also writes V8's log: into the temporary directory, not the tree.
    `#!/bin/sh\nexec ${q(process.execPath)} --cpu-prof --cpu-prof-dir=${q(dir)} --perf-basic-prof --no-logfile-per-isolate --logfile=${q(path.join(os.tmpdir(), `p2pdma-v8-${name}.log`))} "$@"\n`,
    { mode: 0o755 },
  );
  const profEnv = { ...env, PATH: `${shimDir}:${env.PATH ?? ''}` };
  const why = perfUnavailable();
  if (why) {
    fs.writeFileSync(path.join(dir, 'perf-unavailable.txt'), `${why}\n`);
    return { command, env: profEnv, after: () => {} };
  }
  // perf.data in the local temporary directory (it can be large; the
  // results directory may be a share of the host's).
  const data = path.join(os.tmpdir(), `p2pdma-bench-${name}-${process.pid}.perf.data`);
  const after = () => {
    const r = spawnSync('perf', ['report', '-i', data, '--stdio', '-t', '|', '--sort', 'comm,dso,sym', '--percent-limit', '0.1'], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    fs.writeFileSync(path.join(dir, r.status === 0 ? 'perf.txt' : 'perf-unavailable.txt'), r.status === 0 ? r.stdout : `perf report failed: ${r.stderr.trim()}\n`);
    fs.rmSync(data, { force: true });
  };
  return { command: ['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '999', '-o', data, '--', ...command], env: profEnv, after };
}

/** Runs the named suites, appending their samples (and skips, failures) to `results`. */
function runSuites(names, results) {
  // Each node of a two-node run writes its own file (FILE-a.jsonl, FILE-b.jsonl).
  const role = process.env.P2PDMA_NODE_ROLE;
  if (role) results = results.replace(/(\.jsonl)?$/, `-${role}$1`);
  const note = (obj) => fs.appendFileSync(results, `${JSON.stringify(obj)}\n`);
  note({ place: { kernel: os.release(), node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '?' } });
  let failed = 0;
  for (const name of names) {
    const suite = SUITES[name];
    if (!suite) throw new Error(`unknown suite '${name}' (${DEFAULT_SUITES.join(', ')})`);
    const why = suite.needs();
    if (why) {
      process.stderr.write(`[bench] ${name}: skipped: ${why}\n`);
      note({ suite: name, skipped: why });
      continue;
    }
    process.stderr.write(`[bench] ${name}: ${suite.what}\n`);
    let run = { command: suite.command, env: { ...process.env, P2PDMA_BENCH_RESULTS: path.resolve(results) }, after: () => {} };
    if (process.env.P2PDMA_BENCH_PROFILE) run = profiled(name, run.command, run.env, process.env.P2PDMA_BENCH_PROFILE);
    const r = spawnSync(run.command[0], run.command.slice(1), { cwd: root, stdio: ['ignore', 2, 2], env: run.env });
    run.after();
    // A suite between nodes that failed on one node leaves the other waiting: the harness stops both.
    if (r.status !== 0) {
      failed++;
      note({ suite: name, failed: `exit ${r.status ?? r.signal}` });
    }
  }
  return failed;
}

if (require.main === module) {
  const { parseArgs } = require('node:util');
  const { values } = parseArgs({ options: { results: { type: 'string' }, suites: { type: 'string' }, prepare: { type: 'boolean' } } });
  if (values.prepare) {
    const { buildC, ANCHORS } = require('./lib/build-c');
    for (const [source, name] of Object.values(ANCHORS)) buildC(source, name);
    process.exit(0);
  }
  if (!values.results) {
    process.stderr.write('usage: node bench/suites.js --results FILE [--suites a,b]\n');
    process.exit(2);
  }
  const names = values.suites ? values.suites.split(',') : DEFAULT_SUITES;
  process.exitCode = runSuites(names, values.results) ? 1 : 0;
}

module.exports = { SUITES, DEFAULT_SUITES, NODE_SUITES, runSuites, perfUnavailable, profiled };
