// RDMA memory regions on device memory (kernel patches "RDMA/umem: map
// device memory through p2p_map" and "RDMA/rxe: register memory regions on
// peer-to-peer device memory", with the p2pmem and ivshmem_p2p exporters).
//
// test/guest/c/rdma_p2p.c does the work: ibv_reg_mr() on a mapping, an RDMA
// WRITE into it and an RDMA READ out of it over rxe0 in loopback, checked
// through the mapping, and optionally an NVMe O_DIRECT round trip and a
// revocation. It prints one JSON line; its exit status tells the stage that
// failed (3: ibv_reg_mr).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mmap } from '../../lib/index';
import { packageRoot } from '../../lib/package-root';
import { guest, inGuest, ivshmemBdf, ivshmemNode, kernel, nvmeControllers, patchedOnly } from './helpers';

// This file also runs compiled, from dist/guest-tests/.
const root = packageRoot;
const source = path.join(root, 'test/guest/c/rdma_p2p.c');
const REM_ACCESS_ERR = 'remote access error'; // ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR)

interface Result {
  ok: boolean;
  exit: number;
  stage?: string;
  errno?: string;
  kind?: string;
  reg_mr?: string;
  write_verified?: boolean;
  read_verified?: boolean;
  nvme_verified?: boolean;
  after_revoke?: string;
  active_maps?: number;
  active_maps_after_revoke?: number;
  active_maps_after_dereg?: number;
  untouched_after_revoke?: boolean;
  [key: string]: unknown;
}

/** The program: prebuilt by `make -C test/guest/c`, else built into /tmp now. */
function program(): string | undefined {
  const prebuilt = path.join(root, 'build/guest-c/rdma_p2p');
  try {
    if (fs.statSync(prebuilt).mtimeMs >= fs.statSync(source).mtimeMs) return prebuilt;
  } catch {
    // not built: build it below
  }
  const out = fs.mkdtempSync('/tmp/guest-c-');
  const r = spawnSync('make', ['-s', '-C', path.dirname(source), `OUT=${out}`], { encoding: 'utf8' });
  return r.status === 0 ? path.join(out, 'rdma_p2p') : undefined;
}

const bin = inGuest ? program() : undefined;

function run(args: string[]): Result {
  const r = spawnSync(bin!, args, { encoding: 'utf8', timeout: 240_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let res: Result;
  try {
    res = JSON.parse(line) as Result;
  } catch {
    throw new Error(`rdma_p2p ${args.join(' ')}: exit ${r.status} signal ${r.signal}, ` +
      `no JSON: ${r.stdout}${r.stderr}`);
  }
  if (res.exit !== r.status) throw new Error(`exit ${r.status} but JSON says ${res.exit}`);
  return res;
}

/**
 * Options for a test that needs the program, skipped with the reason. The
 * guest always has rxe0, the CMBs and the ivshmem BAR (devices.test.ts):
 * a test that misses one fails instead.
 */
function needs(base = guest, extra?: string | false): { skip: string | false } {
  if (base.skip) return base;
  if (!bin) return { skip: 'rdma_p2p could not be built (gcc, libibverbs-dev)' };
  return { skip: extra ?? false };
}

// A program that cannot be built fails here, so the skips below hide nothing.
t.test('rdma_p2p is built for the guest', guest, async (t) => {
  t.ok(bin, `built from ${source}`);
});

t.test('control: ibv_reg_mr and RDMA WRITE/READ on anonymous memory', needs(), async (t) => {
  const r = run(['anon']);
  t.equal(r.exit, 0, `exit 0 (${JSON.stringify(r)})`);
  t.equal(r.reg_mr, 'ok');
  t.equal(r.write_verified, true, 'RDMA WRITE data seen in host memory');
  t.equal(r.read_verified, true, 'RDMA READ data matches');
});

const ctrls = inGuest ? nvmeControllers() : [];

t.test('ibv_reg_mr on an NVMe CMB (p2pmem/allocate)', needs(), async (t) => {
  const c = ctrls[0];
  const allocate = `${c?.p2pmem}/allocate`;
  if (!t.ok(c && fs.existsSync(allocate), 'an NVMe controller with a p2pmem CMB')) return;
  if (kernel === 'baseline') {
    // What the unpatched kernel does today: pinning fails, the MR is refused.
    const r = run([allocate]);
    t.equal(r.exit, 3, 'exit 3: ibv_reg_mr failed');
    t.equal(r.stage, 'reg_mr');
    t.equal(r.errno, 'EFAULT', 'EFAULT');
    return;
  }
  // Patched: RDMA lands in the CMB; the CMB then goes to the namespace by
  // O_DIRECT (P2PDMA, 1 MiB at 8 MiB, clear of topology.test.ts's first
  // MiB) and comes back into host memory; munmap revokes the MR.
  const r = run(['--nvme', c.namespace, '--munmap', allocate]);
  t.equal(r.exit, 0, `exit 0 (${JSON.stringify(r)})`);
  t.equal(r.reg_mr, 'ok', 'ibv_reg_mr succeeded');
  t.equal(r.write_verified, true, 'RDMA WRITE landed in the CMB (read through the mapping)');
  t.equal(r.read_verified, true, 'RDMA READ from the CMB matches what the CPU wrote');
  t.equal(r.nvme_verified, true, 'CMB -> namespace (O_DIRECT) -> host memory matches the RDMA data');
  t.equal(r.after_revoke, REM_ACCESS_ERR, 'RDMA WRITE after munmap: remote access error');
});

const ivBdf = inGuest ? ivshmemBdf() : undefined;

t.test('ibv_reg_mr on the ivshmem BAR via the ivshmem_p2p exporter', needs(patchedOnly), async (t) => {
  if (!t.ok(ivBdf, 'ivshmem-plain present')) return;
  const node = ivshmemNode(ivBdf!);
  if (!t.ok(node, `ivshmem_p2p char device for ${ivBdf} (CONFIG_IVSHMEM_P2P)`)) return;
  const r = run(['--revoke', node!]);
  t.equal(r.exit, 0, `exit 0 (${JSON.stringify(r)})`);
  t.equal(r.reg_mr, 'ok', 'ibv_reg_mr succeeded');
  t.equal(r.active_maps, 1, 'the MR holds one p2p mapping of the BAR');
  t.equal(r.write_verified, true, 'RDMA WRITE landed in the BAR (read through the mapping)');
  t.equal(r.read_verified, true, 'RDMA READ from the BAR matches what the CPU wrote');
  t.equal(r.active_maps_after_revoke, 0, 'REVOKE invalidated the MR and its mapping was released');
  t.equal(r.after_revoke, REM_ACCESS_ERR, 'RDMA WRITE after REVOKE: remote access error');
  t.equal(r.untouched_after_revoke, true, 'the BAR kept its data: nothing was written after REVOKE');
  t.equal(r.active_maps_after_dereg, 0, 'nothing left mapped after ibv_dereg_mr');
});

/** Why the BAR cannot be mapped through sysfs, or false if it can (or there is no BAR: the test fails). */
function resourceMmapSkip(bdf: string | undefined): string | false {
  if (!bdf) return false;
  const file = `/sys/bus/pci/devices/${bdf}/resource2`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r+');
    mmap(fd, 4096, { prot: 'rw', flags: 'shared' }).unmap();
    return false;
  } catch (e) {
    // With IO_STRICT_DEVMEM sysfs refuses to map a BAR a driver owns, as
    // ivshmem_p2p does on the patched kernel.
    return `${file} cannot be mapped: ${(e as NodeJS.ErrnoException).code ?? e}`;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

t.test('ibv_reg_mr on a BAR mapped without an exporter (sysfs resource2)',
  needs(guest, inGuest ? resourceMmapSkip(ivBdf) : false), async (t) => {
    if (!t.ok(ivBdf, 'ivshmem-plain present')) return;
    // VM_IO|VM_PFNMAP and no p2p_map: no fallback, the same refusal as before.
    const r = run([`/sys/bus/pci/devices/${ivBdf}/resource2`]);
    t.equal(r.exit, 3, `exit 3: ibv_reg_mr failed (${JSON.stringify(r)})`);
    t.equal(r.stage, 'reg_mr');
    t.equal(r.errno, 'EFAULT', 'EFAULT');
  });
