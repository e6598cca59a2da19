/** Memory windows: a remote key for part of an MR, bound and moved on a QP (ibv_alloc_mw, type 1). */
import type { NativeResource } from '../core/native';
import type { MemoryRegion, RemoteRegion } from './mr';
import type { ProtectionDomain } from './pd';
import { RdmaResource } from './resource';

/**
 * A type 1 memory window (pd.allocMw()): `qp.bindMw()` gives it an rkey
 * for a range of an MR (registered with 'mw-bind'); peers use `remote()`.
 * Binding again moves it and changes its rkey; the old one stops working.
 */
export class MemoryWindow extends RdmaResource {
  readonly pd: ProtectionDomain;
  #rkey = 0;
  #bound: { mr: MemoryRegion; offset: number; length: number } | undefined;

  /** @internal */
  constructor(pd: ProtectionDomain, n: NativeResource) {
    super(n);
    this.pd = pd;
  }

  /** The rkey of the last bind (0 before one). */
  get rkey(): number {
    return this.#rkey;
  }

  /** What it is bound to: the MR and range, or undefined. */
  get bound(): { mr: MemoryRegion; offset: number; length: number } | undefined {
    return this.#bound;
  }

  /** What a peer needs to WRITE or READ through it: { addr, rkey, length } of the bound range. */
  remote(): RemoteRegion {
    const b = this.#bound;
    if (b === undefined) return { addr: 0n, rkey: this.#rkey, length: 0 };
    return { addr: b.mr.addr + BigInt(b.offset), rkey: this.#rkey, length: b.length };
  }

  /** @internal a bind was posted: the MR stays registered while the window may point into it. */
  setBound(rkey: number, b: { mr: MemoryRegion; offset: number; length: number }): void {
    b.mr.acquire();
    this.#bound?.mr.unuse();
    this.#rkey = rkey;
    this.#bound = b;
  }

  protected override didClose(): void {
    this.#bound?.mr.unuse();
    this.#bound = undefined;
  }

  protected get teardownCall(): string {
    return 'ibv_dealloc_mw';
  }
}
