#include "errors.h"

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

int32_t FdArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowType(info.Env(), "fd");
  int32_t fd = v.As<Napi::Number>().Int32Value();
  if (fd < 0) ThrowType(info.Env(), "fd");
  return fd;
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowType(info.Env(), "u32");
  return v.As<Napi::Number>().Uint32Value();
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

}  // namespace p2pdma
