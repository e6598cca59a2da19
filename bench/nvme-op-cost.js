// Per-I/O cost of the NVMe read paths side by side (64 KiB O_DIRECT reads, sync vs
// on the pool, raw binding vs API), in the guest:
//   node dist/cli.js vm run --kernel baseline -- node bench/nvme-op-cost.js
'use strict';
const { Nvme } = require('../dist');
const { native } = require('../dist/core/native');
const fs = require('fs');
(async () => {
  const ns = Nvme.open('/dev/nvme0n1');
  const raw = Buffer.alloc(65536 + 4096); const b = raw.subarray((4096 - raw.byteOffset % 4096) % 4096).subarray(0, 65536);
  const N = 300;
  const fd = fs.openSync('/dev/nvme0n1', fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  const run = async (label, fn) => { for (let i = 0; i < 30; i++) await fn(i); const c0 = process.cpuUsage(); const t0 = process.hrtime.bigint(); for (let i = 0; i < N; i++) await fn(i); const us = Number(process.hrtime.bigint() - t0) / 1e3 / N; const c = process.cpuUsage(c0); console.log(`${label}: ${us.toFixed(0)} us/op wall, ${((c.user + c.system) / N).toFixed(0)} us/op CPU (user ${(c.user/N).toFixed(0)})`); };
  await run('fs.readSync', (i) => fs.readSync(fd, b, 0, 65536, 128 * 2 ** 20 + (i % 64) * 65536));
  await run('Nvme.readSync', (i) => ns.readSync(b, 128 * 2 ** 20 + (i % 64) * 65536));
  await run('native.nvmeIo (pool)', (i) => native.nvmeIo(fd, false, b, 128 * 2 ** 20 + (i % 64) * 65536));
  await run('fs.promises-style fs.read (pool)', (i) => new Promise((res, rej) => fs.read(fd, b, 0, 65536, 128 * 2 ** 20 + (i % 64) * 65536, (e, n) => e ? rej(e) : res(n))));
  await run('Nvme.read (pool + cap)', (i) => ns.read(b, 128 * 2 ** 20 + (i % 64) * 65536));
  ns.close();
})();
