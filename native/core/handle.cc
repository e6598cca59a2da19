// Fd: the resource that owns one file descriptor (behind lib/core/handle.ts).
#include "handle.h"

#include <errno.h>
#include <unistd.h>

#include "errors.h"
#include "modules.h"
#include "views.h"

namespace p2pdma {

// new Fd(fd): takes ownership of `fd`.
FdWrap::FdWrap(const Napi::CallbackInfo& info) : ResourceWrap<FdWrap>(info) { fd_ = FdArg(info, 0); }

Napi::Function FdWrap::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&FdWrap::Release>("release"));
  props.push_back(InstanceAccessor<&FdWrap::GetFd>("fd"));
  return DefineClass(env, "Fd", props);
}

Napi::Object FdWrap::New(Napi::Env env, int fd) {
  try {
    return EnvState::Get(env)->fd_class.New({Napi::Number::New(env, fd)});
  } catch (...) {
    ::close(fd);
    throw;
  }
}

// close(2) once. EINTR is not an error: on Linux the fd is gone either way.
int FdWrap::Teardown() {
  int r = ::close(fd_);
  return r == -1 && errno != EINTR ? -errno : 0;
}

// release() -> the fd (now the caller's) or -EBUSY.
Napi::Value FdWrap::Release(const Napi::CallbackInfo& info) {
  int r = Disown();
  return Napi::Number::New(info.Env(), r < 0 ? r : fd_);
}

Napi::Value FdWrap::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

bool IntrinsicTypedArrayByteLength(napi_env env, napi_value v, size_t* bytes) {
  EnvState* s = EnvState::Get(Napi::Env(env));
  if (s == nullptr || s->typed_array_byte_length.IsEmpty()) return false;
  napi_value n;
  if (napi_call_function(env, v, s->typed_array_byte_length.Value(), 0, nullptr, &n) != napi_ok) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
    return false;
  }
  double d;
  if (napi_get_value_double(env, n, &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0) return false;
  *bytes = static_cast<size_t>(d);
  return true;
}

void InitHandle(Napi::Env env, Napi::Object exports) {
  EnvState::Init(env);
  EnvState* s = EnvState::Get(env);
  Napi::Function fd = FdWrap::Define(env);
  s->fd_class = Napi::Persistent(fd);
  exports.Set("Fd", fd);
  // Taken now, before user code could redefine anything.
  Napi::Object global = env.Global();
  Napi::Value u8proto = global.Get("Uint8Array").As<Napi::Object>().Get("prototype");
  napi_value typed_array_proto;
  NAPI_THROW_IF_FAILED_VOID(env, napi_get_prototype(env, u8proto, &typed_array_proto));
  Napi::Function describe = global.Get("Object").As<Napi::Object>().Get("getOwnPropertyDescriptor").As<Napi::Function>();
  Napi::Value desc = describe.Call({Napi::Value(env, typed_array_proto), Napi::String::New(env, "byteLength")});
  s->typed_array_byte_length = Napi::Persistent(desc.As<Napi::Object>().Get("get").As<Napi::Function>());
}

}  // namespace p2pdma
