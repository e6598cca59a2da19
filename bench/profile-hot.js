#!/usr/bin/env node
/*
 * Profiles of the hot loops of the missed goals (bench/hot.js), each alone
 * under node --cpu-prof and perf record (as `p2pdma bench --profile` runs a
 * suite: bench/suites.js), into DIR/<loop>/; then, on the host,
 * `node dist/harness/harness/bench/profile.js DIR` prints them as Markdown.
 *
 *   node dist/cli.js vm run --rwdir DIR -- node bench/profile-hot.js DIR [loop[:iterations],...] [iterations]
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { profiled } = require('./suites');

const [dir, names = 'ioctl-api,ioctl-binding,dmabuf-sync,dmabuf-binding,rdma-write-4k:20000,rdma-postall-4k:20000', iterations = '200000'] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: node bench/profile-hot.js DIR [loop[:iterations],...] [iterations]\n');
  process.exit(2);
}
let failed = 0;
for (const item of names.split(',')) {
  const [name, n = iterations] = item.split(':');
  const run = profiled(name, ['node', path.join(__dirname, 'hot.js'), name, n], { ...process.env }, dir);
  const r = spawnSync(run.command[0], run.command.slice(1), { stdio: 'inherit', env: run.env });
  run.after();
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
