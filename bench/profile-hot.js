#!/usr/bin/env node
/*
 * Profiles of the hot loops of the missed goals (bench/hot.js), each alone,
 * its timed loop only (V8's profiler through node:inspector, and perf
 * record -p on the process), into DIR/<loop>/; then, on the host,
 * `node dist/harness/harness/bench/profile.js DIR` prints them as Markdown.
 *
 *   node dist/cli.js vm run --rwdir DIR -- node bench/profile-hot.js DIR [loop[:iterations],...] [iterations]
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const [dir, names = 'ioctl-api,ioctl-binding,dmabuf-sync,dmabuf-binding,rdma-write-4k:20000,rdma-postall-4k:20000,nvme-copy-64k:2000', iterations = '200000'] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: node bench/profile-hot.js DIR [loop[:iterations],...] [iterations]\n');
  process.exit(2);
}
let failed = 0;
for (const item of names.split(',')) {
  const [name, n = iterations] = item.split(':');
  // --perf-basic-prof also writes V8's log: into the temporary directory, not the tree.
  const log = path.join(require('node:os').tmpdir(), `p2pdma-v8-${name}.log`);
  const r = spawnSync(process.execPath, ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${log}`, path.join(__dirname, 'hot.js'), name, n], {
    stdio: 'inherit',
    env: { ...process.env, P2PDMA_HOT_PROFILE: path.resolve(dir, name) },
  });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
