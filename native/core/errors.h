// Errno helpers shared by every native module.
//
// Native code never formats error messages: it reports what failed (the
// positive errno, the syscall and the fd) and the TypeScript layer
// (lib/core/errors.ts) turns that into a Node-style Error with code, negative
// errno, syscall, fd and request name.
#pragma once

#include <napi.h>

namespace p2pdma {

// A tiny error object: Error('errno <n>') with own properties
// `sysErrno` (positive), `syscall` and, when fd >= 0, `fd`.
// lib/core/errors.ts recognises it by the `sysErrno` property.
Napi::Error SysError(Napi::Env env, int err, const char* syscall, int fd = -1);

// Throws SysError as a C++ exception (NAPI_CPP_EXCEPTIONS is on).
[[noreturn]] void ThrowSys(Napi::Env env, int err, const char* syscall, int fd = -1);

// Argument guards for the few checks native code repeats after the TS layer
// has already validated: they only stop a crash, the messages are terse.
[[noreturn]] void ThrowType(Napi::Env env, const char* what);
// RangeError with code ERR_OUT_OF_RANGE.
[[noreturn]] void ThrowRange(Napi::Env env, const char* what);
// Whether d is an integer in [lo, hi] (false for NaN and fractions);
// lo and hi within +-2^63. Inline: the sync ioctl entry points use it per call.
inline bool IsIntegerIn(double d, double lo, double hi) {
  // NaN fails both comparisons; in range, the cast is exact for integers
  // (and cheaper than std::trunc, a libm call without SSE4.1).
  return d >= lo && d <= hi && static_cast<double>(static_cast<int64_t>(d)) == d;
}
// Both reject anything but an integer in range: Node-API's int32/uint32
// getters would wrap 2**32 to 0 and truncate 1.5 to 1.
int32_t FdArg(const Napi::CallbackInfo& info, size_t i);
uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i);
// Accepts a non-negative safe-integer number or a bigint (u64).
uint64_t U64Arg(const Napi::CallbackInfo& info, size_t i);

}  // namespace p2pdma
