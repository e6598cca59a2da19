/**
 * The bytes a TypedArray or DataView really spans. A view's `byteLength`
 * property can be redefined (an own property, a subclass getter), so any
 * length that bounds what native code or the kernel touches comes from the
 * intrinsic getters instead.
 */
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
const typedArrayByteLength = Object.getOwnPropertyDescriptor(TypedArrayPrototype, 'byteLength')!.get!;
// undefined for anything but a TypedArray. A builtin the JIT inlines, where
// util.types.isDataView is a call into C++, ~10 ns on the host and dearer
// under TCG, on ioctlSync's hot path (docs/benchmarks/profiles-2026-12-07.md).
const typedArrayTag = Object.getOwnPropertyDescriptor(TypedArrayPrototype, Symbol.toStringTag)!.get!;
const dataViewByteLength = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteLength')!.get!;

/**
 * The view's byte length: 0 when detached or out of bounds (a view of a
 * resizable buffer that shrank below it). `view` must pass
 * ArrayBuffer.isView. The kind comes from the object's internal slots, not
 * its prototype, which JS can swap.
 */
export function viewByteLength(view: ArrayBufferView): number {
  if (typedArrayTag.call(view) !== undefined) return typedArrayByteLength.call(view) as number;
  try {
    return dataViewByteLength.call(view) as number;
  } catch {
    // DataView's getter throws where TypedArray's returns 0.
    return 0;
  }
}
