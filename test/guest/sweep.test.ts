// The guest half of the property sweep (the host half: test/core/sweep.test.ts):
// fast-check feeds the device calls that exist only in the guest (dma-heap,
// udmabuf, DmaBuf methods on real dma-bufs, DRM on vgem, NVMe on nvme0n1,
// RDMA verbs on rxe0, rdma_cm) arguments of wrong types, ranges and
// alignments mixed with valid ones, and views and buffers of every kind
// (test/fixtures/sweep-views.ts), changed while a promise is pending. Each
// case must throw or reject only Errors with a string `code`, settle, leave
// the bytes outside a view's range unchanged, and leave no fd, mapping or
// MR of this process behind once what it made is closed. On the DEBUG
// kernel the harness fails the run on any KASAN, kmemleak or lockdep report.
//
// NVMe writes go only to SCRATCH (1 MiB at 200 MiB of nvme0n1), away from the
// ranges the other guest files use (first MiB, 8 MiB, 128-160 MiB).
//
// A small fixed number of runs per target with a fixed seed, printed; replay
// or explore with SWEEP_SEED=<n>|random and GUEST_SWEEP_RUNS=<n>.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as util from 'node:util';

import fc from 'fast-check';

import * as api from '../../lib';
import { native } from '../../lib/core/native';
import { bufferSpecs, buildBuffer, buildView, type Change, describeBuffer, describeView, Guard, inFlightChanges, liveViewSpecs, viewSpecs } from '../fixtures/sweep-views';
import { guest, inGuest, nvmeControllers } from './helpers';
import { ADDR, DEV } from './rdma-helpers';

const FIXED_SEED = 20261126;
const seedEnv = process.env.SWEEP_SEED;
const seed = seedEnv === undefined ? FIXED_SEED : seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv);
const runs = Number(process.env.GUEST_SWEEP_RUNS ?? 6);
/** A promise pending this long is a hang (TCG with KASAN is slow). */
const SETTLE_MS = 30_000;

const MiB = 1 << 20;
const SCRATCH = 200 * MiB;
const SCRATCH_LBA = SCRATCH / 512;

// ---------------------------------------------------------------------------
// Values: a name fast-check prints, and a make() run in the case's scope

class Scope {
  #cleanups: (() => unknown)[] = [];
  defer(fn: () => unknown): void {
    this.#cleanups.push(fn);
  }
  /** Closes `h` (anything with close() or unmap()) when the case ends. */
  own<T>(h: T): T {
    this.defer(() => dispose(h));
    return h;
  }
  close(): void {
    for (const fn of this.#cleanups.reverse()) {
      try {
        fn();
      } catch {
        // closed by the call itself, or by a parent
      }
    }
    this.#cleanups = [];
  }
}

class V {
  constructor(
    readonly name: string,
    readonly make: (s: Scope) => unknown,
  ) {}
  toString(): string {
    return this.name;
  }
  [fc.toStringMethod](): string {
    return this.name;
  }
}
const value = (name: string, v: unknown) => new V(name, () => v);
const recipe = (name: string, make: (s: Scope) => unknown) => new V(name, make);
const pick = (...vs: V[]) => fc.constantFrom(...vs);

function hostileError(): Error {
  return Object.assign(new Error('hostile getter'), { code: 'ERR_SWEEP_HOSTILE' });
}
const hostile = pick(
  value('undefined', undefined),
  value('null', null),
  value('-1', -1),
  value('NaN', NaN),
  value('2**53', 2 ** 53),
  value('-1n', -1n),
  value("'x'", 'x'),
  value('Symbol()', Symbol('sweep')),
  recipe('{}', () => ({})),
  recipe('[]', () => []),
  recipe('Proxy(throwing)', () => new Proxy({}, { get: () => { throw hostileError(); }, has: () => { throw hostileError(); }, ownKeys: () => { throw hostileError(); } })),
  recipe('aborted AbortSignal', () => AbortSignal.abort(new Error('aborted before the call'))),
);
const mostly = (valid: fc.Arbitrary<V>) => fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: hostile, weight: 1 });
const ints = (...ns: number[]) => pick(...ns.map((n) => value(String(n), n)));

/** Every kind of view and buffer, as made, changed before the call, and hand-made odd ones. */
const views = fc.oneof(
  { arbitrary: liveViewSpecs.map((sp) => recipe(describeView(sp), () => buildView(sp))), weight: 3 },
  { arbitrary: viewSpecs.map((sp) => recipe(describeView(sp), () => buildView(sp))), weight: 2 },
);
const buffers = bufferSpecs([0, 1, 512, 4096, 8192]).map((sp) => recipe(describeBuffer(sp), () => buildBuffer(sp)));
const mappingOf = (n: number, prot: api.Prot = 'rw') =>
  recipe(`Mapping(memfd ${n}, ${prot})`, (s) => {
    const m = s.own(api.memfd('p2pdma-test-sweep'));
    fs.ftruncateSync(m.fd, n);
    return s.own(api.mmap(m, n, { prot }));
  });
const memory = fc.oneof({ arbitrary: views, weight: 3 }, { arbitrary: buffers, weight: 2 }, { arbitrary: pick(mappingOf(4096), mappingOf(8192, 'read')), weight: 1 });
/** Options objects leave out what is undefined (an explicit undefined is a case of its own elsewhere). */
function withoutUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
const signals = pick(
  value('no options', undefined),
  recipe('{ signal: live }', () => ({ signal: new AbortController().signal })),
  recipe('{ signal: aborted soon }', () => ({ signal: AbortSignal.timeout(1) })),
);

// ---------------------------------------------------------------------------
// Closing what a case made; the checks after each case

function dispose(x: unknown): void {
  if (x === null || typeof x !== 'object' || util.types.isProxy(x)) return;
  if (Array.isArray(x)) {
    for (const y of [...x].reverse()) dispose(y);
    return;
  }
  const o = x as { close?: () => void; unmap?: () => void; end?: () => void };
  if (x instanceof api.CpuAccess) o.end!();
  else if (x instanceof api.Mapping) o.unmap!();
  else if (typeof o.close === 'function') o.close();
}

function requireCoded(e: unknown, what: string): void {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') return;
  const shown = e instanceof Error ? `${e.constructor.name} code=${String((e as { code?: unknown }).code)}: ${e.message}\n${e.stack}` : `non-Error ${typeof e}`;
  throw new Error(`${what} threw something other than an Error with a string code: ${shown}`);
}

// Node's own fds (epoll, its eventfds, pipes, sockets) come and go with the
// runtime; the NVMe engine's io_uring is made on first use and lives as long
// as the thread (lib/pci/nvme.ts).
const RUNTIME_FD = /^(pipe:|socket:|anon_inode:\[(eventpoll|eventfd|timerfd|signalfd|io_uring)\]|\/dev\/(null|urandom|pts|tty))/;
function ownFds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (!RUNTIME_FD.test(target)) out.push(`${fd} -> ${target}`);
    } catch {
      // the fd readdir itself used
    }
  }
  return out.sort();
}
/** Mappings of what the device calls map: dma-bufs, DRM, verbs queues, memfds, NVMe. */
function deviceMaps(): string[] {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => /\/dmabuf:|\/dev\/dri\/|\/dev\/infiniband\/|\/memfd:|\/dev\/nvme|\/dev\/udmabuf/.test(l));
}
function liveMappings(): number {
  const c = native.counters();
  return c.mmap - c.munmap - c.pinned;
}
/** This process's MRs on any RDMA device (`rdma resource show mr`), or undefined where the tool fails. */
function ownMrs(): number | undefined {
  try {
    const out = execFileSync('rdma', ['-j', 'resource', 'show', 'mr'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const list = JSON.parse(out) as { pid?: number }[];
    return list.filter((m) => m.pid === process.pid).length;
  } catch {
    return undefined;
  }
}

const gc = (globalThis as { gc?: () => void }).gc;
const tick = () => new Promise<void>((r) => setImmediate(r));

interface Stats {
  cases: number;
  errors: Record<string, number>;
  /** The first message of each code, to tell a validation refusal from a device's. */
  samples: Record<string, string>;
  ok: number;
  inFlight: number;
  guardChecks: number;
  mrChecks: number;
}

interface Target {
  args: fc.Arbitrary<V[]>;
  call(s: Scope, ...a: unknown[]): unknown;
  /** Check this process's MRs after each case. */
  mrs?: boolean;
}

async function runCase(name: string, target: Target, recipes: V[], change: Change, stats: Stats): Promise<void> {
  stats.cases++;
  const fdsBefore = ownFds();
  const mapsBefore = deviceMaps();
  const mappingsBefore = liveMappings();
  const s = new Scope();
  let result: unknown;
  let failure: unknown;
  try {
    const values = recipes.map((r) => r.make(s));
    const guard = new Guard(values);
    let outcome: { state: 'pending' } | { state: 'ok'; value: unknown } | { state: 'error'; error: unknown } = { state: 'pending' };
    let promise: PromiseLike<unknown> | undefined;
    try {
      const r = target.call(s, ...values);
      if (typeof (r as PromiseLike<unknown> | undefined)?.then === 'function') promise = r as PromiseLike<unknown>;
      else outcome = { state: 'ok', value: r };
    } catch (error) {
      outcome = { state: 'error', error };
    }
    if (promise !== undefined) {
      if (guard.mutate(change).length > 0) stats.inFlight++;
      promise.then(
        (value) => (outcome = { state: 'ok', value }),
        (error) => (outcome = { state: 'error', error }),
      );
      const deadline = Date.now() + SETTLE_MS;
      while (outcome.state === 'pending' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      if (outcome.state === 'pending') throw new Error(`${name}: the promise did not settle in ${SETTLE_MS} ms`);
    }
    const o = outcome as { state: 'ok'; value: unknown } | { state: 'error'; error: unknown };
    if (o.state === 'ok') {
      stats.ok++;
      result = o.value;
    } else {
      requireCoded(o.error, name);
      const code = (o.error as { code: string }).code;
      stats.errors[code] = (stats.errors[code] ?? 0) + 1;
      stats.samples[code] ??= (o.error as Error).message.slice(0, 160);
    }
    stats.guardChecks += guard.count;
    guard.check();
  } catch (e) {
    failure = e;
  }
  try {
    dispose(result);
  } catch (e) {
    failure ??= e instanceof Error && typeof (e as { code?: unknown }).code === 'string' ? undefined : e;
  }
  s.close();
  if (failure !== undefined) throw failure;
  // A closed handle's fd closes once the event loop lets go of its poll; a dropped one on GC.
  let fdsAfter = ownFds();
  for (let i = 0; i < 20 && fdsAfter.join() !== fdsBefore.join(); i++) {
    if (i < 10) await tick();
    else {
      gc?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    fdsAfter = ownFds();
  }
  const opened = fdsAfter.filter((f) => !fdsBefore.includes(f));
  const closed = fdsBefore.filter((f) => !fdsAfter.includes(f));
  if (opened.length > 0 || closed.length > 0) throw new Error(`fds changed: opened [${opened.join(', ')}], closed [${closed.join(', ')}]`);
  const maps = deviceMaps().filter((m) => !mapsBefore.includes(m));
  if (maps.length > 0) throw new Error(`mappings left: ${maps.join('; ')}`);
  if (liveMappings() !== mappingsBefore) throw new Error(`${liveMappings() - mappingsBefore} addon mapping(s) left mapped`);
  if (target.mrs === true && MR_CHECK_EACH_CASE) checkMrs(stats);
}

/**
 * No MR of this process left registered. An exec of `rdma` costs 0.5-0.9 s
 * in the DEBUG guest, so by default once per target, after its cases (the
 * seed is fixed: GUEST_SWEEP_MR_CHECK=each replays them checking each case).
 */
const MR_CHECK_EACH_CASE = process.env.GUEST_SWEEP_MR_CHECK === 'each';
function checkMrs(stats: Stats): void {
  const n = ownMrs();
  if (n === undefined) return;
  stats.mrChecks++;
  if (n !== 0) throw new Error(`${n} MR(s) of this process left registered (rdma resource show mr)${MR_CHECK_EACH_CASE ? '' : '; GUEST_SWEEP_MR_CHECK=each finds the case'}`);
}

// ---------------------------------------------------------------------------
// Targets

const method = (receiver: fc.Arbitrary<V>, name: string, ...arbs: fc.Arbitrary<V>[]): Target => ({
  args: fc.tuple(receiver, fc.tuple(...arbs)).map(([r, a]) => [r, ...a]),
  call: (_s, self, ...a) => (self as Record<string, (...x: unknown[]) => unknown>)[name](...a),
});
const fn = (f: (...a: unknown[]) => unknown, ...arbs: fc.Arbitrary<V>[]): Target => ({
  args: fc.tuple(...arbs).map((a) => [...a]),
  call: (_s, ...a) => f(...a),
});

const heapNames = inGuest ? api.DmaHeap.list() : [];
const heapName = heapNames.includes('system') ? 'system' : heapNames[0];
// No size the kernel would really try to allocate or pin beyond a few MiB
// (other guest files run beside this one): 2**40 is past the guest's RAM,
// refused before any page is taken.
const sizes = fc.oneof(ints(0, 1, 4095, 4096, 4097, 65536, 2 ** 40, 2 ** 53 - 1), pick(value('4096n', 4096n), value('-4096', -4096), value('0.5', 0.5)));
const mrSizes = fc.oneof(ints(0, 1, 4095, 4096, 65536, 2 ** 53 - 1), pick(value('4096n', 4096n), value('-4096', -4096), value('0.5', 0.5)));
const heaps = pick(recipe(`DmaHeap.open('${heapName}')`, (s) => s.own(api.DmaHeap.open(heapName))));
const heapBuf = (n: number) => recipe(`heap dma-buf ${n}`, (s) => s.own(s.own(api.DmaHeap.open(heapName)).allocSync(n)));
const udmaBuf = (n: number) => recipe(`udmabuf ${n}`, (s) => s.own(api.Udmabuf.createSync({ size: n })));
/** Mostly a valid receiver, sometimes a closed one. */
const receivers = (valid: fc.Arbitrary<V>, closed: V) => fc.oneof({ arbitrary: valid, weight: 5 }, { arbitrary: fc.constant(closed), weight: 1 });
const dmabufs = receivers(pick(heapBuf(4096), heapBuf(3 * 4096), udmaBuf(8192)), (recipe('closed heap dma-buf', (s) => {
  const b = s.own(api.DmaHeap.open(heapName)).allocSync(4096);
  b.close();
  return b;
})));
const modes = mostly(pick(value("'read'", 'read'), value("'write'", 'write'), value("'rw'", 'rw')));
const mapOptions = mostly(
  fc.record({ offset: fc.oneof({ arbitrary: ints(0, 1, 4096, 8192, 12288), weight: 5 }, { arbitrary: hostile, weight: 1 }), length: fc.oneof(ints(0, 1, 4096, 8192, 2 ** 31), pick(value('undefined', undefined))), prot: fc.oneof({ arbitrary: pick(value("'read'", 'read'), value("'rw'", 'rw'), value("'none'", 'none')), weight: 5 }, { arbitrary: hostile, weight: 1 }) }).map((o) =>
    recipe(`{ offset: ${o.offset}, length: ${o.length}, prot: ${o.prot} }`, (s) => withoutUndefined({ offset: o.offset.make(s), length: o.length.make(s), prot: o.prot.make(s) })),
  ),
);
const names = mostly(pick(value("'sweep'", 'sweep'), value("'x'.repeat(31)", 'x'.repeat(31)), value("'x'.repeat(32)", 'x'.repeat(32)), value("'x'.repeat(300)", 'x'.repeat(300)), value("'a\\0b'", 'a\0b'), value("''", '')));
const udmabufItem = fc
  .record({ size: fc.oneof({ arbitrary: ints(0, 4095, 4096, 8192, 12288), weight: 5 }, { arbitrary: hostile, weight: 1 }), offset: fc.oneof(ints(0, 1, 4096, 8192), pick(value('undefined', undefined))), memfdSize: fc.constantFrom(-1, -1, 0, 4096, 8192) })
  .map((o) =>
    // memfdSize -1: no memfd, udmabuf makes a sealed one; else an unsealed memfd (refused).
    recipe(o.memfdSize < 0 ? `{ size: ${o.size} }` : `{ memfd: unsealed memfd ${o.memfdSize}, offset: ${o.offset}, size: ${o.size} }`, (s) => {
      if (o.memfdSize < 0) return { size: o.size.make(s) };
      const m = s.own(api.memfd('p2pdma-test-sweep', { allowSealing: true }));
      fs.ftruncateSync(m.fd, o.memfdSize);
      return withoutUndefined({ memfd: m, offset: o.offset.make(s), size: o.size.make(s) });
    }),
  );
const udmabufList = fc.array(udmabufItem, { maxLength: 3 }).map((items) => recipe(`[${items.join(', ')}]`, (s) => items.map((i) => i.make(s))));

// DRM on vgem
const vgem = recipe("Drm.open({ driver: 'vgem' })", (s) => s.own(api.Drm.open({ driver: 'vgem' })));
const gem = fc.constantFrom(4096, 8192).map((n) =>
  recipe(`vgem buffer ${n}`, (s) => {
    const d = s.own(api.Drm.open({ driver: 'vgem' }));
    // vgem has dumb buffers only: 32 pixels of 4 bytes a row.
    return s.own(d.createDumb({ width: 32, height: n / 128 }));
  }),
);

// NVMe on nvme0n1
const nsPath = inGuest ? nvmeControllers()[0]?.namespace : undefined;
const nvme = receivers(pick(recipe(`Nvme.open(${nsPath})`, (s) => s.own(api.Nvme.open(nsPath!)))), recipe('closed Nvme', () => {
  const n = api.Nvme.open(nsPath!);
  n.close();
  return n;
}));
/** Offsets to read at: anywhere, valid or not. */
const readOffsets = fc.oneof(
  { arbitrary: ints(0, 512, 4096, SCRATCH, 256 * MiB - 512), weight: 4 },
  { arbitrary: pick(value('1', 1), value('511', 511), value('256 MiB (the end)', 256 * MiB), value('2**53', 2 ** 53), value('-512', -512), value(`${SCRATCH}n`, BigInt(SCRATCH)), value('2n**64n', 2n ** 64n)), weight: 2 },
  { arbitrary: hostile, weight: 1 },
);
/** Offsets to write at: in SCRATCH or refused (negative, past the end, not an integer): never another file's range. */
const writeOffsetsOdd = fc.constant(null).chain(() => pick(...writeOffsetsOddList()));
const writeOffsets = fc.oneof(
  { arbitrary: pick(...[0, 512, 4096, 65536].map((d) => value(`SCRATCH + ${d}`, SCRATCH + d))), weight: 3 },
  { arbitrary: writeOffsetsOdd, weight: 1 },
);
function writeOffsetsOddList(): V[] {
  return [
  ...[1, 511].map((d) => value(`SCRATCH + ${d}`, SCRATCH + d)),
  value('SCRATCH + 0.5', SCRATCH + 0.5),
  value(`BigInt(SCRATCH)`, BigInt(SCRATCH)),
  value('-512', -512),
  value('256 MiB (the end)', 256 * MiB),
  value('2**53', 2 ** 53),
  value('NaN', NaN),
  value("String(SCRATCH)", String(SCRATCH)),
  ];
}
const lengths = fc.oneof({ arbitrary: pick(value('undefined', undefined)), weight: 3 }, { arbitrary: ints(0, 1, 511, 512, 4096, 8192, 2 ** 31), weight: 2 }, { arbitrary: pick(value('-1', -1), value('512n', 512n)), weight: 1 });
const passthruRead = fc
  .record({ data: fc.oneof(memory, pick(value('undefined', undefined))), nlb: fc.constantFrom(0, 1, 7), dataLength: fc.oneof(pick(value('undefined', undefined)), ints(0, 512, 4096)), slba: fc.constantFrom(0, SCRATCH_LBA, 2 ** 32 - 1) })
  .map((o) =>
    recipe(`{ opcode: READ, cdw10: ${o.slba}, cdw12: ${o.nlb}, data: ${o.data}, dataLength: ${o.dataLength} }`, (s) => ({ opcode: api.nvmeOpcodes.READ, cdw10: o.slba, cdw11: 0, cdw12: o.nlb, data: o.data.make(s), dataLength: o.dataLength.make(s) })),
  );
const passthruWrite = fc
  .record({ data: fc.oneof(memory, pick(value('undefined', undefined))), nlb: fc.constantFrom(0, 1, 7), dataLength: fc.oneof(pick(value('undefined', undefined)), ints(0, 512, 4096)) })
  .map((o) =>
    recipe(`{ opcode: WRITE, cdw10: SCRATCH_LBA, cdw12: ${o.nlb}, data: ${o.data}, dataLength: ${o.dataLength} }`, (s) => ({ opcode: api.nvmeOpcodes.WRITE, cdw10: SCRATCH_LBA, cdw11: 0, cdw12: o.nlb, data: o.data.make(s), dataLength: o.dataLength.make(s) })),
  );
const identify = fc.oneof(memory, pick(value('undefined', undefined))).map((d) => recipe(`{ admin: true, opcode: IDENTIFY, cdw10: 1, data: ${d} }`, (s) => ({ admin: true, opcode: 0x06, nsid: 0, cdw10: 1, data: d.make(s) })));
const commands = fc.oneof({ arbitrary: passthruRead, weight: 2 }, { arbitrary: passthruWrite, weight: 2 }, { arbitrary: identify, weight: 1 }, { arbitrary: hostile, weight: 1 });

// RDMA on rxe0
const ctxs = pick(recipe(`Rdma.open('${DEV}')`, (s) => s.own(api.Rdma.open(DEV))));
const pds = receivers(
  pick(recipe(`pd of Rdma.open('${DEV}')`, (s) => s.own(s.own(api.Rdma.open(DEV)).allocPd()))),
  recipe('closed pd', (s) => {
    const pd = s.own(api.Rdma.open(DEV)).allocPd();
    pd.close();
    return pd;
  }),
);
const access = mostly(pick(value('undefined', undefined), value("'local-write'", 'local-write'), value("['local-write', 'remote-write', 'remote-read']", ['local-write', 'remote-write', 'remote-read']), value("'remote-write' (needs local-write)", 'remote-write'), value("['bogus']", ['bogus'])));
const registerOptions = mostly(
  fc
    .record({ access, offset: fc.oneof(ints(0, 1, 7, 4096), pick(value('undefined', undefined))), length: fc.oneof(ints(0, 1, 4096, 2 ** 31), pick(value('undefined', undefined))) })
    .map((o) => recipe(`{ access: ${o.access}, offset: ${o.offset}, length: ${o.length} }`, (s) => withoutUndefined({ access: o.access.make(s), offset: o.offset.make(s), length: o.length.make(s) }))),
);
const accessOptions = mostly(access.map((a) => recipe(`{ access: ${a} }`, (s) => withoutUndefined({ access: a.make(s) }))));
const registerTargets = fc.oneof({ arbitrary: memory, weight: 4 }, { arbitrary: pick(recipe('a MemoryRegion', (s) => s.own(s.own(s.own(api.Rdma.open(DEV)).allocPd()).allocMemorySync(4096)))), weight: 1 }, { arbitrary: hostile, weight: 1 });
const cqSizes = fc.oneof(ints(0, 1, 16, 4096, 2 ** 31), hostile);
const capField = fc.oneof({ arbitrary: pick(value('undefined', undefined), value('1', 1), value('16', 16)), weight: 6 }, { arbitrary: pick(value('0', 0), value('1 << 16', 1 << 16), value('-1', -1), value('0.5', 0.5)), weight: 1 });
const qpOptions = fc
  .record({ maxSendWr: capField, maxRecvWr: capField, maxSendSge: capField, maxRecvSge: capField, maxInlineData: capField, separateRecvCq: fc.boolean() })
  .map((o) =>
    recipe(`{ cap: { maxSendWr: ${o.maxSendWr}, maxRecvWr: ${o.maxRecvWr}, maxSendSge: ${o.maxSendSge}, maxRecvSge: ${o.maxRecvSge}, maxInlineData: ${o.maxInlineData} }${o.separateRecvCq ? ', recvCq' : ''} }`, (s) => {
      const ctx = s.own(api.Rdma.open(DEV));
      const pd = s.own(ctx.allocPd());
      const sendCq = s.own(ctx.createCq(16));
      const recvCq = o.separateRecvCq ? s.own(ctx.createCq(16)) : undefined;
      return { pd, options: { sendCq, recvCq, cap: { maxSendWr: o.maxSendWr.make(s), maxRecvWr: o.maxRecvWr.make(s), maxSendSge: o.maxSendSge.make(s), maxRecvSge: o.maxRecvSge.make(s), maxInlineData: o.maxInlineData.make(s) } } };
    }),
  );
const srqOptions = fc
  .record({ maxWr: capField, maxSge: capField, cq: fc.boolean() })
  .map((o) =>
    recipe(`{ cq${o.cq ? '' : ': {}'}, maxWr: ${o.maxWr}, maxSge: ${o.maxSge} }`, (s) => {
      const ctx = s.own(api.Rdma.open(DEV));
      const pd = s.own(ctx.allocPd());
      const cq = s.own(ctx.createCq(16));
      return { pd, options: { cq: o.cq ? cq : {}, maxWr: o.maxWr.make(s), maxSge: o.maxSge.make(s) } };
    }),
  );
const V4_GID = '0000:0000:0000:0000:0000:ffff:0a00:020f';
const ahOptions = mostly(pick(value(`{ gid: '${V4_GID}' }`, { gid: V4_GID }), value("{ gid: 'fe80::1' }", { gid: 'fe80::1' }), value(`{ gid, portNum: 2 }`, { gid: V4_GID, portNum: 2 }), value(`{ gid, gidIndex: 9999 }`, { gid: V4_GID, gidIndex: 9999 }), value(`{ gid, sl: 16 }`, { gid: V4_GID, sl: 16 })));
const ports = fc.oneof({ arbitrary: ints(0, 4791, 18515, 65535), weight: 4 }, { arbitrary: pick(value('65536', 65536), value('-1', -1), value('0.5', 0.5)), weight: 1 }, { arbitrary: hostile, weight: 1 });
const addresses = fc.oneof({ arbitrary: pick(value(`'${ADDR}'`, ADDR), value("'127.0.0.1'", '127.0.0.1'), value("'::1'", '::1'), value("'10.0.2.99'", '10.0.2.99'), value("'not an address'", 'not an address'), value("''", '')), weight: 5 }, { arbitrary: hostile, weight: 1 });
const cmOptions = fc.record({ address: addresses, port: ports, timeoutMs: fc.oneof({ arbitrary: ints(1, 500), weight: 5 }, { arbitrary: hostile, weight: 1 }) }).map((o) => recipe(`{ address: ${o.address}, port: ${o.port}, timeoutMs: ${o.timeoutMs} }`, (s) => ({ address: o.address.make(s), port: o.port.make(s), timeoutMs: o.timeoutMs.make(s) })));

const targets: Record<string, Target> = {
  'DmaHeap#alloc': method(heaps, 'alloc', mostly(sizes), signals),
  'DmaHeap#allocSync': method(heaps, 'allocSync', mostly(sizes)),
  'Udmabuf.create': fn((...a) => (api.Udmabuf.create as (...x: unknown[]) => unknown)(...a), mostly(udmabufItem)),
  'Udmabuf.createSync': fn((...a) => (api.Udmabuf.createSync as (...x: unknown[]) => unknown)(...a), mostly(udmabufItem)),
  'Udmabuf.createList': fn((...a) => (api.Udmabuf.createList as (...x: unknown[]) => unknown)(...a), mostly(udmabufList), signals),
  'DmaBuf#beginCpuAccess': method(dmabufs, 'beginCpuAccess', modes),
  'DmaBuf#setName': method(dmabufs, 'setName', names),
  'DmaBuf#map': method(dmabufs, 'map', mapOptions),
  'DmaBuf#exportSyncFile': method(dmabufs, 'exportSyncFile', modes),
  'DmaBuf#waitIdle': method(dmabufs, 'waitIdle', modes),
  'Drm.open': fn((...a) => (api.Drm.open as (...x: unknown[]) => unknown)(...a), mostly(pick(value("{ driver: 'vgem' }", { driver: 'vgem' }), value("{ driver: 'vgem', type: 'render' }", { driver: 'vgem', type: 'render' }), value("{ driver: 'nope' }", { driver: 'nope' })))),
  'DrmDevice#createBuffer': method(pick(vgem), 'createBuffer', mostly(sizes)),
  'DrmDevice#exportBuffer': {
    args: fc.tuple(gem, fc.oneof(pick(value('{}', {}), value('{ rw: true }', { rw: true })), hostile)).map((a) => [...a]),
    call: (s, buf, o) => s.own((buf as api.GemBuffer).export(o as { rw?: boolean })),
  },
  'DrmDevice#importBuffer': method(pick(vgem), 'importBuffer', fc.oneof(dmabufs, hostile)),
  'DrmDevice#vgemFenceAttach': {
    args: fc.tuple(gem, fc.oneof(pick(value('{}', {}), value('{ write: true }', { write: true })), hostile)).map((a) => [...a]),
    call: (s, buf, o) => {
      // The buffer's device attaches; a fence left unsignalled would block its buffer: signal it.
      const b = buf as api.GemBuffer;
      const d = b.device;
      const fence = d.vgemFenceAttach(b, o as { write?: boolean });
      d.vgemFenceSignal(fence);
      return fence;
    },
  },
  'Nvme#read': method(nvme, 'read', memory, readOffsets, lengths, signals),
  'Nvme#readSync': method(nvme, 'readSync', memory, readOffsets, lengths),
  'Nvme#write': method(nvme, 'write', memory, writeOffsets, lengths, signals),
  'Nvme#writeSync': method(nvme, 'writeSync', memory, writeOffsets, lengths),
  'Nvme#passthru': method(nvme, 'passthru', commands),
  'Nvme#passthruSync': method(nvme, 'passthruSync', commands),
  'Rdma.open': fn((...a) => (api.Rdma.open as (...x: unknown[]) => unknown)(...a), mostly(pick(value(`'${DEV}'`, DEV), value("'nope0'", 'nope0'), value("''", '')))),
  'RdmaContext#createCq': method(ctxs, 'createCq', cqSizes),
  'ProtectionDomain#registerMemory': { ...method(pds, 'registerMemory', registerTargets, registerOptions), mrs: true },
  'ProtectionDomain#registerMemorySync': { ...method(pds, 'registerMemorySync', registerTargets, registerOptions), mrs: true },
  'ProtectionDomain#allocMemory': { ...method(pds, 'allocMemory', fc.oneof(mrSizes, hostile), accessOptions), mrs: true },
  'ProtectionDomain#createQp': {
    args: qpOptions.map((o) => [o]),
    call: (_s, o) => {
      const { pd, options } = o as { pd: api.ProtectionDomain; options: api.QueuePairOptions };
      return pd.createQp(options);
    },
  },
  'ProtectionDomain#createSrq': {
    args: srqOptions.map((o) => [o]),
    call: (_s, o) => {
      const { pd, options } = o as { pd: api.ProtectionDomain; options: api.SharedReceiveQueueOptions };
      return pd.createSrq(options);
    },
  },
  'ProtectionDomain#createAh': method(pds, 'createAh', ahOptions),
  'Rdma.connect': fn((...a) => (api.Rdma.connect as (...x: unknown[]) => unknown)(...a), mostly(cmOptions)),
  'Rdma.listen': fn((...a) => (api.Rdma.listen as (...x: unknown[]) => unknown)(...a), mostly(cmOptions)),
};

t.comment(`guest sweep seed ${seed}, ${runs} runs per target (replay: SWEEP_SEED=${seed} GUEST_SWEEP_RUNS=${runs})`);

// librdmacm opens each RDMA device once per process and keeps it open
// (rdma-core's cma.c device cache): open it before the first case, so its
// fds belong to no case (test/guest/rdma-errors.test.ts checks that later
// rdma_cm calls add none).
t.before(async () => {
  if (!inGuest) return;
  try {
    api.Rdma.listen({ address: ADDR, port: 0 }).close();
    await api.Rdma.connect({ address: '127.0.0.1', port: 18515, timeoutMs: 1 }).then((c) => c.close(), () => undefined);
  } catch {
    // no rxe: the RDMA targets fail on their own
  }
  // The channels' fds close with their watchers, a loop turn or two later.
  const open = () => fs.readdirSync('/proc/self/fd').some((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === '/dev/infiniband/rdma_cm';
    } catch {
      return false;
    }
  });
  for (let i = 0; i < 100 && open(); i++) await new Promise((r) => setTimeout(r, 20));
});

const started = Date.now();
for (const [name, target] of Object.entries(targets)) {
  t.test(name, guest, async (t) => {
    const stats: Stats = { cases: 0, errors: {}, samples: {}, ok: 0, inFlight: 0, guardChecks: 0, mrChecks: 0 };
    let message = '';
    try {
      await fc.assert(
        fc.asyncProperty(target.args, inFlightChanges, (recipes, change) => runCase(name, target, recipes, change, stats)),
        { seed, numRuns: runs },
      );
      if (target.mrs === true && !MR_CHECK_EACH_CASE) checkMrs(stats);
    } catch (e) {
      const cause = (e as Error).cause;
      message = (e as Error).message.replace(/\n\nHint: .*$/s, '') + (cause instanceof Error ? `\nGot error: ${cause.message}` : '');
    }
    t.equal(message, '', 'every call threw only coded Errors, settled, wrote no byte outside its views, and left no fd, mapping or MR behind');
    t.comment(`${name}: ${stats.cases} cases, ${stats.ok} ok, errors ${JSON.stringify(stats.errors)}, ${stats.inFlight} changed in flight, ${stats.guardChecks} guard checks, ${stats.mrChecks} MR checks`);
    for (const [code, m] of Object.entries(stats.samples)) t.comment(`  ${code}: ${m.replace(/\n/g, ' ')}`);
  });
}
t.teardown(() => console.log(`# guest sweep: ${Object.keys(targets).length} targets in ${Date.now() - started} ms`));
