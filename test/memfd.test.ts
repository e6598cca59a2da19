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

t.test('memfd() with allowSealing is close-on-exec too', async (t) => {
  using m = memfd('p2pdma-test-memfd', { allowSealing: true });
  const flags = fs.readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8').match(/flags:\s+(\d+)/)![1];
  t.ok(parseInt(flags, 8) & 0o2000000);
});

t.test('memfd() refuses cloexec: false (a memfd never leaks into children)', async (t) => {
  t.throws(() => memfd('p2pdma-test-memfd', { cloexec: false as never }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: "The argument 'options.cloexec' must be true: memfds are always close-on-exec. Received false",
  });
});

t.test('memfd() validates its name', async (t) => {
  t.throws(() => memfd(1 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => memfd('x'.repeat(300)), { code: 'EINVAL', syscall: 'memfd_create' }, 'too long for the kernel');
});

leaks.check(t);
