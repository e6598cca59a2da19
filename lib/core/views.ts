/**
 * The bytes a TypedArray or DataView really spans. A view's `byteLength`
 * property can be redefined (an own property, a subclass getter), so any
 * length that bounds what native code or the kernel touches comes from the
 * intrinsic getters instead.
 */
import { types } from 'node:util';

const typedArrayByteLength = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'byteLength')!.get!;
const dataViewByteLength = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteLength')!.get!;

/**
 * The view's byte length: 0 when detached or out of bounds (a view of a
 * resizable buffer that shrank below it). `view` must pass
 * ArrayBuffer.isView. The kind comes from the object's internal slots, not
 * its prototype, which JS can swap.
 */
export function viewByteLength(view: ArrayBufferView): number {
  if (!types.isDataView(view)) return typedArrayByteLength.call(view) as number;
  try {
    return dataViewByteLength.call(view) as number;
  } catch {
    // DataView's getter throws where TypedArray's returns 0.
    return 0;
  }
}
