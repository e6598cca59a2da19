// memfd(): anonymous memory files.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

import { Fd, memfd } from '../../lib';
import { expectCode, leakGuard } from '../helpers';

const leaks = leakGuard();

t.test('memfd() returns an Fd on an empty memfd with the given name', async (t) => {
  using m = memfd('p2pdma-test-memfd');
  t.type(m, Fd);
  t.equal(fs.readlinkSync(`/proc/self/fd/${m.fd}`), '/memfd:p2pdma-test-memfd (deleted)');
  t.equal(fs.fstatSync(m.fd).size, 0);
  const flags = fs.readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8').match(/flags:\s+(\d+)/)![1];
  t.ok(parseInt(flags, 8) & 0o2000000, 'close-on-exec by default');
});

// Node has no fcntl(): a python3 child gets the memfd as its fd 3 and runs
// F_GET_SEALS, F_ADD_SEALS (SHRINK|GROW), F_GET_SEALS, printing each result
// (a number, or the errno name).
const python = spawnSync('python3', ['-c', ''], { stdio: 'ignore' }).status === 0;
const noPython = python ? false : 'python3 (for fcntl) not found';
const F_SEAL_SEAL = 1;
const F_SEAL_SHRINK = 2;
const F_SEAL_GROW = 4;

function seal(fd: number): string[] {
  const script = [
    'import errno, fcntl',
    'def run(cmd, arg=0):',
    '    try: print(fcntl.fcntl(3, cmd, arg))',
    '    except OSError as e: print(errno.errorcode[e.errno])',
    'run(fcntl.F_GET_SEALS)',
    'run(fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)',
    'run(fcntl.F_GET_SEALS)',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit', fd], encoding: 'utf8' });
  return r.stdout.trim().split('\n');
}

// spawnSync's stdio dup2()s the fd into the child, close-on-exec or not.
t.test('memfd() with allowSealing accepts seals, which then hold', { skip: noPython }, async (t) => {
  using m = memfd('p2pdma-test-memfd', { allowSealing: true });
  fs.ftruncateSync(m.fd, 4096);
  t.same(seal(m.fd), ['0', '0', String(F_SEAL_SHRINK | F_SEAL_GROW)], 'no seal at first; F_ADD_SEALS works');
  t.throws(() => fs.ftruncateSync(m.fd, 0), { code: 'EPERM' }, 'F_SEAL_SHRINK: no shrinking');
  t.throws(() => fs.ftruncateSync(m.fd, 8192), { code: 'EPERM' }, 'F_SEAL_GROW: no growing');
  t.throws(() => fs.writeSync(m.fd, Buffer.from('x'), 0, 1, 4096), { code: 'EPERM' }, 'F_SEAL_GROW: no write past the end');
  t.equal(fs.writeSync(m.fd, Buffer.from('x'), 0, 1, 4095), 1, 'writes inside the size still work');
});

t.test('memfd() without allowSealing is sealed against more seals', { skip: noPython }, async (t) => {
  using m = memfd('p2pdma-test-memfd');
  t.same(seal(m.fd), [String(F_SEAL_SEAL), 'EPERM', String(F_SEAL_SEAL)]);
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

t.test('memfd() refuses options that are not objects or have wrong types', async (t) => {
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => memfd('p2pdma-test-memfd', null as never), type, 'was a TypeError reading cloexec of null');
  t.throws(() => memfd('p2pdma-test-memfd', { allowSealing: 1 as never }), type);
  t.throws(() => memfd('p2pdma-test-memfd', { cloexec: 'yes' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
});

t.test('memfd() validates its name', async (t) => {
  t.throws(() => memfd(1 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => memfd('x'.repeat(300)), { code: 'EINVAL', syscall: 'memfd_create' }, 'too long for the kernel');
});

leaks.check(t);
