/** Memory regions: registered memory, kept referenced and pinned until deregistered. */
import type { Fd } from '../core/handle';
import type { Mapping } from '../core/mmap';
import type { NativeRdmaMr } from '../core/native';
import { invalidArgType, invalidArgValue, outOfRange, sysError } from '../core/errors';
import type { ProtectionDomain } from './pd';
import { RdmaResource } from './resource';
import type { RdmaAccess, RdmaTarget } from './target';
import { spinTimeoutUs } from './validate';

/** Where the remote side's memory is: what a peer sends to let you WRITE/READ it. */
export interface RemoteRegion {
  addr: bigint;
  rkey: number;
  /** When known, lengths beyond it are refused before posting. */
  length?: number;
}

/** The memory under an MR, let go once its deregistration has completed (or by the GC backstop). */
export interface MrMemory {
  mapping: Mapping | undefined;
  /** Releases the Mapping's hold (unmap() works again). */
  release: (() => void) | undefined;
  /** allocMemory's own mapping: unmapped then. */
  owned: boolean;
}

function freeMemory(m: MrMemory): void {
  m.release?.();
  if (m.owned) m.mapping?.unmap();
}

// An MR collected while open: the native finalizer deregisters it; this lets
// go of the Mapping it held.
const mrMemory = new FinalizationRegistry<MrMemory>(freeMemory);

/**
 * A registered memory region. It keeps its memory referenced, and the NIC
 * has the pages pinned until close() (and, with work requests in flight,
 * until they complete). A Mapping under it (`mapping`) cannot be unmapped
 * (ERR_P2PDMA_BUSY) until the deregistration has completed; allocMemory's
 * own mapping is unmapped then. See index.ts for what memory an MR
 * takes.
 */
export class MemoryRegion extends RdmaResource implements RemoteRegion {
  readonly pd: ProtectionDomain;
  readonly lkey: number;
  readonly rkey: number;
  /** The MR's start address (the iova peers use with rkey). */
  readonly addr: bigint;
  readonly length: number;
  readonly access: readonly RdmaAccess[];
  /** What was registered (kept alive by the MR); undefined for allocMemory's. */
  readonly target: RdmaTarget | Fd | undefined;
  /**
   * The Mapping whose pages the MR covers: allocMemory's (owned by the MR),
   * the Mapping registered, or the one behind a registered `map.buffer` or
   * `map.window()`. Undefined for shared memory and dma-bufs.
   */
  readonly mapping: Mapping | undefined;
  /** @internal */
  declare readonly native: NativeRdmaMr;
  readonly #memory: MrMemory;

  /** @internal */
  constructor(
    pd: ProtectionDomain,
    n: NativeRdmaMr,
    target: RdmaTarget | Fd | undefined,
    access: RdmaAccess[],
    length: number,
    memory: MrMemory = { mapping: undefined, release: undefined, owned: false },
  ) {
    super(n);
    const i = n.info()!;
    this.pd = pd;
    this.lkey = i.lkey;
    this.rkey = i.rkey;
    this.addr = i.addr;
    this.length = length;
    this.access = Object.freeze(access);
    this.target = target;
    this.mapping = memory.mapping;
    this.#memory = memory;
    if (memory.mapping !== undefined) mrMemory.register(this, memory, this);
  }

  protected override didClose(): void {
    mrMemory.unregister(this);
    freeMemory(this.#memory);
  }

  #uses = 0;

  /**
   * @internal One more work request uses the MR: it stays registered until
   * the returned release runs (one native hold for all of them).
   */
  use(): () => void {
    this.acquire();
    return () => this.unuse();
  }

  /** @internal use() without the closure (the posting path's hot form); unuse() once per acquire(). */
  acquire(): void {
    if (this.#uses++ === 0) this.native.hold();
  }

  /** @internal */
  unuse(): void {
    if (--this.#uses === 0) this.native.unhold();
  }

  /**
   * Spins on this thread until the byte at `offset` reads `value` (0-255):
   * how a latency loop waits for a peer's RDMA WRITE, as ib_write_lat
   * spins on its buffer, in native code rather than JS. Bounded:
   * ETIMEDOUT after `options.timeout` ms (default 1000, at most 60000).
   * The bytes the peer wrote before that one are visible once it is. A
   * dma-buf's region has no CPU address: refused.
   */
  pollByte(offset: number, value: number, options?: { timeout?: number }): void {
    const caller = this.pollByte;
    if (typeof offset !== 'number') throw invalidArgType('offset', 'of type number', offset, caller);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.length) throw outOfRange('offset', `an integer >= 0 && < ${this.length} (the region's length)`, offset, caller);
    if (typeof value !== 'number') throw invalidArgType('value', 'of type number', value, caller);
    if (!Number.isInteger(value) || value < 0 || value > 255) throw outOfRange('value', 'an integer >= 0 && <= 255', value, caller);
    const us = spinTimeoutUs(options, 1000, caller);
    this.check(caller);
    const r = this.native.pollByte(offset, value, us);
    if (r === 0) return;
    if (r === -14) throw invalidArgValue('this', 'a MemoryRegion of a dma-buf', 'has no CPU address to poll (register a Mapping, shared memory or pd.allocMemory())', caller);
    const e = sysError(-r, 'pollByte', {}, caller);
    if (r === -110) e.message = `ETIMEDOUT: byte ${offset} did not read ${value} within ${us / 1000} ms, pollByte`;
    throw e;
  }

  /** What a peer needs to WRITE or READ this region: { addr, rkey, length }. */
  remote(): RemoteRegion {
    return { addr: this.addr, rkey: this.rkey, length: this.length };
  }

  /** Closing while work requests use it defers the deregistration until they complete. */
  protected get teardownCall(): string {
    return 'ibv_dereg_mr';
  }
}
