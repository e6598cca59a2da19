// The error model: Node-style system errors and errno names from the C library.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as util from 'node:util';

import { errnoDescription, errnoFromName, errnoName, sysError } from '../../lib';
import { abortError, closedError, describeReceived, fromNative, invalidArgType, outOfRange } from '../../lib/core/errors';
import { native } from '../../lib/core/native';
import { expectCode, repoRoot, report, runTs } from '../helpers';

const ALIASES = ['EWOULDBLOCK', 'EDEADLOCK', 'ENOTSUP'];

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

t.test('every errno Node names has the same number and name here', async (t) => {
  for (const [name, n] of Object.entries(os.constants.errno)) {
    t.equal(errnoFromName(name), n, `errnoFromName('${name}')`);
    if (!ALIASES.includes(name)) t.equal(errnoName(n), name, `errnoName(${n})`);
  }
});

t.test("where Node and the C library agree on the name, the description is Node's", async (t) => {
  let agreed = 0;
  for (const [negative, [name, desc]] of util.getSystemErrorMap()) {
    if (negative >= 0 || negative < -4095 || errnoName(negative) !== name) continue;
    t.equal(util.getSystemErrorName(negative), name);
    t.equal(errnoDescription(-negative), desc, `${name} (${-negative})`);
    agreed++;
  }
  t.ok(agreed >= 60, `${agreed} codes agree`);
});

t.test('codes libuv does not name come from the C library, descriptions lower-cased', async (t) => {
  t.equal(util.getSystemErrorMap().get(-62), undefined, 'libuv has no ETIME');
  t.equal(errnoName(62), 'ETIME');
  t.equal(errnoDescription(62), 'timer expired');
  t.equal(errnoName(77), 'EBADFD');
  t.equal(errnoDescription(77), 'file descriptor in bad state');
  t.equal(errnoName(133), 'EHWPOISON');
  t.equal(errnoDescription(117), 'structure needs cleaning');
  t.equal(errnoDescription(73), 'RFS specific error', 'an acronym keeps its case');
  t.equal(errnoFromName('EHWPOISON'), 133);
});

t.test('the kernel-internal codes no C library names are still named', async (t) => {
  t.same(native.errnoTable().names[524], undefined, 'the C library has no name for 524');
  t.equal(errnoName(524), 'ENOTSUPP');
  t.equal(errnoName(517), 'EPROBE_DEFER');
  t.equal(errnoName(512), 'ERESTARTSYS');
  t.equal(errnoName(529), 'EIOCBQUEUED');
  t.equal(errnoFromName('ENOTSUPP'), 524);
  t.equal(sysError(524, 'ioctl').message, 'ENOTSUPP: operation is not supported (kernel internal ENOTSUPP), ioctl');
});

t.test("without strerrorname_np (musl, old glibc) names come from Node's errno constants", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-test-errors-'));
  const main = path.join(dir, 'main.ts');
  fs.writeFileSync(
    main,
    `const { native } = require(${JSON.stringify(path.join(repoRoot, 'lib/core/native'))});
     const table = native.errnoTable();
     native.errnoTable = () => ({ names: [], descriptions: table.descriptions });
     const e = require(${JSON.stringify(path.join(repoRoot, 'lib/core/errors'))});
     console.log(JSON.stringify([e.errnoName(25), e.errnoDescription(25), e.errnoName(62), e.errnoDescription(62),
       e.errnoName(524), e.errnoName(77), e.errnoDescription(77)]));`,
  );
  const out = report<string[]>(runTs(main));
  fs.rmSync(dir, { recursive: true, force: true });
  t.same(out, ['ENOTTY', 'inappropriate ioctl for device', 'ETIME', 'timer expired', 'ENOTSUPP', 'E77', 'file descriptor in bad state']);
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

t.test('errno functions and sysError refuse arguments of the wrong type or range with Node codes', async (t) => {
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => errnoName(2n ** 200n as never), type, 'errnoName(bigint): was a TypeError from Math.abs, without code');
  t.throws(() => errnoName(Symbol() as never), type);
  t.throws(() => errnoName(NaN), range);
  t.throws(() => errnoName(2 ** 53), range);
  t.throws(() => errnoDescription('9' as never), type);
  t.throws(() => errnoDescription(0.5), range);
  t.throws(() => errnoFromName(9 as never), type);
  t.throws(() => sysError(2n as never, 'open'), type);
  t.throws(() => sysError(2, Symbol() as never), type, 'syscall: a Symbol in the message template threw without code');
  t.throws(() => sysError(2, 'open', null as never), type, 'ctx null');
  t.throws(() => sysError(2, 'open', { request: Symbol() as never }), type);
  t.throws(() => sysError(2, 'open', { fd: '3' as never }), type);
  t.throws(() => sysError(2, 'open', {}, 'caller' as never), type);
  t.equal(sysError(-2, 'open', { path: '/x' }).message, "ENOENT: no such file or directory, open '/x'", 'valid calls unchanged');
});

t.test('describing a received value never throws: Proxies and odd names get a plain description', async (t) => {
  const hostile = new Proxy(
    {},
    {
      get() {
        throw new Error('hostile getter');
      },
    },
  );
  t.equal(describeReceived(hostile), 'an object');
  t.equal(describeReceived(new Proxy({}, { get: () => Symbol('s') })), 'an object', 'a Symbol constructor name');
  const f = Object.defineProperty(() => {}, 'name', { value: Symbol('n') });
  t.equal(describeReceived(f), 'function <anonymous>');
  t.throws(() => errnoName(hostile as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test("abortError looks like the AbortError of Node's own APIs", async (t) => {
  const reason = new Error('why');
  const e = abortError(reason);
  const ac = new AbortController();
  ac.abort(reason);
  const node = await fs.promises.readFile('/dev/null', { signal: ac.signal }).catch((err: unknown) => err as Error & { code: string });
  t.equal(e.name, node.name);
  t.equal(e.code, node.code);
  t.equal(e.message, node.message);
  t.equal(e.cause, reason);
});
