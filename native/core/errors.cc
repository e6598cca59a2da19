#include "errors.h"

#include <dlfcn.h>
#include <string.h>

#include <cmath>

namespace p2pdma {

Napi::Error SysError(Napi::Env env, int err, const char* syscall, int fd) {
  Napi::Error e = Napi::Error::New(env, "errno " + std::to_string(err));
  Napi::Object o = e.Value();
  o.Set("sysErrno", Napi::Number::New(env, err));
  o.Set("syscall", Napi::String::New(env, syscall));
  if (fd >= 0) o.Set("fd", Napi::Number::New(env, fd));
  return e;
}

void ThrowSys(Napi::Env env, int err, const char* syscall, int fd) {
  throw SysError(env, err, syscall, fd);
}

void ThrowType(Napi::Env env, const char* what) {
  Napi::TypeError e = Napi::TypeError::New(env, std::string("invalid argument: ") + what);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

void ThrowRange(Napi::Env env, const char* what) {
  Napi::RangeError e = Napi::RangeError::New(env, std::string("out of range: ") + what);
  e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw e;
}

int32_t FdArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowType(info.Env(), "fd");
  // Int32Value() wraps: 2**32 would read as fd 0.
  double d = v.As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(d, 0, INT32_MAX)) ThrowRange(info.Env(), "fd");
  return static_cast<int32_t>(d);
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowType(info.Env(), "u32");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(d, 0, UINT32_MAX)) ThrowRange(info.Env(), "u32");
  return static_cast<uint32_t>(d);
}

uint64_t U64Arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowType(info.Env(), "u64");
    return r;
  }
  if (!v.IsNumber()) ThrowType(info.Env(), "u64");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) ThrowType(info.Env(), "u64");
  return static_cast<uint64_t>(d);
}

namespace {

// glibc >= 2.32 only, and absent from musl: looked up at run time so the
// addon still loads there (lib/core/errors.ts then falls back to Node's names).
using StrerrorFn = const char* (*)(int);

// errnoTable() -> { names: (string | undefined)[], descriptions: (string | undefined)[] }
// indexed by positive errno 0..4095, from the C library. Called once.
Napi::Value ErrnoTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto name_of = reinterpret_cast<StrerrorFn>(::dlsym(RTLD_DEFAULT, "strerrorname_np"));
  auto desc_of = reinterpret_cast<StrerrorFn>(::dlsym(RTLD_DEFAULT, "strerrordesc_np"));
  constexpr int kMaxErrno = 4095;
  Napi::Array names = Napi::Array::New(env, kMaxErrno + 1);
  Napi::Array descs = Napi::Array::New(env, kMaxErrno + 1);
  for (int n = 1; n <= kMaxErrno; n++) {
    const char* name = name_of != nullptr ? name_of(n) : nullptr;
    if (name != nullptr) names.Set(n, name);
    const char* desc = nullptr;
    char buf[256];
    if (desc_of != nullptr) {
      desc = desc_of(n);
    } else {
      // GNU strerror_r (_GNU_SOURCE); "Unknown error N" means no entry.
      desc = ::strerror_r(n, buf, sizeof buf);
      if (desc != nullptr && ::strncmp(desc, "Unknown error", 13) == 0) desc = nullptr;
    }
    if (desc != nullptr) descs.Set(n, desc);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("names", names);
  r.Set("descriptions", descs);
  return r;
}

}  // namespace

void InitErrors(Napi::Env env, Napi::Object exports) {
  exports.Set("errnoTable", Napi::Function::New(env, ErrnoTable, "errnoTable"));
}

}  // namespace p2pdma
