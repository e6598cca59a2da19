// The bytes behind a TypedArray or DataView argument: the one place native
// code learns how many bytes a view spans.
#pragma once

#include <node_api.h>

#include <cstddef>

namespace p2pdma {

// Bytes per element of the kinds N-API names; 0 for any other. N-API leaves
// `type` untouched for kinds it predates (Float16Array on Node 24), so a
// caller starts from kUnknownView and never guesses a size.
constexpr napi_typedarray_type kUnknownView = static_cast<napi_typedarray_type>(-1);

inline size_t KnownElementSize(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return 1;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 0;
  }
}

// %TypedArray%.prototype.byteLength applied to `v` (captured at load, so a
// redefined own `byteLength` cannot lie): the size of a kind N-API does not
// name. False if it cannot be had.
bool IntrinsicTypedArrayByteLength(napi_env env, napi_value v, size_t* bytes);

// Data pointer (at byteOffset) and byte length of a TypedArray or DataView;
// false if `v` is neither or its size cannot be known (callers refuse it).
// Works for views of a SharedArrayBuffer too (a view's ArrayBuffer() does
// not: napi_get_arraybuffer_info refuses it). A detached view, or a
// length-tracking one whose resizable buffer shrank below its offset, has
// length 0.
inline bool ViewBytes(napi_env env, napi_value v, void** data, size_t* bytes) {
  napi_typedarray_type type = kUnknownView;
  size_t length = 0;
  if (napi_get_typedarray_info(env, v, &type, &length, data, nullptr, nullptr) == napi_ok) {
    size_t elem = KnownElementSize(type);
    if (elem != 0) {
      *bytes = length * elem;
      return true;
    }
    return IntrinsicTypedArrayByteLength(env, v, bytes);
  }
  return napi_get_dataview_info(env, v, bytes, data, nullptr, nullptr) == napi_ok;
}

}  // namespace p2pdma
