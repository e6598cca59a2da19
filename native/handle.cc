// Fd: the resource that owns one file descriptor (behind lib/handle.ts).
#include "handle.h"

#include <errno.h>
#include <unistd.h>

#include "errors.h"
#include "modules.h"

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

void InitHandle(Napi::Env env, Napi::Object exports) {
  EnvState::Init(env);
  Napi::Function fd = FdWrap::Define(env);
  EnvState::Get(env)->fd_class = Napi::Persistent(fd);
  exports.Set("Fd", fd);
}

}  // namespace p2pdma
