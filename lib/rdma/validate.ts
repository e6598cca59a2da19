/** Argument checks every verbs object shares. */
import { invalidArgType, outOfRange } from '../core/errors';

/** @internal An integer in [0, max], or ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE naming `name`. */
export function toInt(name: string, v: unknown, max: number, caller: Function): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isSafeInteger(v) || v < 0 || v > max) throw outOfRange(name, `an integer >= 0 && <= ${max}`, v, caller);
  return v;
}
