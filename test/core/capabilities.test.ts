// capabilities(): what the machine offers, with reasons for what it lacks.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { capabilities } from '../../lib';
import { fakeDrm, VGEM_FAUX } from '../fake-sysfs';
import { expectCode, leakGuard } from '../helpers';

const leaks = leakGuard();
const ITEMS = ['dmaHeaps', 'udmabuf', 'drm', 'p2pmem', 'rdma', 'libibverbs'] as const;

t.test('on this machine every item is reported, each absent one with a reason', async (t) => {
  const caps = capabilities();
  t.equal(caps.kernel, os.release());
  for (const k of ITEMS) {
    const c = caps[k];
    t.type(c.available, 'boolean', `${k}.available`);
    if (c.available) t.equal(c.reason, undefined, `${k} available, no reason`);
    else t.match(c.reason, /\S/, `${k}: ${c.reason}`);
  }
});

t.test('capabilities() refuses options of the wrong type, and names with a NUL byte', async (t) => {
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => capabilities(null as never), type, "was a TypeError reading devDir of null");
  t.throws(() => capabilities({ devDir: 1 as never }), type);
  t.throws(() => capabilities({ libibverbs: Symbol() as never }), type);
  t.throws(() => capabilities({ libibverbs: 'libc.so.6\0x' }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'), 'dlopen would see libc.so.6');
});

t.test('an empty tree reports everything absent with reasons', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-test-caps-'));
  const caps = capabilities({ devDir: `${root}/dev`, sysDir: `${root}/sys`, libibverbs: 'libp2pdma-test-missing.so.1' });
  for (const k of ITEMS) {
    t.equal(caps[k].available, false, k);
    t.match(caps[k].reason, /\S/, `${k}: ${caps[k].reason}`);
  }
  t.match(caps.dmaHeaps.reason, /CONFIG_DMABUF_HEAPS/);
  t.match(caps.udmabuf.reason, /CONFIG_UDMABUF/);
  t.match(caps.libibverbs.reason, /libp2pdma-test-missing/);
  fs.rmSync(root, { recursive: true });
});

t.test('DRM on a 7.x tree: vgem, a faux device bound to faux_driver, is still vgem (issue 29)', async (t) => {
  const root = fakeDrm(VGEM_FAUX);
  t.teardown(() => fs.rmSync(root, { recursive: true }));
  const caps = capabilities({ devDir: `${root}/dev`, sysDir: `${root}/sys`, libibverbs: 'libc.so.6' });
  t.same(caps.drm.nodes.map((n) => [n.name, n.driver, n.driverFrom, n.bus]), [
    ['card0', 'vgem', 'sysfs', 'faux'],
    ['renderD128', 'vgem', 'sysfs', 'faux'],
  ]);
  t.equal(caps.drm.available, true);
});

t.test('a populated tree is parsed', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-test-caps-'));
  const w = (p: string, s = '') => {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), s);
  };
  w('dev/dma_heap/system');
  w('dev/udmabuf');
  w('dev/dri/card0');
  w('dev/dri/renderD128');
  w('dev/dri/by-path/x');
  fs.mkdirSync(`${root}/sys/bus/vgem/drivers/vgem`, { recursive: true });
  fs.mkdirSync(`${root}/sys/class/drm/renderD128/device`, { recursive: true });
  fs.symlinkSync(`${root}/sys/bus/vgem/drivers/vgem`, `${root}/sys/class/drm/renderD128/device/driver`);
  const p2p = 'sys/bus/pci/devices/0000:00:04.0/p2pmem';
  w(`${p2p}/size`, '67108864\n');
  w(`${p2p}/available`, '62914560\n');
  w(`${p2p}/published`, '1\n');
  w(`${p2p}/allocate`);
  w('sys/bus/pci/devices/0000:00:05.0/vendor', '0x8086\n');
  w('sys/class/infiniband/rxe0/node_type', '1: CA\n');
  w('sys/class/infiniband/rxe0/ports/1/state', '4: ACTIVE\n');
  w('sys/class/infiniband_verbs/uverbs0/ibdev', 'rxe0\n');

  const caps = capabilities({ devDir: `${root}/dev`, sysDir: `${root}/sys`, libibverbs: 'libc.so.6' });
  t.same(caps.dmaHeaps, { available: true, heaps: ['system'] });
  t.same(caps.udmabuf, { available: true, path: `${root}/dev/udmabuf` });
  t.same(caps.drm, {
    available: true,
    nodes: [
      { name: 'card0', path: `${root}/dev/dri/card0`, type: 'primary', accessible: true },
      { name: 'renderD128', path: `${root}/dev/dri/renderD128`, type: 'render', accessible: true, driver: 'vgem', driverFrom: 'sysfs' },
    ],
  });
  t.same(caps.p2pmem, {
    available: true,
    providers: [{ bdf: '0000:00:04.0', size: 64 << 20, available: 60 << 20, published: true, allocate: `${root}/${p2p}/allocate` }],
  });
  t.same(caps.rdma, {
    available: true,
    devices: [{ name: 'rxe0', nodeType: '1: CA', ports: [1], uverbs: `${root}/dev/infiniband/uverbs0` }],
  });
  t.equal(caps.libibverbs.available, true, 'a library that exists');
  t.match(caps.libibverbs.path, /libc\.so\.6$/);
  fs.rmSync(root, { recursive: true });
});

t.test('a DRM node on a bare platform device (vgem) is named after the device', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-test-caps-'));
  fs.mkdirSync(`${root}/dev/dri`, { recursive: true });
  fs.writeFileSync(`${root}/dev/dri/renderD128`, '');
  fs.mkdirSync(`${root}/sys/devices/platform/vgem`, { recursive: true });
  fs.mkdirSync(`${root}/sys/class/drm/renderD128`, { recursive: true });
  fs.symlinkSync(`${root}/sys/devices/platform/vgem`, `${root}/sys/class/drm/renderD128/device`);
  const caps = capabilities({ devDir: `${root}/dev`, sysDir: `${root}/sys` });
  t.equal(caps.drm.nodes[0].driver, 'vgem');
  fs.rmSync(root, { recursive: true });
});

t.test('unpublished p2pmem is reported as not available', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-test-caps-'));
  const p2p = `${root}/sys/bus/pci/devices/0000:00:04.0/p2pmem`;
  fs.mkdirSync(p2p, { recursive: true });
  fs.writeFileSync(`${p2p}/size`, '4096\n');
  fs.writeFileSync(`${p2p}/available`, '4096\n');
  fs.writeFileSync(`${p2p}/published`, '0\n');
  const caps = capabilities({ devDir: `${root}/dev`, sysDir: `${root}/sys` });
  t.equal(caps.p2pmem.available, false);
  t.equal(caps.p2pmem.providers.length, 1);
  t.match(caps.p2pmem.reason, /publish/);
  fs.rmSync(root, { recursive: true });
});

leaks.check(t);
