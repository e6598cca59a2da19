// needs: dmaHeaps
// dma-buf heaps: allocate from the system heap, map, fill, check.
import { DmaHeap } from 'p2pdma';

console.log(DmaHeap.list());                         // ['system', ...]
using heap = DmaHeap.open('system');
using buf = await heap.alloc(1 << 20);               // a DmaBuf; allocSync() blocks instead
using map = buf.map();
buf.withCpuAccess('rw', () => {
  const bytes = new Uint8Array(map.buffer);
  bytes.fill(0xab);
  if (bytes[(1 << 20) - 1] !== 0xab) throw new Error('heap buffer did not keep its bytes');
});
console.log(buf.info().exporter);                    // 'system'
