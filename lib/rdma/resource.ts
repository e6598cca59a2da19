/** What every RDMA object shares: close() once, deferred while children or work are in flight, the GC backstop. */
import { native } from '../core/native';
import { type CodedError, closedError, illegalConstructor, sysError } from '../core/errors';
import type { NativeResource } from '../core/native';

/** native close() returned this: the teardown waits for children or work in flight. */
const DEFERRED = 1;

const gcWarning = new FinalizationRegistry<string>((what) => {
  process.emitWarning(`Closing ${what} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: `Its handle was garbage collected while open. Call close() on it, or declare it with 'using'.`,
  });
});

/** As lib/core/handle.ts warns for an Fd: a deferred teardown failed and nobody awaited it. */
function warnCloseFailed(what: string, cause: Error): void {
  const w = new Error(`Deferred close of ${what} failed: ${cause.message}`, { cause }) as CodedError;
  w.name = 'Warning';
  w.code = 'P2PDMA_CLOSE_FAILED';
  process.emitWarning(w);
}

/**
 * What every RDMA object has: close() (idempotent; with children or work
 * in flight the teardown waits for them), `using` / `await using`, and a
 * `P2PDMA_GC_CLOSE` warning when the GC has to close it.
 */
function isNativeRdma(n: unknown): boolean {
  return n instanceof native.RdmaContext || n instanceof native.RdmaPd || n instanceof native.RdmaCq || n instanceof native.RdmaMr || n instanceof native.RdmaQp || n instanceof native.RdmaSrq || n instanceof native.RdmaAh || n instanceof native.RdmaMw;
}

export abstract class RdmaResource implements Disposable, AsyncDisposable {
  /** @internal */
  readonly native: NativeResource;
  #closed = false;
  #pending: Promise<void> | undefined;
  #awaited = false;

  /** @internal */
  constructor(n: NativeResource) {
    // The classes are exported for instanceof; instances come from Rdma and their parents.
    if (!isNativeRdma(n)) throw illegalConstructor(new.target);
    this.native = n;
    gcWarning.register(this, this.constructor.name, this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Closes. Idempotent. With open children (an MR on this PD...) or work in
   * flight the object reads as closed at once and its kernel object goes
   * when they are gone. Throws a SystemError if an immediate teardown fails.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    gcWarning.unregister(this);
    this.willClose();
    let settle!: (r: number) => void;
    this.#pending = new Promise<void>((resolve, reject) => {
      settle = (r) => (r < 0 ? reject(sysError(-r, this.teardownCall)) : resolve());
    });
    this.#pending.catch(() => undefined);
    this.native.onclose = (r) => {
      this.native.onclose = undefined;
      // Nobody awaits it: say so rather than lose the error.
      if (r < 0 && !this.#awaited) warnCloseFailed(this.describe(), sysError(-r, this.teardownCall));
      settle(r);
      this.didClose();
    };
    const r = this.native.close();
    if (r === DEFERRED) return;
    this.native.onclose = undefined;
    settle(r);
    this.didClose();
    if (r < 0) throw sysError(-r, this.teardownCall, {}, this.close);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes and resolves once the kernel object is gone (after its children and work in flight). */
  [Symbol.asyncDispose](): Promise<void> {
    try {
      this.close();
    } catch (e) {
      return Promise.reject(e);
    }
    this.#awaited = true;
    return this.#pending!;
  }

  /** @internal Throws ERR_P2PDMA_CLOSED once closed. */
  check(caller: Function): void {
    if (this.#closed) throw closedError(this.describe(), caller);
  }

  /** @internal */
  describe(): string {
    return this.constructor.name;
  }

  /** @internal The verb that releases the object, for close errors. */
  protected abstract get teardownCall(): string;
  /** @internal Runs when close() starts. */
  protected willClose(): void {}
  /** @internal Runs when the kernel object is gone. */
  protected didClose(): void {}
}
