// NvmeOf on the host: what createTarget() and connect() refuse before
// touching the kernel, and the errors that name the missing kernel option.
// configfs, nvmet and /dev/nvme-fabrics themselves are tested in the guest
// (test/guest/nvmeof.test.ts, test/guest/nodes/nvmeof.test.ts).
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NvmeOf, NvmeOfConnection, NvmeOfTarget } from '../../lib';
import { expectCode } from '../helpers';

const NQN = 'nqn.2026-12.io.p2pdma:host-test';
const base = { nqn: NQN, device: '/dev/null', transport: 'loop' as const };

function tmpTree(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-nvmeof-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('handles come from NvmeOf, not from their constructors', async (t) => {
  t.throws(() => new (NvmeOfTarget as unknown as new () => unknown)(), expectCode(TypeError, 'ERR_ILLEGAL_CONSTRUCTOR'));
  t.throws(() => new (NvmeOfConnection as unknown as new () => unknown)(), expectCode(TypeError, 'ERR_ILLEGAL_CONSTRUCTOR'));
  t.equal(NvmeOf.defaultPort, 4420);
});

t.test('createTarget() checks every option before touching configfs', async (t) => {
  const configfs = '/nonexistent-configfs';
  const bad: [Record<string, unknown>, string, RegExp][] = [
    [{ nqn: 5 }, 'ERR_INVALID_ARG_TYPE', /options\.nqn/],
    [{ nqn: '' }, 'ERR_INVALID_ARG_VALUE', /options\.nqn/],
    [{ nqn: 'a/b' }, 'ERR_INVALID_ARG_VALUE', /without '\/'/],
    [{ nqn: 'a,b' }, 'ERR_INVALID_ARG_VALUE', /options\.nqn/],
    [{ nqn: 'x'.repeat(224) }, 'ERR_INVALID_ARG_VALUE', /1-223 bytes/],
    [{ nqn: 'nqn.2014-08.org.nvmexpress.discovery' }, 'ERR_INVALID_ARG_VALUE', /discovery/],
    [{ device: undefined }, 'ERR_INVALID_ARG_TYPE', /options\.device/],
    [{ nsid: 0 }, 'ERR_OUT_OF_RANGE', /options\.nsid/],
    [{ nsid: '1' }, 'ERR_INVALID_ARG_TYPE', /options\.nsid/],
    [{ transport: 'fc' }, 'ERR_INVALID_ARG_VALUE', /'rdma', 'tcp' or 'loop'/],
    [{ transport: 'rdma' }, 'ERR_INVALID_ARG_TYPE', /options\.address/],
    [{ transport: 'rdma', address: 'rxe0' }, 'ERR_INVALID_ARG_VALUE', /IPv4 or IPv6/],
    [{ address: '10.0.0.1' }, 'ERR_INVALID_ARG_VALUE', /undefined for the loop transport/],
    [{ transport: 'rdma', address: '10.0.0.1', port: 65536 }, 'ERR_OUT_OF_RANGE', /options\.port/],
    [{ portId: 0 }, 'ERR_OUT_OF_RANGE', /options\.portId/],
    [{ hosts: 'h' }, 'ERR_INVALID_ARG_TYPE', /options\.hosts/],
    [{ hosts: ['ok', 'b,ad'] }, 'ERR_INVALID_ARG_VALUE', /options\.hosts\[1\]/],
    [{ p2pmem: true }, 'ERR_INVALID_ARG_TYPE', /options\.p2pmem/],
    [{ p2pmem: 'cmb' }, 'ERR_INVALID_ARG_VALUE', /options\.p2pmem.*PCI address/],
    [{ configfs: 1 }, 'ERR_INVALID_ARG_TYPE', /options\.configfs/],
  ];
  for (const [over, code, message] of bad) {
    t.throws(() => NvmeOf.createTarget({ ...base, configfs, ...over } as never), { code, message }, JSON.stringify(over));
  }
  t.throws(() => NvmeOf.createTarget(null as never), { code: 'ERR_INVALID_ARG_TYPE' });
});

t.test('a kernel without nvmet: ENOENT that names CONFIG_NVME_TARGET, and nothing created', async (t) => {
  const configfs = tmpTree(t);
  t.throws(() => NvmeOf.createTarget({ ...base, configfs }), {
    code: 'ENOENT',
    errno: -2,
    syscall: 'stat',
    path: path.join(configfs, 'nvmet'),
    message: /^ENOENT: no such file or directory, stat '.*nvmet' \(this kernel has no NVMe target: CONFIG_NVME_TARGET\)$/,
  });
  t.same(fs.readdirSync(configfs), []);
  t.throws(() => NvmeOf.createTarget({ ...base, configfs: path.join(configfs, 'none') }), { code: 'ENOENT', message: /CONFIG_CONFIGFS_FS/ });
});

t.test('a subsystem that exists already is refused with EEXIST and left as it was', async (t) => {
  const configfs = tmpTree(t);
  const theirs = path.join(configfs, 'nvmet', 'subsystems', NQN);
  fs.mkdirSync(theirs, { recursive: true });
  fs.writeFileSync(path.join(theirs, 'attr_allow_any_host'), '0');
  t.throws(() => NvmeOf.createTarget({ ...base, configfs }), {
    code: 'EEXIST',
    syscall: 'mkdir',
    path: theirs,
    message: /\(a subsystem nqn\.2026-12\.io\.p2pdma:host-test exists already; it is not this target's to change\)$/,
  });
  t.equal(fs.readFileSync(path.join(theirs, 'attr_allow_any_host'), 'utf8'), '0', 'not touched');
});

t.test('connect() checks its options, and a kernel without the fabrics host names CONFIG_NVME_FABRICS', async (t) => {
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'rdma' } as never), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.address/ });
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'loop', hostnqn: 'a b' }), { code: 'ERR_INVALID_ARG_VALUE', message: /options\.hostnqn/ });
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'loop', timeoutMs: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'loop', ctrlLossTimeout: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'loop', signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'loop', signal: AbortSignal.abort() }), { name: 'AbortError', code: 'ABORT_ERR' });
  const fabrics = path.join(tmpTree(t), 'nvme-fabrics');
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'rdma', address: '10.0.0.2', fabrics }), {
    code: 'ENOENT',
    path: fabrics,
    message: /\(this kernel has no NVMe over Fabrics host: CONFIG_NVME_FABRICS, with CONFIG_NVME_RDMA\)$/,
  });
});

t.test('connect() refuses a reply that is not the kernel\'s', async (t) => {
  // A plain file echoes the options string back instead of instance=N,cntlid=M.
  const fabrics = path.join(tmpTree(t), 'nvme-fabrics');
  fs.writeFileSync(fabrics, '');
  await t.rejects(NvmeOf.connect({ nqn: NQN, transport: 'loop', fabrics }), { code: 'ERR_P2PDMA_NVMEOF_REPLY', message: /transport=loop,nqn=nqn\.2026-12\.io\.p2pdma:host-test/ });
});
