// Each topology gives the P2P behaviour the kernel's map type implies:
// controller 0 DMAs from its own CMB to its namespace, then reads back into
// controller 1's CMB. BUS_ADDR (switch) and THRU_HOST_BRIDGE (AMD family 23
// host bridge) carry the data; NOT_SUPPORTED (root complex, default CPU)
// refuses it (EREMOTEIO on 6.12, EINVAL on 7.x: P2P_REFUSAL).
import t from 'tap';
import * as fs from 'node:fs';
import { mmap } from '../../lib';
import { guest, nvmeControllers, P2P_REFUSAL, topology } from './helpers';

const LENGTH = 1 << 20;

function withCmb<T>(p2pmem: string, fn: (bytes: Uint8Array) => T): T {
  const fd = fs.openSync(`${p2pmem}/allocate`, 'r+');
  try {
    const m = mmap(fd, LENGTH, { prot: 'rw', flags: 'shared' });
    try {
      return fn(new Uint8Array(m.buffer));
    } finally {
      m.unmap();
    }
  } finally {
    fs.closeSync(fd);
  }
}

t.test(`O_DIRECT from one CMB to a peer's CMB matches the ${topology} topology`, guest, async (t) => {
  const [a, b] = nvmeControllers();
  t.ok(a && b, 'two NVMe controllers');
  const pattern = new Uint8Array(LENGTH);
  for (let i = 0; i < LENGTH; i++) pattern[i] = (i * 7 + (i >> 12)) & 0xff;

  const ns = fs.openSync(a.namespace, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    withCmb(a.p2pmem, (cmbA) => {
      cmbA.set(pattern);
      t.equal(fs.writeSync(ns, cmbA, 0, LENGTH, 0), LENGTH, 'write from own CMB works in every topology');
    });
    withCmb(b.p2pmem, (cmbB) => {
      cmbB.fill(0);
      if (topology === 'none') {
        let error: NodeJS.ErrnoException | undefined;
        try {
          fs.readSync(ns, cmbB, 0, LENGTH, 0);
        } catch (e) {
          error = e as NodeJS.ErrnoException;
        }
        t.equal(error?.errno, P2P_REFUSAL.errno, `NOT_SUPPORTED refuses with ${P2P_REFUSAL.code}`);
      } else {
        t.equal(fs.readSync(ns, cmbB, 0, LENGTH, 0), LENGTH, 'read into the peer CMB');
        t.ok(Buffer.compare(Buffer.from(cmbB), Buffer.from(pattern)) === 0, 'bytes match');
      }
    });
  } finally {
    fs.closeSync(ns);
  }
});
