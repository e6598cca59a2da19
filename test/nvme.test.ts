// Nvme on the host: status decoding, what open() refuses, the in-flight cap,
// and the native I/O primitive on a plain file. The device paths (identify,
// O_DIRECT, passthrough, P2P) are tested in the guest (test/guest/nvme.test.ts).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Nvme, nvmeStatus } from '../lib/index';
import { native } from '../lib/native';
import { expectCode, leakGuard, TEST_PREFIX } from './helpers';

const leaks = leakGuard();

t.test('nvmeStatus() names generic, command-specific and media statuses', async (t) => {
  t.match(nvmeStatus(0x4001), { statusCodeType: 0, statusCode: 1, name: 'INVALID_OPCODE', description: 'Invalid Command Opcode', dnr: true, more: false });
  t.match(nvmeStatus(0x000b), { name: 'INVALID_NS', dnr: false });
  t.match(nvmeStatus(0x4080), { name: 'LBA_RANGE' });
  t.match(nvmeStatus(0x0182), { statusCodeType: 1, name: 'READ_ONLY' });
  t.match(nvmeStatus(0x0281), { statusCodeType: 2, name: 'READ_ERROR' });
  t.match(nvmeStatus(0x07c1), { statusCodeType: 7, name: 'SCT7_SC0xc1', description: /vendor specific/ });
  t.match(nvmeStatus(0x2002), { more: true, name: 'INVALID_FIELD' });
  t.throws(() => nvmeStatus(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => nvmeStatus(1.5), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
});

t.test('open() refuses what is not an NVMe device, and closes what it opened', async (t) => {
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-nvme-file`);
  fs.writeFileSync(file, Buffer.alloc(4096));
  t.teardown(() => fs.rmSync(file, { force: true }));
  t.throws(() => Nvme.open('/dev/null'), { code: 'ERR_P2PDMA_NOT_NVME', message: /\/dev\/null is not an NVMe namespace or controller/ });
  t.throws(() => Nvme.open(file), { code: 'ERR_P2PDMA_NOT_NVME' });
  t.throws(() => Nvme.open('/nonexistent/nvme0n1'), { code: 'ENOENT', syscall: 'stat' });
  t.throws(() => Nvme.open(7 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Nvme.open('/dev/null', { readOnly: 1 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Nvme.open('/dev/null', null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('maxInFlight defaults to half the thread pool and refuses nonsense', async (t) => {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  t.equal(Nvme.maxInFlight, Math.max(1, Math.floor(pool / 2)));
  const old = Nvme.maxInFlight;
  Nvme.maxInFlight = 8;
  t.equal(Nvme.maxInFlight, 8);
  Nvme.maxInFlight = old;
  t.throws(() => (Nvme.maxInFlight = 0), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => (Nvme.maxInFlight = 1.5), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => (Nvme.maxInFlight = '2' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.same(Nvme.queue, { inFlight: 0, waiting: 0 });
});

t.test('the native I/O primitive reads and writes a whole view in place, sync and on the pool', async (t) => {
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-nvme-io`);
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  });
  const data = Buffer.from('0123456789abcdef'.repeat(256));
  t.equal(native.nvmeIoSync(fd, true, data, 4096), data.length);
  const back = Buffer.alloc(data.length);
  t.equal(await native.nvmeIo(fd, false, back, 4096n), data.length);
  t.ok(back.equals(data), 'bytes round-trip');
  const tail = new Uint8Array(8192);
  t.equal(native.nvmeIoSync(fd, false, tail, 4096), 4096, 'a short read at EOF returns what there was');
  await t.rejects(native.nvmeIo(999, false, back, 0), { sysErrno: 9, syscall: 'read' }, 'EBADF from the pool');
  t.throws(() => native.nvmeIoSync(fd, false, {} as never, 0), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => native.nvmeIoSync(fd, false, back, 2 ** 63 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.equal(native.viewAddress(back.subarray(3)) - native.viewAddress(back), 3);
});

t.test('no fd or mapping leaked', async (t) => leaks.check(t));
