// needs: rdma
// RDMA verbs: two connected RC queue pairs on one device, an RDMA WRITE and
// READ between memory regions, each work request a promise.
import { Rdma } from 'p2pdma';

const [dev] = Rdma.devices();                        // e.g. rxe0 (soft-RoCE)
using ctx = Rdma.open(dev.name);
using pd = ctx.allocPd();
const [qa, qb] = Rdma.loopbackPair(pd);              // RC QPs connected to each other
using src = await pd.allocMemory(4096, { access: 'local-write' });
using dst = await pd.allocMemory(4096, { access: ['local-write', 'remote-write', 'remote-read'] });
new Uint8Array(src.mapping!.buffer).fill(42);
await qa.write(src, dst);                            // IBV_WR_RDMA_WRITE, resolves on completion
await qa.read(src, dst);                             // IBV_WR_RDMA_READ back
console.log(new Uint8Array(dst.mapping!.buffer)[0]); // 42
qa.close();
qb.close();
