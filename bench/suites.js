#!/usr/bin/env node
/*
 * The suites of `p2pdma bench` and their runner, in one place (the host or
 * the guest, where `p2pdma bench` starts it):
 *
 *   node bench/suites.js --results FILE [--suites ioctl,dmabuf,...]
 *   (in a node of vm run --nodes 2: FILE-a.jsonl / FILE-b.jsonl, one per node)
 *   node bench/suites.js --prepare     compile the C anchors (bench/lib/build-c.js)
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
    const r = spawnSync(suite.command[0], suite.command.slice(1), {
      cwd: root,
      stdio: ['ignore', 2, 2],
      env: { ...process.env, P2PDMA_BENCH_RESULTS: path.resolve(results) },
    });
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

module.exports = { SUITES, DEFAULT_SUITES, NODE_SUITES, runSuites };
