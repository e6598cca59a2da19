/** Argument checks every verbs object shares. */
import { invalidArgType, outOfRange, validateObject } from '../core/errors';

/** @internal An integer in [0, max], or ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE naming `name`. */
export function toInt(name: string, v: unknown, max: number, caller: Function): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isSafeInteger(v) || v < 0 || v > max) throw outOfRange(name, `an integer >= 0 && <= ${max}`, v, caller);
  return v;
}

/** The longest a native spin may take, in ms: cq.poll(), mr.pollByte(), prepared.postSync(). */
export const SPIN_MAX_MS = 60_000;

/** @internal `options.timeout` of a native spin (ms, `defaultMs` when absent) in microseconds; errors name `caller`. */
export function spinTimeoutUs(options: { timeout?: number } | undefined, defaultMs: number, caller: Function): number {
  if (options === undefined) return defaultMs * 1000;
  validateObject(options, 'options', caller);
  const t = options.timeout;
  if (t === undefined) return defaultMs * 1000;
  if (typeof t !== 'number') throw invalidArgType('options.timeout', 'of type number', t, caller);
  if (!(t >= 0 && t <= SPIN_MAX_MS)) throw outOfRange('options.timeout', `>= 0 && <= ${SPIN_MAX_MS} (ms)`, t, caller);
  return Math.round(t * 1000);
}
