// memfd(): anonymous memory files.
import t from 'tap';
import * as fs from 'node:fs';

import { Fd, memfd } from '../lib/index';
import { expectCode, leakGuard } from './helpers';

const leaks = leakGuard();

t.test('memfd() returns an Fd on an empty memfd with the given name', async (t) => {
  using m = memfd('p2pdma-test-memfd');
  t.type(m, Fd);
  t.equal(fs.readlinkSync(`/proc/self/fd/${m.fd}`), '/memfd:p2pdma-test-memfd (deleted)');
  t.equal(fs.fstatSync(m.fd).size, 0);
  const flags = fs.readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8').match(/flags:\s+(\d+)/)![1];
  t.ok(parseInt(flags, 8) & 0o2000000, 'close-on-exec by default');
});

t.test('memfd() without cloexec and with sealing', async (t) => {
  using m = memfd('p2pdma-test-memfd', { cloexec: false, allowSealing: true });
  const info = fs.readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8');
  t.notOk(parseInt(info.match(/flags:\s+(\d+)/)![1], 8) & 0o2000000, 'no close-on-exec');
});

t.test('memfd() validates its name', async (t) => {
  t.throws(() => memfd(1 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => memfd('x'.repeat(300)), { code: 'EINVAL', syscall: 'memfd_create' }, 'too long for the kernel');
});

leaks.check(t);
