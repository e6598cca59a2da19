// Udmabuf on the host (no /dev/udmabuf here; creation is tested in the
// guest): what it checks before the kernel, and that a failed creation
// leaves no memfd behind.
import t from 'tap';
import * as fs from 'node:fs';

import { Fd, memfd, Udmabuf } from '../../lib';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();
const hostHasUdmabuf = fs.existsSync('/dev/udmabuf');
const S = native.sealConstants;

function sealed(size: number, seals = S.F_SEAL_SHRINK): Fd {
  const m = memfd(TEST_PREFIX, { allowSealing: true });
  fs.ftruncateSync(m.fd, size);
  native.addSeals(m.fd, seals);
  return m;
}

t.test('without /dev/udmabuf creation is ENOENT saying why, and the memfd it made is closed', { skip: hostHasUdmabuf && 'this host has udmabuf' }, async (t) => {
  t.throws(() => Udmabuf.createSync({ size: 4096 }), { code: 'ENOENT', path: '/dev/udmabuf', message: /no udmabuf: CONFIG_UDMABUF/ });
  await t.rejects(Udmabuf.create({ size: 8192 }), { code: 'ENOENT' });
  t.throws(() => Udmabuf.createListSync([{ size: 4096 }, { size: 4096 }]), { code: 'ENOENT' });
  await t.rejects(Udmabuf.createList([{ size: 4096 }]), { code: 'ENOENT' });
  // leaks.check at the end proves no memfd stayed open.
});

t.test('size and offset must be page multiples, size > 0', async (t) => {
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  for (const size of [0, 100, 4097, -4096, 1.5, NaN, 2 ** 53]) t.throws(() => Udmabuf.createSync({ size }), range, `size ${size}`);
  using m = sealed(8192);
  t.throws(() => Udmabuf.createSync({ memfd: m, offset: 100, size: 4096 }), range, 'unaligned offset');
  t.throws(() => Udmabuf.createSync({ memfd: m, offset: -4096, size: 4096 }), range);
  t.throws(() => Udmabuf.createSync({ memfd: m, offset: 4096, size: 8192 }), { code: 'ERR_OUT_OF_RANGE', message: /memfd's size \(8192\)/ }, 'past the end');
  t.throws(() => Udmabuf.createSync({ offset: 4096, size: 4096 }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'), 'an offset needs a memfd');
  t.throws(() => Udmabuf.createSync({ size: '4096' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Udmabuf.createSync(null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('a memfd must be a sealable memfd with F_SEAL_SHRINK and without F_SEAL_WRITE', async (t) => {
  const value = expectCode(TypeError, 'ERR_INVALID_ARG_VALUE');
  using plain = memfd(TEST_PREFIX);
  fs.ftruncateSync(plain.fd, 4096);
  t.throws(() => Udmabuf.createSync({ memfd: plain, size: 4096 }), { code: 'ERR_INVALID_ARG_VALUE', message: /must be sealed with F_SEAL_SHRINK/ });
  using unsealed = memfd(TEST_PREFIX, { allowSealing: true });
  fs.ftruncateSync(unsealed.fd, 4096);
  t.throws(() => Udmabuf.createSync({ memfd: unsealed, size: 4096 }), value);
  using writeSealed = sealed(4096, S.F_SEAL_SHRINK | S.F_SEAL_WRITE);
  t.throws(() => Udmabuf.createSync({ memfd: writeSealed, size: 4096 }), { code: 'ERR_INVALID_ARG_VALUE', message: /F_SEAL_WRITE/ });
  using notMemfd = Fd.open('/dev/null');
  t.throws(() => Udmabuf.createSync({ memfd: notMemfd, size: 4096 }), { code: 'ERR_INVALID_ARG_VALUE', message: /must be a memfd/ });
  const closed = memfd(TEST_PREFIX);
  closed.close();
  t.throws(() => Udmabuf.createSync({ memfd: closed, size: 4096 }), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('createList checks the list and names the bad item', async (t) => {
  t.throws(() => Udmabuf.createListSync([]), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => Udmabuf.createListSync({} as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Udmabuf.createListSync([{ size: 4096 }, { size: 10 }]), { code: 'ERR_OUT_OF_RANGE', message: /"items\[1\]\.size"/ });
  t.throws(() => Udmabuf.createListSync(new Array(1025).fill({ size: 4096 })), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  await t.rejects(Udmabuf.createList([null as never]), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(Udmabuf.create({ size: 4096, signal: 'x' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('an aborted signal rejects create() and createList() before anything is made', async (t) => {
  const ac = new AbortController();
  ac.abort(new Error('no'));
  await t.rejects(Udmabuf.create({ size: 4096, signal: ac.signal }), { name: 'AbortError', code: 'ABORT_ERR' });
  await t.rejects(Udmabuf.createList([{ size: 4096 }], { signal: ac.signal }), { name: 'AbortError' });
});

leaks.check(t);
