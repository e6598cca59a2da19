// memfd seals behind lib/dmabuf/udmabuf.ts: UDMABUF_CREATE wants F_SEAL_SHRINK on
// the memfd (and no F_SEAL_WRITE), and Node has no fcntl().
#include <errno.h>
#include <fcntl.h>

#include "../core/errors.h"
#include "../core/modules.h"

namespace p2pdma {
namespace {

// addSeals(fd, seals) -> undefined; throws SysError('fcntl').
Napi::Value AddSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  if (::fcntl(fd, F_ADD_SEALS, static_cast<int>(U32Arg(info, 1))) == -1) ThrowSys(env, errno, "fcntl", fd);
  return env.Undefined();
}

// getSeals(fd) -> seals; throws SysError('fcntl') (EINVAL: not a memfd).
Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  int r = ::fcntl(fd, F_GET_SEALS);
  if (r == -1) ThrowSys(env, errno, "fcntl", fd);
  return Napi::Number::New(env, r);
}

}  // namespace

void InitUdmabuf(Napi::Env env, Napi::Object exports) {
  exports.Set("addSeals", Napi::Function::New(env, AddSeals, "addSeals"));
  exports.Set("getSeals", Napi::Function::New(env, GetSeals, "getSeals"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("F_SEAL_SEAL", Napi::Number::New(env, F_SEAL_SEAL));
  c.Set("F_SEAL_SHRINK", Napi::Number::New(env, F_SEAL_SHRINK));
  c.Set("F_SEAL_GROW", Napi::Number::New(env, F_SEAL_GROW));
  c.Set("F_SEAL_WRITE", Napi::Number::New(env, F_SEAL_WRITE));
  exports.Set("sealConstants", c);
}

}  // namespace p2pdma
