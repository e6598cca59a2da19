/** Address handles: the destination of a UD send (ibv_create_ah). */
import type { NativeResource } from '../core/native';
import { RdmaResource } from './resource';
import type { ProtectionDomain } from './pd';

/** Where a UD send goes: a port and GID route to a peer (pd.createAh()). */
export class AddressHandle extends RdmaResource {
  readonly pd: ProtectionDomain;
  /** The destination GID, as info() writes GIDs. */
  readonly gid: string;
  #uses = 0;

  /** @internal */
  constructor(pd: ProtectionDomain, n: NativeResource, gid: string) {
    super(n);
    this.pd = pd;
    this.gid = gid;
  }

  /** @internal a UD send uses it until its completion: closing meanwhile defers ibv_destroy_ah. */
  acquire(): void {
    if (this.#uses++ === 0) this.native.hold();
  }

  /** @internal */
  unuse(): void {
    if (--this.#uses === 0) this.native.unhold();
  }

  protected get teardownCall(): string {
    return 'ibv_destroy_ah';
  }
}
