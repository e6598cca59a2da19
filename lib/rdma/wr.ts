/** What QPs and SRQs share when posting: request ids, and a local buffer checked. */
import { closedError, invalidArgType, outOfRange } from '../core/errors';
import { MemoryRegion } from './mr';
import { toInt } from './validate';

let nextWrId = 1;

/** A wr_id no other request of this process has: a CQ shared by QPs and SRQs settles by it. */
export function takeWrId(): number {
  return nextWrId++;
}

/** `n` consecutive wr_ids (a prepared request's chain): the first. */
export function takeWrIds(n: number): number {
  const first = nextWrId;
  nextWrId += n;
  return first;
}

/** @internal a LocalBuffer checked: an open MR and a range inside it. */
export function toLocal(v: unknown, caller: Function): { mr: MemoryRegion; offset: number; length: number } {
  let mr: unknown;
  let offset = 0;
  let length: number | undefined;
  if (v instanceof MemoryRegion) mr = v;
  else if (typeof v === 'object' && v !== null) {
    const o = v as { mr?: unknown; offset?: number; length?: number };
    mr = o.mr;
    if (o.offset !== undefined) offset = toInt('local.offset', o.offset, Number.MAX_SAFE_INTEGER, caller);
    if (o.length !== undefined) length = toInt('local.length', o.length, Number.MAX_SAFE_INTEGER, caller);
  }
  if (!(mr instanceof MemoryRegion)) throw invalidArgType('local', 'a MemoryRegion or { mr, offset?, length? }', v, caller);
  if (mr.closed) throw closedError('MemoryRegion (deregistered)', caller);
  if (offset > mr.length) throw outOfRange('local.offset', `<= ${mr.length} (the memory region's length)`, offset, caller);
  if (length === undefined) length = mr.length - offset;
  if (offset + length > mr.length) throw outOfRange('local.length', `<= ${mr.length - offset} (the memory region's length after offset)`, length, caller);
  return { mr, offset, length };
}

