// eventfd(2) behind lib/core/eventfd.ts: a pollable counter, for tests and as
// the wake-up primitive of later completion channels. Reads and writes are
// plain 8-byte read(2)/write(2) done from JS.
#include <errno.h>
#include <sys/eventfd.h>

#include "errors.h"
#include "handle.h"
#include "modules.h"

namespace p2pdma {
namespace {

// eventfdCreate(initval, semaphore) -> Fd (EFD_CLOEXEC | EFD_NONBLOCK);
// throws SysError.
Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned initval = U32Arg(info, 0);
  int flags = EFD_CLOEXEC | EFD_NONBLOCK | (info[1].ToBoolean() ? EFD_SEMAPHORE : 0);
  int fd = ::eventfd(initval, flags);
  if (fd == -1) ThrowSys(env, errno, "eventfd");
  return FdWrap::New(env, fd);
}

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
}

}  // namespace p2pdma
