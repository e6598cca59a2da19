#!/usr/bin/env node
/*
 * The mr-reg suite: bench/mr-reg.sh's C program (MR registration time
 * against size, host memory vs a device BAR), its table read back as
 * samples for `p2pdma bench`. C only: the addon's registration is this same
 * ibv_reg_mr call; the kernels are what the suite compares.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { record, human } = require('./lib/results');

const r = spawnSync(path.join(__dirname, 'mr-reg.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
human(r.stdout.trimEnd());
if (r.status !== 0) process.exit(r.status ?? 1);
let memory = '';
for (const line of r.stdout.split('\n')) {
  if (line.startsWith('== ')) memory = line.includes('ivshmem') ? 'ivshmem' : 'cmb';
  const cells = line.trim().split(/\s+/);
  if (!/^\d+$/.test(cells[0] ?? '')) continue;
  const bytes = Number(cells[0]);
  const size = bytes >= 1 << 20 ? `${bytes >> 20} MiB` : `${bytes >> 10} KiB`;
  const [host, dev] = cells.slice(1).map(Number);
  if (Number.isFinite(host)) record('mr-reg', `${size} (${memory})`, 'us', 'host-gup', host, { anchor: true, better: 'lower' });
  if (Number.isFinite(dev)) record('mr-reg', `${size} (${memory})`, 'us', 'device-p2p', dev, { better: 'lower' });
}
