#!/usr/bin/env node
// The steps of `p2pdma demo` (harness/demo/), run in the test guest or, with
// --host, on this machine: NVMe controller A DMAs a pattern out of its own CMB
// onto its namespace and reads it back straight into controller B's CMB
// (peer-to-peer), the bounce path beside it, then RDMA into CMB B over the
// verbs. Each step's data is checked, and each step is one JSON line on
// stdout ({"demo":"step",...}) that the CLI turns into its table; prose goes
// to stderr. Plain JavaScript over dist/: the guest runs it as it is.
//
//   node scripts/demo.js [--host] [--write-nvme]
//
// In the guest (default) a missing device fails its step: the harness gives
// the guest every device. With --host it skips the step, with the reason
// machineInfo() gives; the NVMe steps overwrite the start of a namespace, so
// there they run only with --write-nvme.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Nvme, P2pMem, Pci, Rdma, machineInfo } = require('../dist');

const LENGTH = 4 << 20;
const CHUNK = 1 << 20;
const RDMA_SIZE = 1 << 20;

const host = process.argv.includes('--host');
const writeNvme = !host || process.argv.includes('--write-nvme');

let failed = false;
function emit(record) {
  if (record.status === 'failed') failed = true;
  process.stdout.write(`${JSON.stringify({ demo: 'step', ...record })}\n`);
}

/** A device is missing: failed in the guest (the harness gives it every one), skipped on a host. */
class Missing extends Error {}
/** An earlier step did not leave what this one needs: skipped, that step says why. */
class After extends Error {}

/** Step `name` with title `title`: fn returns its detail, or throws. Returns what fn returned. */
async function step(name, title, fn) {
  const t0 = process.hrtime.bigint();
  let status = 'ok';
  let detail;
  let value;
  try {
    value = await fn();
    detail = value?.detail ?? '';
    if (value?.expected) status = 'expected';
  } catch (err) {
    status = err instanceof After || (err instanceof Missing && host) ? 'skipped' : 'failed';
    detail = err.message;
    value = undefined;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  emit({ name, title, status, seconds, detail });
  return value;
}

const mbps = (bytes, s) => `${(bytes / s / 1e6).toFixed(1)} MB/s`;

async function timed(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function pattern(length, seed) {
  const b = Buffer.from(new SharedArrayBuffer(length));
  for (let i = 0; i < length; i++) b[i] = (i * seed + (i >> 12)) & 0xff;
  return b;
}

/** The first namespace of the NVMe controller at `bdf`. */
function namespaceOf(bdf) {
  const ctrl = fs.readdirSync(path.join(Pci.device(bdf).sysfsPath, 'nvme'))[0];
  return `/dev/${ctrl}n1`;
}

/** The RDMA device to use: rxe0 in the guest, else the first with an active port. */
function rdmaDevice(info) {
  if (!info.rdma.available) throw new Missing(`no RDMA device: ${info.rdma.reason}`);
  if (!info.libibverbs.available) throw new Missing(`no libibverbs: ${info.libibverbs.reason}`);
  const active = info.rdmaDevices.find((d) => d.ports.some((p) => /ACTIVE/.test(p.state ?? '')));
  if (!host) return 'rxe0';
  if (!active) throw new Missing(`no RDMA device with an active port (${info.rdmaDevices.map((d) => d.name).join(', ')})`);
  return active.name;
}

async function main() {
  const info = machineInfo();
  // The guest says which kernel it booted; a host asks the kernel itself.
  const patched = host ? info.series.present === true : !(process.env.P2PDMA_KERNEL ?? '').startsWith('baseline');
  console.error(`kernel ${os.release()} (${patched ? 'with' : 'without'} the p2p_map series), ${host ? 'this host' : `guest, topology ${process.env.P2PDMA_TOPOLOGY ?? '?'}`}`);
  const providers = P2pMem.providers().filter((p) => p.p2pmem.published && p.p2pmem.allocate);
  const open = [];
  const noPair = providers.length < 2
    ? `two published p2pmem providers needed, ${providers.length} found${info.p2pmem.available ? '' : `: ${info.p2pmem.reason}`}`
    : undefined;
  const state = {};

  await step('providers', 'p2pmem: CMB A and CMB B', () => {
    if (noPair) throw new Missing(noPair);
    const [a, b] = providers;
    const topo = P2pMem.topology(b, a);
    Object.assign(state, { a, b, topo, ns: namespaceOf(a.bdf) });
    return { detail: `A ${a.bdf}, B ${b.bdf}, ${a.p2pmem.size >> 20} MiB each; A -> B ${topo.mapType}${topo.kernel ? ` (kernel: ${topo.kernel})` : ''}` };
  });

  const wanted = LENGTH;
  const data = pattern(wanted, 31);
  await step('nvme-write', 'NVMe write from CMB A', async () => {
    if (!state.a) throw new After(noPair);
    if (!writeNvme) throw new Missing(`overwrites the first ${wanted >> 20} MiB of ${state.ns}: pass --write-nvme to allow`);
    state.nvme = Nvme.open(state.ns);
    state.cmbA = P2pMem.allocate(state.a, LENGTH);
    state.cmbB = P2pMem.allocate(state.b, LENGTH);
    open.push(state.nvme, state.cmbA, state.cmbB);
    state.cmbA.write(data);
    const s = await timed(async () => {
      for (let off = 0; off < LENGTH; off += CHUNK) await state.nvme.write(state.cmbA, off, CHUNK, { bufferOffset: off });
    });
    return { detail: `${mbps(LENGTH, s)}, ${state.ns}` };
  });

  const readInto = async (target, name) => {
    const s = await timed(async () => {
      for (let off = 0; off < LENGTH; off += CHUNK) await state.nvme.read(target, off, CHUNK, { bufferOffset: off });
    });
    return `${mbps(LENGTH, s)}, ${name}`;
  };
  const cmbBHolds = () => state.cmbB.read(Buffer.alloc(LENGTH)).equals(data);

  await step('p2p-read', 'NVMe read into CMB B (peer-to-peer)', async () => {
    if (!state.cmbB) throw new After('nothing written (NVMe write step did not run)');
    state.cmbB.write(Buffer.alloc(LENGTH));
    let rate;
    try {
      rate = await readInto(state.cmbB, 'pattern checked in CMB B');
    } catch (err) {
      // A topology the kernel cannot map refuses P2P: that is the right answer.
      if (state.topo.mapType === 'NOT_SUPPORTED') return { expected: true, detail: `refused as expected (${err.code}): ${err.message}` };
      throw err;
    }
    if (!cmbBHolds()) throw new Error('CMB B does not hold the pattern');
    return { detail: rate };
  });

  await step('bounce', 'bounce: NVMe read into RAM, copy into CMB B', async () => {
    if (!state.cmbB) throw new After('nothing written (NVMe write step did not run)');
    state.cmbB.write(Buffer.alloc(LENGTH));
    const ram = Buffer.alloc(LENGTH + 4096);
    const aligned = ram.subarray(4096 - (ram.byteOffset % 4096)).subarray(0, LENGTH);
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < LENGTH; off += CHUNK) await state.nvme.read(aligned, off, CHUNK, { bufferOffset: off });
    state.cmbB.write(aligned);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (!cmbBHolds()) throw new Error('CMB B does not hold the pattern');
    return { detail: `${mbps(LENGTH, s)}, pattern checked in CMB B` };
  });

  // RDMA into a CMB: a memory region on p2pmem. A stock kernel refuses it
  // with EFAULT (it cannot pin peer memory); kernel-patches/ maps it through p2p_map.
  const rdma = {};
  await step('rdma-mr', 'RDMA memory region on a CMB', async () => {
    const provider = providers[1] ?? providers[0];
    if (!provider) throw new Missing(`no published p2pmem provider${info.p2pmem.available ? '' : `: ${info.p2pmem.reason}`}`);
    const device = rdmaDevice(info);
    const ctx = Rdma.open(device);
    open.push(ctx);
    const pd = ctx.allocPd();
    open.unshift(pd);
    const [a, b] = Rdma.loopbackPair(pd);
    open.unshift(a, b);
    const map = P2pMem.allocate(provider, RDMA_SIZE);
    open.unshift(map);
    try {
      rdma.mr = await pd.registerMemory(map, { access: ['local-write', 'remote-write', 'remote-read'] });
    } catch (err) {
      if (!patched && err.code === 'EFAULT') {
        return { expected: true, detail: 'refused with EFAULT, as a kernel without the series does' };
      }
      throw err;
    }
    open.unshift(rdma.mr);
    Object.assign(rdma, { pd, qp: a, map });
    return { detail: `${device}, CMB ${provider.bdf}, ${RDMA_SIZE >> 10} KiB, rkey ${rdma.mr.rkey}` };
  });

  const src = pattern(RDMA_SIZE, 7);
  await step('rdma-write', 'RDMA WRITE host -> CMB', async () => {
    if (!rdma.mr) throw new After('no memory region on a CMB (step above)');
    rdma.map.write(Buffer.alloc(RDMA_SIZE, 0x5a));
    const srcMr = rdma.pd.registerMemorySync(src, { access: 'local-write' });
    open.unshift(srcMr);
    const s = await timed(() => rdma.qp.write(srcMr, rdma.mr));
    if (!rdma.map.read(Buffer.alloc(RDMA_SIZE)).equals(src)) throw new Error('the CMB does not hold what was written');
    return { detail: `${mbps(RDMA_SIZE, s)}, checked through the mapping` };
  });

  await step('rdma-read', 'RDMA READ CMB -> host', async () => {
    if (!rdma.mr) throw new After('no memory region on a CMB (step above)');
    const back = Buffer.from(new SharedArrayBuffer(RDMA_SIZE));
    const backMr = rdma.pd.registerMemorySync(back, { access: 'local-write' });
    open.unshift(backMr);
    const s = await timed(() => rdma.qp.read(backMr, rdma.mr));
    if (!back.equals(rdma.map.read(Buffer.alloc(RDMA_SIZE)))) throw new Error('what came back differs from the CMB');
    return { detail: `${mbps(RDMA_SIZE, s)}, matches the CMB` };
  });

  // Closed even after a failed step: a step's handles sit in `open` as soon as made.
  for (const x of open) x.close();
}

main().then(() => {
  process.exitCode = failed ? 1 : 0;
}, (err) => {
  console.error(err);
  process.exitCode = 1;
});
