// Third-party RDMA tools on kernel-patches/v3's paths (issue 26), on rxe0:
//
// - rdma-core's pyverbs on the ivshmem BAR (ivshmem-plain, BAR2, RAM-backed)
//   through vfio-pci: the addon opens the device and exports the BAR as a
//   dma-buf, and test/guest/pyverbs/vfio_bar_mr.py gets both fds. The VMA
//   path (MR(address=) on a mmap of the device fd: ibv_reg_mr) registers on
//   v3 and takes an RDMA WRITE and READ, as root and as uid 65534 under
//   RLIMIT_MEMLOCK 0 with nothing pinned; stock 7.3 refuses it (EFAULT: the
//   VM_PFNMAP pages cannot be pinned; EPERM under the limit, can_do_mlock()).
//   The fd path (DmaBufMR(dmabuf=FD): ibv_reg_dmabuf_mr) needs rxe's
//   provider to have a reg_dmabuf_mr op. The system's rdma-core (Debian's
//   44.0, as upstream) has none: libibverbs refuses the call itself
//   (EOPNOTSUPP) on every kernel. rdma-core built with
//   userspace-patches/rdma-core (scripts/rdma-core/build.sh, picked by
//   LD_LIBRARY_PATH) sends the command: v3's rxe registers the dma-buf and
//   takes a WRITE and READ, as root and as uid 65534 under RLIMIT_MEMLOCK 0,
//   nothing pinned; stock 7.3's uverbs refuses it (EOPNOTSUPP: its rxe has
//   no reg_user_mr_dmabuf). rdma-thirdparty-dmabuf.test.ts takes the same
//   fd path on dma-heap, udmabuf and vgem buffers. The addon sends the
//   command itself (below and in vfio.test.ts). 6.12 has no VFIO in this
//   project's config.
// - perftest's ib_write_bw --mmap=<p2pmem/allocate of an NVMe CMB> as the
//   server (its MR on the CMB), a client on the same rxe0: the registration
//   works on the series (v3's p2p_dma_buf, v2's p2p_map) and the client's
//   WRITEs complete, as root and as uid 65534 under `ulimit -l 0` (started as
//   that user, so uverbs' refusal of write()s after a credential change does
//   not apply); a stock kernel fails the server's ibv_reg_mr ("Couldn't
//   allocate MR"). perftest opens the attribute itself, which sysfs makes
//   root's (0660 root:root): the unprivileged run gets its group, as an
//   admin's udev rule (GROUP=) would. perftest has no dma-buf fd option (only
//   GPU allocators' --use_*_dmabuf), and the CMB has no fd path at all (v3
//   exports p2pmem's dma-buf only behind a mapping): neither is tested here.
// - pyverbs (test/guest/pyverbs/p2pmem_mr.py) on the CMB's mapping, started
//   as uid 65534 with the attribute handed over as for perftest: registered
//   under RLIMIT_MEMLOCK 0 without pinning, then WRITE and READ, which
//   rdma-pyverbs.test.ts (root opens, then switches user) cannot do.
import t, { type Test } from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rdma } from '../../lib';
import { defaultGidIndex } from '../../lib/rdma/qp';
import { guest, inGuest, ivshmemBdf, kernel, kernelSeries, nvmeControllers, openIvshmemVfio, vfioKernel, waitFor } from './helpers';
import { LIMIT_MS, NOBODY, noPyverbs, patchedRdmaCoreLib, python, readableScripts } from './pyverbs-helpers';
import { ADDR, DEV, onPvrdma } from './rdma-helpers';

const scripts = inGuest ? readableScripts(['vfio_bar_mr.py', 'p2pmem_mr.py', 'rc.py', 'mr_io.py']) : '';
const IB_WRITE_BW = '/usr/bin/ib_write_bw';

function lane(...reasons: (string | false)[]): { skip: string | false } {
  return guest.skip ? guest : { skip: reasons.find((r) => r !== false) ?? false };
}
const rxeOnly = onPvrdma && 'pvrdma lane: the series converts rxe';
const vfioOpts = lane(rxeOnly, vfioKernel.skip, noPyverbs);
const cmbOpts = lane(rxeOnly, noPyverbs, !fs.existsSync(IB_WRITE_BW) && 'perftest is not installed (scripts/setup.sh installs it)');

const BAR = 2;
const BAR_SIZE = 16 << 20;
const LEN = 64 << 10;
const VMA_OFFSET = 1 << 20;
const DMABUF_OFFSET = 2 << 20;
/** The system's libibverbs and rxe provider (Debian's 44.0), as a process without LD_LIBRARY_PATH loads them. */
const SYSTEM_LIBS = { libibverbs: /^\/(usr\/)?lib\/x86_64-linux-gnu\/libibverbs\.so\./, rxe: /^\/(usr\/)?lib\/x86_64-linux-gnu\/libibverbs\/librxe-rdmav34\.so$/ };

t.test('pyverbs on the ivshmem BAR through vfio-pci: ibv_reg_mr on its mapping, ibv_reg_dmabuf_mr on its dma-buf, with the system\'s rdma-core and with userspace-patches/rdma-core; as root and as uid 65534 under RLIMIT_MEMLOCK 0', vfioOpts, async (t) => {
  const bdf = ivshmemBdf();
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmemVfio(t, bdf!);
  const region = v.region(BAR);
  t.equal(region.size, BAR_SIZE, 'BAR2: 16 MiB');
  const patchedLib = patchedRdmaCoreLib(t);
  using ctx = Rdma.open(DEV);
  const gidIndex = defaultGidIndex(ctx, 1);
  // Root and 65534, each with either rdma-core, all at once, each on its own
  // windows of the BAR and its own dma-buf.
  const runs: { uid: number; lib?: string }[] = [0, NOBODY].flatMap((uid) => [{ uid }, ...(patchedLib ? [{ uid, lib: patchedLib }] : [])]);
  const bufs = runs.map((_, i) => v.exportDmaBuf(BAR, { ranges: [{ offset: DMABUF_OFFSET + i * LEN, length: LEN }] }));
  t.teardown(() => bufs.forEach((b) => b.close()));
  const results = await Promise.all(runs.map(({ uid, lib }, i) =>
    python(scripts, 'vfio_bar_mr.py', [DEV, gidIndex, region.offset, BAR_SIZE, VMA_OFFSET + i * LEN, DMABUF_OFFSET + i * LEN, LEN], [v.fd, bufs[i].fd],
      { uid: uid || undefined, env: lib ? { LD_LIBRARY_PATH: lib } : undefined })));
  for (const [i, { uid, lib }] of runs.entries()) {
    const r = results[i];
    const who = `${uid ? `uid ${uid} under RLIMIT_MEMLOCK 0` : 'root'}, ${lib ? 'patched' : 'system'} rdma-core`;
    t.same([r.uid, r.memlock], [uid, uid ? 0 : undefined], `ran as ${who}`);
    const libs = r.libs as Record<string, string>;
    if (lib) {
      t.same([path.dirname(libs.libibverbs), path.dirname(libs.rxe)], [lib, lib], `${who}: libibverbs and rxe's provider are the patched build's (LD_LIBRARY_PATH)`);
    } else {
      t.match(libs, SYSTEM_LIBS, `${who}: libibverbs and rxe's provider are the system's`);
    }
    if (kernelSeries === 'v3') {
      t.same(r.vma, { reg_mr: 'ok', vmpin_kb: 0, write: true, read: true }, `${who}: the mapping registered without pinning (vfio-pci names its dma-buf); WRITE landed in the BAR, READ brought back what the CPU wrote`);
    } else {
      // ib_umem_get(): can_do_mlock() first, then GUP refuses VM_PFNMAP.
      const refused = uid ? { reg_mr: 'Operation not permitted', errno: 1 } : { reg_mr: 'Bad address', errno: 14 };
      t.same(r.vma, refused, `${who}: the stock kernel takes the pinning path and refuses: ${refused.reg_mr}`);
    }
    const eopnotsupp = { reg_mr: 'Operation not supported', errno: 95 };
    if (!lib) {
      // libibverbs' stand-in for a missing op, whatever the kernel.
      t.same(r.dmabuf, eopnotsupp, `${who}: DmaBufMR on the dma-buf fd is EOPNOTSUPP from libibverbs itself (the system's rxe provider has no reg_dmabuf_mr op)`);
    } else if (kernelSeries === 'v3') {
      t.same(r.dmabuf, { reg_mr: 'ok', vmpin_kb: 0, write: true, read: true }, `${who}: DmaBufMR on the dma-buf fd registered (v3's rxe, nothing pinned); WRITE landed in the BAR, READ brought back what the CPU wrote`);
    } else {
      // uverbs' REG_DMABUF_MR handler checks the driver first: the same errno as
      // libibverbs' stand-in above, so which one answered is what v3's run shows.
      t.same(r.dmabuf, eopnotsupp, `${who}: the patched provider sends the command (v3 takes it) and the stock kernel's uverbs refuses it with EOPNOTSUPP, before looking at the fd: its rxe has no reg_user_mr_dmabuf`);
    }
  }
  // The kernel's side of the fd path, through the addon's own command.
  using pd = ctx.allocPd();
  const buf = bufs[0];
  if (kernelSeries === 'v3') {
    const mr = pd.registerDmaBufSync(buf, { length: LEN, access: ['local-write', 'remote-write', 'remote-read'] });
    t.equal(mr.length, LEN, 'v3\'s rxe registers the same dma-buf fd through the addon\'s own command');
    mr.close();
  } else {
    t.throws(() => pd.registerDmaBufSync(buf, { length: LEN, access: 'local-write' }), { code: 'EOPNOTSUPP', message: /does not support dma-buf memory regions/ },
      'the stock kernel refuses the addon\'s command too');
  }
});

/** The first controller's p2pmem/allocate, root's in sysfs (0660 root:root) as the kernel makes it. */
function cmbAllocate(t: Test): string | undefined {
  const c = nvmeControllers()[0];
  const allocate = c && `${c.p2pmem}/allocate`;
  if (!t.ok(allocate && fs.existsSync(allocate), 'an NVMe controller with a p2pmem CMB')) return undefined;
  const st = fs.statSync(allocate!);
  t.same([st.uid, st.gid, st.mode & 0o777], [0, 0, 0o660], 'p2pmem/allocate is root\'s (0660 root:root): an unprivileged program cannot open it unless an admin hands it over');
  return allocate;
}

/** What an admin's udev rule (GROUP="nogroup") does for the unprivileged user; the mode stays 0660. Undone at the end. */
function handOver(t: Test, allocate: string): void {
  fs.chownSync(allocate, 0, NOBODY);
  t.teardown(() => fs.chownSync(allocate, 0, 0));
}

// rxe copies into the CMB with the CPU, an MMIO access per word under TCG:
// 20 WRITEs of 64 KiB. perftest's buffer is twice the size (send and receive halves).
const SIZE = 64 << 10;
const ITERS = 20;
const PERFTEST_BUF = 2 * SIZE;
// Fixed: the file runs alone (scripts/guest-suite.sh is_exclusive), and perftest sets SO_REUSEADDR.
const PORT = 18710;

interface Exit {
  code: number | null;
  out: string;
}

/** A child whose stdout and stderr are collected, killed after LIMIT_MS (never a hang). */
function start(t: Test, cmd: string, args: string[], uid?: number): { child: ChildProcess; exit: Promise<Exit> } {
  const child = spawn(cmd, args, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], ...(uid === undefined ? {} : { uid, gid: uid }) });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const timer = setTimeout(() => {
    out += `\n[killed after ${LIMIT_MS / 1000} s]`;
    child.kill('SIGKILL');
  }, LIMIT_MS);
  t.teardown(() => {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exit = new Promise<Exit>((resolve) => {
    child.on('error', (e) => resolve({ code: -1, out: `${out}\n${e.message}` }));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
  return { child, exit };
}

/** Whether a socket listens on TCP `port` (perftest's server binds AF_INET). */
function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => {
    const cols = l.trim().split(/\s+/);
    return cols[1]?.endsWith(hex) && cols[3] === '0A';
  });
}

/**
 * ib_write_bw's server on the CMB (as `uid` under `ulimit -l 0` when given)
 * and its client on host memory, as root. The server waits for the client
 * before it registers anything; the client starts once the server listens.
 */
async function writeBw(t: Test, allocate: string, port: number, uid?: number): Promise<{ server: Exit; client: Exit; status?: string; limits?: string }> {
  const common = ['-d', DEV, '-s', String(SIZE), '-n', String(ITERS), '-F', '-p', String(port)];
  const serverArgs = [...common, `--mmap=${allocate}`];
  const server = uid === undefined
    ? start(t, IB_WRITE_BW, serverArgs)
    : start(t, '/bin/sh', ['-c', 'ulimit -l 0 && exec "$@"', 'sh', IB_WRITE_BW, ...serverArgs], uid);
  let ended = false;
  void server.exit.then(() => (ended = true));
  await waitFor(`ib_write_bw listening on port ${port}`, () => (listening(port) || ended ? true : undefined), LIMIT_MS);
  // Listening, it is ib_write_bw itself (the shell exec'd it): its user and limit.
  let status: string | undefined;
  let limits: string | undefined;
  if (uid !== undefined && !ended) {
    status = fs.readFileSync(`/proc/${server.child.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'));
    limits = fs.readFileSync(`/proc/${server.child.pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max locked memory'));
  }
  const client = start(t, IB_WRITE_BW, [...common, ADDR]);
  const [s, c] = await Promise.all([server.exit, client.exit]);
  return { server: s, client: c, status, limits };
}

t.test('an NVMe CMB\'s p2pmem/allocate handed to uid 65534: pyverbs started as that user; perftest\'s ib_write_bw --mmap server as root and as that user, a client on rxe0', cmbOpts, async (t) => {
  const allocate = cmbAllocate(t);
  if (!allocate) return;
  const works = kernel !== 'baseline';
  handOver(t, allocate);
  using ctx = Rdma.open(DEV);
  // All at once, each with its own CMB allocation, QPs and port: perftest
  // sleeps a second on each side, and pyverbs' start-up is most of the rest.
  const [py, root, user] = await Promise.all([
    python(scripts, 'p2pmem_mr.py', [allocate, LEN, DEV, defaultGidIndex(ctx, 1)], [], { uid: NOBODY }),
    writeBw(t, allocate, PORT),
    writeBw(t, allocate, PORT + 1, NOBODY),
  ]);

  if (works) {
    t.same(py, { uid: NOBODY, memlock: 0, reg_mr: 'ok', vmpin_kb: 0, write: true, read: true }, `pyverbs as uid 65534 under RLIMIT_MEMLOCK 0: registered (${kernelSeries}) without pinning; WRITE landed in the CMB, READ came back`);
  } else {
    t.same(py, { uid: NOBODY, memlock: 0, reg_mr: 'Operation not permitted', errno: 1 }, 'pyverbs as uid 65534 under RLIMIT_MEMLOCK 0: the stock kernel takes the pinning path: EPERM (can_do_mlock())');
  }

  const check = (r: Awaited<ReturnType<typeof writeBw>>, who: string) => {
    let ok = t.match(r.server.out, `allocated mmap buffer of size ${PERFTEST_BUF}`, `${who}: the server's buffer is a mapping of the CMB`);
    if (works) {
      ok = t.same([r.server.code, r.client.code], [0, 0], `${who}: server and client succeed (${kernelSeries}: the CMB registers without pinning)`) && ok;
      ok = t.match(r.client.out, new RegExp(`^\\s*${SIZE}\\s+${ITERS}\\s`, 'm'), `${who}: the client's ${ITERS} WRITEs of ${SIZE} B into the server's CMB MR completed`) && ok;
    } else {
      ok = t.equal(r.server.code, 1, `${who}: the server fails`) && ok;
      ok = t.match(r.server.out, "Couldn't allocate MR", `${who}: at its ibv_reg_mr() of the CMB (the stock kernel's pinning path refuses: EFAULT as root, EPERM under the limit, as rdma-pyverbs.test.ts shows)`) && ok;
      ok = t.not(r.client.code, 0, `${who}: the client fails with it`) && ok;
    }
    if (!ok) t.comment(`server:\n${r.server.out}\nclient:\n${r.client.out}`);
  };

  check(root, 'perftest as root');
  t.match(user.status, new RegExp(`^Uid:\\s+${NOBODY}\\s+${NOBODY}\\s`), 'perftest\'s other server runs as uid 65534');
  t.match(user.limits, /^Max locked memory\s+0\s+0\s+bytes/, 'under RLIMIT_MEMLOCK 0');
  check(user, `perftest as uid ${NOBODY}`);
});
