/** Memory windows: a remote key for part of an MR, bound on a QP (ibv_alloc_mw, types 1 and 2). */
import type { NativeResource } from '../core/native';
import type { MemoryRegion, RemoteRegion } from './mr';
import type { ProtectionDomain } from './pd';
import { RdmaResource } from './resource';

/**
 * A memory window (pd.allocMw()): `qp.bindMw()` gives it an rkey for a
 * range of an MR (registered with 'mw-bind'); peers use `remote()`.
 * Type 1: binding again moves it and changes its rkey; the old one stops
 * working. Type 2: bound to the QP that posted the bind (peers reach it
 * through that QP only) until invalidated (`qp.localInvalidate()`, or a
 * peer's SEND with `{ invalidate: mw.rkey }`); then its rkey stops working
 * and it may be bound again.
 */
export class MemoryWindow extends RdmaResource {
  readonly pd: ProtectionDomain;
  /** 1 or 2 (IBV_MW_TYPE_1, IBV_MW_TYPE_2). */
  readonly type: 1 | 2;
  #rkey = 0;
  #bound: { mr: MemoryRegion; offset: number; length: number } | undefined;

  /** @internal */
  constructor(pd: ProtectionDomain, n: NativeResource, type: 1 | 2 = 1) {
    super(n);
    this.pd = pd;
    this.type = type;
  }

  /** The rkey of the last bind (0 before one). */
  get rkey(): number {
    return this.#rkey;
  }

  /** What it is bound to: the MR and range, or undefined (never bound, or invalidated). */
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

  /** @internal a type 2 window's invalidation completed (LOCAL_INV, or a peer's SEND_WITH_INV arrived): its MR is free. */
  invalidated(): void {
    this.#bound?.mr.unuse();
    this.#bound = undefined;
  }

  protected override didClose(): void {
    this.#bound?.mr.unuse();
    this.#bound = undefined;
    if (this.type === 2) this.pd.forgetWindow(this);
  }

  protected get teardownCall(): string {
    return 'ibv_dealloc_mw';
  }
}
