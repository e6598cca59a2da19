// memfd_create(2) behind lib/core/memfd.ts.
#include <errno.h>
#include <sys/mman.h>

#include "errors.h"
#include "handle.h"
#include "modules.h"

namespace p2pdma {
namespace {

// memfdCreate(name, flags) -> Fd; throws SysError. Always MFD_CLOEXEC.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "name");
  std::string name = info[0].As<Napi::String>();
  unsigned flags = U32Arg(info, 1) | MFD_CLOEXEC;
  int fd = ::memfd_create(name.c_str(), flags);
  if (fd == -1) ThrowSys(env, errno, "memfd_create");
  return FdWrap::New(env, fd);
}

}  // namespace

void InitMemfd(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("MFD_CLOEXEC", Napi::Number::New(env, MFD_CLOEXEC));
  c.Set("MFD_ALLOW_SEALING", Napi::Number::New(env, MFD_ALLOW_SEALING));
  exports.Set("memfdConstants", c);
}

}  // namespace p2pdma
