// ioctl(2) behind lib/ioctl.ts.
//
// The sync entry points are the hot path, so they follow the kernel's own
// convention instead of throwing: they return the ioctl's result, or -errno
// (always in [-4095, -1]) when it failed. lib/ioctl.ts turns that into an
// error. One entry point per argument kind keeps the type dispatch in JS,
// where the JIT makes it free.
#include <errno.h>
#include <sys/ioctl.h>

#include "async.h"
#include "errors.h"
#include "modules.h"

namespace p2pdma {
namespace {

inline Napi::Value Ret(Napi::Env env, int r) {
  return Napi::Number::New(env, r == -1 ? -errno : r);
}

// Pointer to the bytes of a Buffer/TypedArray/DataView at its byteOffset.
void* ViewData(Napi::Env env, Napi::Value v) {
  void* data = nullptr;
  napi_status s;
  if (v.IsTypedArray()) {
    s = napi_get_typedarray_info(env, v, nullptr, nullptr, &data, nullptr, nullptr);
  } else if (v.IsDataView()) {
    s = napi_get_dataview_info(env, v, nullptr, &data, nullptr, nullptr);
  } else {
    ThrowType(env, "arg");
  }
  if (s != napi_ok) ThrowType(env, "arg");
  return data;
}

// ioctl(fd, request, value?: number) -> result | -errno. Value is an integer
// (TS checked it is safe); negative values pass as two's complement.
Napi::Value IoctlNumber(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  unsigned long req = U32Arg(info, 1);
  unsigned long arg = 0;
  if (info.Length() > 2 && info[2].IsNumber())
    arg = static_cast<unsigned long>(info[2].As<Napi::Number>().Int64Value());
  return Ret(env, ::ioctl(fd, req, arg));
}

// ioctlBigInt(fd, request, value: bigint in [0, 2^64)) -> result | -errno.
Napi::Value IoctlBigInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  unsigned long req = U32Arg(info, 1);
  if (!info[2].IsBigInt()) ThrowType(env, "arg");
  bool lossless = false;
  uint64_t v = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowType(env, "arg");
  return Ret(env, ::ioctl(fd, req, static_cast<unsigned long>(v)));
}

// ioctlView(fd, request, view) -> result | -errno. The kernel reads and
// writes the view's bytes in place.
Napi::Value IoctlView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  unsigned long req = U32Arg(info, 1);
  void* data = ViewData(env, info[2]);
  return Ret(env, ::ioctl(fd, req, data));
}

class IoctlWorker : public PromiseWorker {
 public:
  IoctlWorker(Napi::Env env, int fd, unsigned long req, unsigned long arg)
      : PromiseWorker(env, "p2pdma:ioctl", "ioctl", fd), fd_(fd), req_(req), arg_(arg) {}

 protected:
  void Run() override {
    result_ = ::ioctl(fd_, req_, arg_);
    if (result_ == -1) err_ = errno;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, result_); }

 private:
  int fd_;
  unsigned long req_;
  unsigned long arg_;
  int result_ = 0;
};

// ioctlAsync(fd, request, arg, keepAlive) -> Promise<result>. `arg` is
// undefined, a number, a bigint or a view; the view and `keepAlive` (the
// handle the fd came from) stay referenced until the promise settles.
Napi::Value IoctlAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  unsigned long req = U32Arg(info, 1);
  Napi::Value a = info[2];
  unsigned long arg = 0;
  if (a.IsNumber()) {
    arg = static_cast<unsigned long>(a.As<Napi::Number>().Int64Value());
  } else if (a.IsBigInt()) {
    bool lossless = false;
    arg = static_cast<unsigned long>(a.As<Napi::BigInt>().Uint64Value(&lossless));
    if (!lossless) ThrowType(env, "arg");
  } else if (!a.IsUndefined()) {
    arg = reinterpret_cast<unsigned long>(ViewData(env, a));
  }
  auto* w = new IoctlWorker(env, fd, req, arg);
  w->Keep(a);
  w->Keep(info[3]);
  return w->Start();
}

}  // namespace

void InitIoctl(Napi::Env env, Napi::Object exports) {
  exports.Set("ioctl", Napi::Function::New(env, IoctlNumber, "ioctl"));
  exports.Set("ioctlBigInt", Napi::Function::New(env, IoctlBigInt, "ioctlBigInt"));
  exports.Set("ioctlView", Napi::Function::New(env, IoctlView, "ioctlView"));
  exports.Set("ioctlAsync", Napi::Function::New(env, IoctlAsync, "ioctlAsync"));
}

}  // namespace p2pdma
