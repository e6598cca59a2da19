// The bytes behind a TypedArray or DataView argument.
#pragma once

#include <node_api.h>

#include <cstddef>

namespace p2pdma {

inline size_t ElementSize(napi_typedarray_type t) {
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
    default:  // float64, bigint64, biguint64
      return 8;
  }
}

// Data pointer (at byteOffset) and byte length of a TypedArray or DataView;
// false if `v` is neither. Works for views of a SharedArrayBuffer too (a
// view's ArrayBuffer() does not: napi_get_arraybuffer_info refuses it). A
// detached view has length 0.
inline bool ViewBytes(napi_env env, napi_value v, void** data, size_t* bytes) {
  napi_typedarray_type type;
  size_t length;
  if (napi_get_typedarray_info(env, v, &type, &length, data, nullptr, nullptr) == napi_ok) {
    *bytes = length * ElementSize(type);
    return true;
  }
  return napi_get_dataview_info(env, v, bytes, data, nullptr, nullptr) == napi_ok;
}

}  // namespace p2pdma
