// ioctl(2) behind lib/ioctl.ts.
//
// The sync entry points are the hot path, so they follow the kernel's own
// convention instead of throwing: they return the ioctl's result (undefined
// for 0), or -errno (always in [-4095, -1]) when it failed. lib/ioctl.ts turns that into an
// error. One entry point per argument kind keeps the type dispatch in JS,
// where the JIT makes it free.
#include <errno.h>
#include <sys/ioctl.h>

#include "async.h"
#include "errors.h"
#include "modules.h"

namespace p2pdma {
namespace {

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

// The three sync entry points are raw Node-API callbacks, not
// node-addon-api ones: every Node-API call costs a few nanoseconds, and on
// the hot path they add up next to a ~200 ns syscall. Each does exactly
// get_cb_info, two number reads, at most one argument read and one result.
// They must not throw C++ exceptions; argument errors use napi_throw.

napi_value RawTypeError(napi_env env, const char* what) {
  napi_value msg, code, err;
  std::string m = std::string("invalid argument: ") + what;
  napi_create_string_utf8(env, m.c_str(), m.size(), &msg);
  napi_create_string_utf8(env, "ERR_INVALID_ARG_TYPE", NAPI_AUTO_LENGTH, &code);
  napi_create_type_error(env, code, msg, &err);
  napi_throw(env, err);
  return nullptr;
}

// The common result 0 comes back as undefined: creating a number costs a
// Node-API call, returning nothing does not.
inline napi_value RawRet(napi_env env, int r) {
  if (r == 0) return nullptr;
  napi_value out;
  napi_create_int32(env, r == -1 ? -errno : r, &out);
  return out;
}

// Reads (fd, request) from argv; false (with a pending TypeError) if bad.
inline bool RawFdReq(napi_env env, napi_value* argv, int32_t* fd, uint32_t* req) {
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) return RawTypeError(env, "fd"), false;
  if (napi_get_value_uint32(env, argv[1], req) != napi_ok) return RawTypeError(env, "request"), false;
  return true;
}

// ioctl(fd, request, value?: number) -> result | -errno. The value is an
// integer (TS checked it is safe); negative values pass as two's complement.
napi_value IoctlNumber(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd;
  uint32_t req;
  if (argc < 2 || !RawFdReq(env, argv, &fd, &req)) return argc < 2 ? RawTypeError(env, "argc") : nullptr;
  int64_t v = 0;
  if (argc > 2 && napi_get_value_int64(env, argv[2], &v) != napi_ok) {
    napi_valuetype t;
    napi_typeof(env, argv[2], &t);
    if (t != napi_undefined) return RawTypeError(env, "arg");
  }
  return RawRet(env, ::ioctl(fd, static_cast<unsigned long>(req), static_cast<unsigned long>(v)));
}

// ioctlBigInt(fd, request, value: bigint in [0, 2^64)) -> result | -errno.
napi_value IoctlBigInt(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd;
  uint32_t req;
  if (argc < 3) return RawTypeError(env, "argc");
  if (!RawFdReq(env, argv, &fd, &req)) return nullptr;
  uint64_t v;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(env, argv[2], &v, &lossless) != napi_ok || !lossless) return RawTypeError(env, "arg");
  return RawRet(env, ::ioctl(fd, static_cast<unsigned long>(req), static_cast<unsigned long>(v)));
}

// ioctlView(fd, request, view) -> result | -errno. The kernel reads and
// writes the view's bytes in place.
napi_value IoctlView(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd;
  uint32_t req;
  if (argc < 3) return RawTypeError(env, "argc");
  if (!RawFdReq(env, argv, &fd, &req)) return nullptr;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, argv[2], nullptr, nullptr, &data, nullptr, nullptr) != napi_ok &&
      napi_get_dataview_info(env, argv[2], nullptr, &data, nullptr, nullptr) != napi_ok)
    return RawTypeError(env, "arg");
  return RawRet(env, ::ioctl(fd, static_cast<unsigned long>(req), data));
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
  const struct {
    const char* name;
    napi_callback cb;
  } raw[] = {{"ioctl", IoctlNumber}, {"ioctlBigInt", IoctlBigInt}, {"ioctlView", IoctlView}};
  for (const auto& f : raw) {
    napi_value fn;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn));
    exports.Set(f.name, Napi::Value(env, fn));
  }
  exports.Set("ioctlAsync", Napi::Function::New(env, IoctlAsync, "ioctlAsync"));
}

}  // namespace p2pdma
