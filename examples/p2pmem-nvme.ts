// needs: p2pmem:2 nvme-scratch
// NVMe peer to peer: controller A writes from its own CMB, then reads the
// blocks straight into controller B's CMB. Overwrites the start of A's
// namespace: the test guest's are scratch images.
import * as fs from 'node:fs';
import { Nvme, P2pMem, Pci } from 'p2pdma';

const [a, b] = P2pMem.providers();                   // NVMe CMBs: { bdf, p2pmem: { size, available, published } }
console.log(P2pMem.topology(b, a).mapType);          // 'BUS_ADDR' | 'THRU_HOST_BRIDGE' | 'NOT_SUPPORTED', with .reason
const ctrl = fs.readdirSync(`${Pci.device(a.bdf).sysfsPath}/nvme`)[0];
using ns = Nvme.open(`/dev/${ctrl}n1`);              // O_DIRECT
using cmbA = P2pMem.allocate(a, 1 << 20);            // a Mapping of A's p2pmem; close() returns it
using cmbB = P2pMem.allocate(b, 1 << 20);
cmbA.write(Buffer.alloc(1 << 20, 0x5a));
await ns.write(cmbA, 0);                             // the controller reads its own CMB
await ns.read(cmbB, 0);                              // ... and DMAs into the peer's CMB
console.log(cmbB.read(Buffer.alloc(16)));            // <Buffer 5a 5a ...>
