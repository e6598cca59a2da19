// capabilities() inside the guest, where every feature is real.
import t from 'tap';
import { capabilities } from '../../lib';
import { guest, guestTopologies } from './helpers';

t.test('capabilities() sees every device the guest has', guest, async (t) => {
  const caps = capabilities();
  t.ok(caps.dmaHeaps.available, 'dma-heaps');
  t.ok(caps.dmaHeaps.heaps.includes('system'), 'system heap');
  t.ok(caps.udmabuf.available, 'udmabuf');
  t.ok(caps.drm.nodes.some((n) => n.type === 'render' && n.driver === 'vgem'), 'vgem render node');
  t.equal(caps.p2pmem.providers.length, 2 * guestTopologies.length, 'a p2pmem provider per NVMe controller: two per topology');
  for (const p of caps.p2pmem.providers) {
    t.equal(p.size, 64 << 20, `${p.bdf} size`);
    t.ok(p.published, `${p.bdf} published`);
    t.ok(p.allocate, `${p.bdf} allocate file`);
  }
  t.ok(caps.rdma.devices.some((d) => d.name === 'rxe0'), 'rxe0');
  t.ok(caps.libibverbs.available, 'libibverbs');
  t.notOk(caps.p2pmem.reason ?? caps.rdma.reason ?? caps.udmabuf.reason, 'no reasons when available');
});
