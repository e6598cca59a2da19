// The error model: Node-style system errors and our errno table.
import t from 'tap';
import * as util from 'node:util';

import { errnoDescription, errnoFromName, errnoName, sysError } from '../lib/index';
import { closedError, fromNative, invalidArgType, outOfRange } from '../lib/errors';

t.test('errno names follow the kernel and glibc, not libuv', async (t) => {
  t.equal(errnoName(95), 'EOPNOTSUPP', '95 is EOPNOTSUPP (libuv says ENOTSUP)');
  t.equal(errnoName(-95), 'EOPNOTSUPP', 'negative errnos work too');
  t.equal(errnoName(121), 'EREMOTEIO');
  t.equal(errnoName(62), 'ETIME');
  t.equal(errnoName(77), 'EBADFD');
  t.equal(errnoName(524), 'ENOTSUPP', "the kernel's internal ENOTSUPP");
  t.equal(errnoName(9999), 'E9999', 'unknown numbers get a stable name');
  t.equal(errnoFromName('ENOTSUP'), 95, 'ENOTSUP is an alias of 95');
  t.equal(errnoFromName('EWOULDBLOCK'), 11);
});

t.test('descriptions are lower-case and match Node where Node knows the code', async (t) => {
  for (const n of [2, 9, 13, 22, 25]) {
    const [code, desc] = util.getSystemErrorMap().get(-n)!;
    t.equal(errnoName(n), code, `${n} name`);
    t.equal(errnoDescription(n), desc, `${code} description`);
  }
  for (const n of [62, 77, 95, 121, 524]) {
    const d = errnoDescription(n);
    t.ok(d.length > 0 && d[0] === d[0].toLowerCase(), `${errnoName(n)}: '${d}'`);
  }
  t.equal(errnoDescription(95), 'operation not supported');
  t.match(errnoDescription(524), /not supported/);
});

t.test('sysError has Node fs error shape', async (t) => {
  const e = sysError(25, 'ioctl', { fd: 7, request: 'DMA_BUF_IOCTL_SYNC' });
  t.equal(Object.getPrototypeOf(e), Error.prototype, 'a plain Error');
  t.equal(e.message, 'ENOTTY: inappropriate ioctl for device, ioctl DMA_BUF_IOCTL_SYNC');
  t.same(Object.keys(e), ['errno', 'code', 'syscall', 'fd', 'request']);
  t.equal(e.errno, -25);
  t.equal(e.code, 'ENOTTY');
  t.equal(e.syscall, 'ioctl');
  t.equal(e.fd, 7);
  t.equal(e.request, 'DMA_BUF_IOCTL_SYNC');
});

t.test('sysError with a path words it like fs', async (t) => {
  const e = sysError(2, 'open', { path: '/dev/udmabuf' });
  t.equal(e.message, "ENOENT: no such file or directory, open '/dev/udmabuf'");
  t.equal(e.path, '/dev/udmabuf');
});

t.test('fromNative converts the native error and passes others through', async (t) => {
  const native = Object.assign(new Error('errno 9'), { sysErrno: 9, syscall: 'mmap', fd: 3 });
  const e = fromNative(native) as Error & { code: string; errno: number; fd: number };
  t.equal(e.message, 'EBADF: bad file descriptor, mmap');
  t.equal(e.errno, -9);
  t.equal(e.fd, 3);
  const other = new TypeError('x');
  t.equal(fromNative(other), other);
});

t.test('argument errors carry Node codes and wording', async (t) => {
  const a = invalidArgType('fd', 'of type number', 'x');
  t.type(a, TypeError);
  t.equal(a.code, 'ERR_INVALID_ARG_TYPE');
  t.equal(a.message, `The "fd" argument must be of type number. Received type string ('x')`);
  const r = outOfRange('length', '> 0', 0);
  t.type(r, RangeError);
  t.equal(r.code, 'ERR_OUT_OF_RANGE');
  t.equal(r.message, 'The value of "length" is out of range. It must be > 0. Received 0');
  const c = closedError('Mapping');
  t.equal(c.code, 'ERR_P2PDMA_CLOSED');
});
