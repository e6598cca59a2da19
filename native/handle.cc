// File descriptor primitives behind lib/handle.ts.
#include <errno.h>
#include <unistd.h>

#include "errors.h"
#include "modules.h"

namespace p2pdma {
namespace {

// close(fd) -> 0 or -errno. EINTR is not retried: on Linux the fd is gone.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  int r = ::close(fd);
  return Napi::Number::New(info.Env(), r == -1 && errno != EINTR ? -errno : 0);
}

}  // namespace

void InitHandle(Napi::Env env, Napi::Object exports) {
  exports.Set("close", Napi::Function::New(env, Close, "close"));
}

}  // namespace p2pdma
