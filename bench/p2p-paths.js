#!/usr/bin/env node
/*
 * The p2p-paths suite: bench/p2p-paths.sh's C program (the kernel series'
 * ways from an RDMA MR to device memory: registration cost, WRITE bandwidth,
 * revocation under an MR), its rows read back as samples for `p2pdma bench`.
 * C only: the addon registers through these same calls; the kernels (v3 on
 * 7.3, v2 on 6.12, stock) are what the suite compares. Host memory is the
 * anchor of each metric; what a kernel refuses is in the human output.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { record, human } = require('./lib/results');

const r = spawnSync(path.join(__dirname, 'p2p-paths.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
human(r.stdout.trimEnd());
if (r.status !== 0) process.exit(r.status ?? 1);
const METRICS = {
  'reg-64KiB': ['reg+dereg 64 KiB', 'lower'],
  'reg-1024KiB': ['reg+dereg 1 MiB', 'lower'],
  'reg-16384KiB': ['reg+dereg 16 MiB', 'lower'],
  'write-64KiB': ['RDMA WRITE 64 KiB QD 16', 'higher'],
  'revoke-call': ['revoke call under an MR', 'lower'],
  'revoke-to-error': ['revoke to failed WRITE', 'lower'],
  'revoke-to-next-write': ['revoke to next landed WRITE', 'lower'],
};
for (const line of r.stdout.split('\n')) {
  const [tag, metric, way, memory, value, unit] = line.trim().split(/\s+/);
  if (tag !== 'p2p-paths' || !METRICS[metric] || !/^[\d.]+$/.test(value ?? '')) continue;
  const [name, better] = METRICS[metric];
  const anchor = memory === 'host';
  record('p2p-paths', name, unit, anchor ? 'host memory' : `${memory} (${way})`, Number(value), { anchor, better });
}
