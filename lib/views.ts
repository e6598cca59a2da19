/**
 * The bytes a TypedArray or DataView really spans. A view's `byteLength`
 * property can be redefined (an own property, a subclass getter), so any
 * length that bounds what native code or the kernel touches comes from the
 * intrinsic getters instead.
 */

const typedArrayByteLength = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'byteLength')!.get!;
const dataViewByteLength = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteLength')!.get!;

/** The view's byte length (0 when detached or out of bounds). `view` must pass ArrayBuffer.isView. */
export function viewByteLength(view: ArrayBufferView): number {
  const getter = view instanceof DataView ? dataViewByteLength : typedArrayByteLength;
  try {
    return getter.call(view) as number;
  } catch {
    // A view whose prototype was swapped for the other kind's.
    return (getter === dataViewByteLength ? typedArrayByteLength : dataViewByteLength).call(view) as number;
  }
}
