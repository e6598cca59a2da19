// ioctl(2) behind lib/core/ioctl.ts.
//
// The sync entry points are the hot path, so they follow the kernel's own
// convention instead of throwing: they return the ioctl's result (undefined
// for 0), or -errno (always in [-4095, -1]) when it failed. lib/core/ioctl.ts turns that into an
// error. One entry point per argument kind keeps the type dispatch in JS,
// where the JIT makes it free.
//
// lib/core/ioctl.ts validates everything first and words the errors; the checks
// here are a backstop that keeps a direct caller of the binding from passing
// a wrapped or fractional number.
#include <errno.h>
#include <string.h>
#include <linux/dma-buf.h>
#include <sys/ioctl.h>

#include <vector>

#include "async.h"
#include "errors.h"
#include "ioctl.h"
#include "modules.h"
#include "views.h"

namespace p2pdma {
namespace {

// The promise form copies a view's bytes; larger views are refused (the
// encoded size of a request is at most 16383 bytes on every architecture).
constexpr size_t kMaxAsyncCopy = 16384;

// The three sync entry points are raw Node-API callbacks, not
// node-addon-api ones: every Node-API call costs a few nanoseconds, and on
// the hot path they add up next to a ~200 ns syscall. Each does exactly
// get_cb_info, two number reads, at most one argument read and one result.
// They must not throw C++ exceptions; argument errors use napi_throw.

napi_value RawThrow(napi_env env, bool range, const char* what) {
  napi_value msg, code, err;
  std::string m = std::string(range ? "out of range: " : "invalid argument: ") + what;
  napi_create_string_utf8(env, m.c_str(), m.size(), &msg);
  napi_create_string_utf8(env, range ? "ERR_OUT_OF_RANGE" : "ERR_INVALID_ARG_TYPE", NAPI_AUTO_LENGTH, &code);
  if (range)
    napi_create_range_error(env, code, msg, &err);
  else
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

// Reads the call's arguments into argv[3] and (fd, request) from the first
// two; false (with a pending error) if there are fewer than `need` or fd or
// request is bad. Reads doubles: napi_get_value_int32/uint32 wrap, so 2**32
// would be fd 0.
inline bool RawArgs(napi_env env, napi_callback_info info, size_t need, napi_value* argv, size_t* argc,
                    int32_t* fd, uint32_t* req) {
  *argc = 3;
  napi_get_cb_info(env, info, argc, argv, nullptr, nullptr);
  if (*argc < need) return RawThrow(env, false, "argc"), false;
  double f, r;
  if (napi_get_value_double(env, argv[0], &f) != napi_ok) return RawThrow(env, false, "fd"), false;
  if (!IsIntegerIn(f, 0, INT32_MAX)) return RawThrow(env, true, "fd"), false;
  if (napi_get_value_double(env, argv[1], &r) != napi_ok) return RawThrow(env, false, "request"), false;
  if (!IsIntegerIn(r, 0, UINT32_MAX)) return RawThrow(env, true, "request"), false;
  *fd = static_cast<int32_t>(f);
  *req = static_cast<uint32_t>(r);
  return true;
}

// A number argument: a safe integer (negative ones pass as two's complement).
inline bool SafeInteger(double d) {
  return IsIntegerIn(d, -9007199254740991.0, 9007199254740991.0);
}

// ioctl(fd, request, value?: number) -> result | -errno.
napi_value IoctlNumber(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[3];
  int32_t fd;
  uint32_t req;
  if (!RawArgs(env, info, 2, argv, &argc, &fd, &req)) return nullptr;
  double v = 0;
  if (argc > 2 && napi_get_value_double(env, argv[2], &v) != napi_ok) {
    napi_valuetype t;
    napi_typeof(env, argv[2], &t);
    if (t != napi_undefined) return RawThrow(env, false, "arg");
  }
  if (!SafeInteger(v)) return RawThrow(env, true, "arg");
  return RawRet(env, ::ioctl(fd, static_cast<unsigned long>(req), static_cast<unsigned long>(static_cast<int64_t>(v))));
}

// ioctlBigInt(fd, request, value: bigint in [0, 2^64)) -> result | -errno.
napi_value IoctlBigInt(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[3];
  int32_t fd;
  uint32_t req;
  if (!RawArgs(env, info, 3, argv, &argc, &fd, &req)) return nullptr;
  uint64_t v;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(env, argv[2], &v, &lossless) != napi_ok) return RawThrow(env, false, "arg");
  if (!lossless) return RawThrow(env, true, "arg");
  return RawRet(env, ::ioctl(fd, static_cast<unsigned long>(req), static_cast<unsigned long>(v)));
}

// ioctlView(fd, request, view) -> result | -errno. The kernel reads and
// writes the view's bytes in place. The view's size is checked in
// lib/core/ioctl.ts only: reading its element type here costs ~20 ns per call.
napi_value IoctlView(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[3];
  int32_t fd;
  uint32_t req;
  if (!RawArgs(env, info, 3, argv, &argc, &fd, &req)) return nullptr;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, argv[2], nullptr, nullptr, &data, nullptr, nullptr) != napi_ok &&
      napi_get_dataview_info(env, argv[2], nullptr, &data, nullptr, nullptr) != napi_ok)
    return RawThrow(env, false, "arg");
  return RawRet(env, ::ioctl(fd, static_cast<unsigned long>(req), data));
}

// dmabufSync(fd, flags) -> undefined | -errno: DMA_BUF_IOCTL_SYNC with
// the struct on the stack, the hot path of DmaBuf CPU-access brackets (two
// per bracket): no view to look up, nothing allocated.
napi_value DmaBufSync(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[3];
  int32_t fd;
  uint32_t flags;
  if (!RawArgs(env, info, 2, argv, &argc, &fd, &flags)) return nullptr;
  if ((flags & ~static_cast<uint32_t>(DMA_BUF_SYNC_VALID_FLAGS_MASK)) != 0) return RawThrow(env, true, "flags");
  dma_buf_sync s = {flags};
  return RawRet(env, ::ioctl(fd, DMA_BUF_IOCTL_SYNC, &s));
}

// The promise form. A view is not passed in place: its memory could be
// detached, transferred or unmapped while the call runs on the pool, and the
// kernel would then write into memory it no longer owns. The bytes are
// copied in when the call starts and copied back on the JS thread when it
// settles, only if the view still has the same memory and length and the
// call was not aborted.
class IoctlWorker : public PromiseWorker {
 public:
  IoctlWorker(Napi::Env env, int fd, unsigned long req, unsigned long arg)
      : PromiseWorker(env, "p2pdma:ioctl", "ioctl", fd), fd_(fd), req_(req), arg_(arg) {}

  void CopyView(Napi::Value view, const void* data, size_t bytes) {
    by_copy_ = true;
    view_ = Napi::Persistent(view.As<Napi::Object>());
    copy_.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
    // A 0-byte view still passes a valid pointer, as it does in place.
    if (copy_.empty()) copy_.reserve(1);
  }
  void WatchAbort(Napi::Value signal) {
    if (signal.IsObject()) signal_ = Napi::Persistent(signal.As<Napi::Object>());
  }

 protected:
  void Run() override {
    unsigned long arg = !by_copy_ ? arg_ : reinterpret_cast<unsigned long>(copy_.data());
    result_ = ::ioctl(fd_, req_, arg);
    if (result_ == -1) err_ = errno;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, result_); }
  void Settled(Napi::Env env) override {
    if (!by_copy_ || copy_.empty()) return;
    // lib/core/ioctl.ts has already rejected with AbortError: the caller was told
    // the call did not complete, so its view must not change.
    if (!signal_.IsEmpty() && signal_.Value().Get("aborted").ToBoolean()) return;
    // The view as it is now: detached, shrunk or resized views (length 0 or
    // another size) get nothing back.
    size_t bytes = 0;
    void* data = nullptr;
    if (!ViewBytes(env, view_.Value(), &data, &bytes)) return;
    if (data == nullptr || bytes != copy_.size()) return;
    ::memcpy(data, copy_.data(), bytes);
  }

 private:
  int fd_;
  unsigned long req_;
  unsigned long arg_;
  int result_ = 0;
  bool by_copy_ = false;
  Napi::ObjectReference view_;
  Napi::ObjectReference signal_;
  std::vector<uint8_t> copy_;
};

// ioctlAsync(fd, request, arg, keepAlive?, signal?) -> Promise<result>.
// `arg` is undefined, a number, a bigint or a view (copied, <= 16 KiB);
// `keepAlive` (the handle the fd came from) stays referenced until the
// promise settles; an aborted `signal` at settlement skips the copy-back.
Napi::Value IoctlAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  uint32_t req = U32Arg(info, 1);
  Napi::Value a = info[2];
  unsigned long arg = 0;
  void* data = nullptr;
  size_t bytes = 0;
  bool is_view = false;
  if (a.IsNumber()) {
    double d = a.As<Napi::Number>().DoubleValue();
    if (!SafeInteger(d)) ThrowRange(env, "arg");
    arg = static_cast<unsigned long>(static_cast<int64_t>(d));
  } else if (a.IsBigInt()) {
    bool lossless = false;
    arg = static_cast<unsigned long>(a.As<Napi::BigInt>().Uint64Value(&lossless));
    if (!lossless) ThrowRange(env, "arg");
  } else if (!a.IsUndefined()) {
    if (!ViewBytes(env, a, &data, &bytes)) ThrowType(env, "arg");
    if (bytes < EncodedSize(req)) ThrowRange(env, "view smaller than the request's size");
    if (bytes > kMaxAsyncCopy) ThrowRange(env, "view larger than 16 KiB");
    is_view = true;
  }
  auto* w = new IoctlWorker(env, fd, req, arg);
  if (is_view) w->CopyView(a, data, bytes);
  w->Keep(info[3]);
  w->WatchAbort(info[4]);
  return w->Start();
}

}  // namespace

void InitIoctl(Napi::Env env, Napi::Object exports) {
  const struct {
    const char* name;
    napi_callback cb;
  } raw[] = {{"ioctl", IoctlNumber}, {"ioctlBigInt", IoctlBigInt}, {"ioctlView", IoctlView}, {"dmabufSync", DmaBufSync}};
  for (const auto& f : raw) {
    napi_value fn;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn));
    exports.Set(f.name, Napi::Value(env, fn));
  }
  exports.Set("ioctlAsync", Napi::Function::New(env, IoctlAsync, "ioctlAsync"));
}

}  // namespace p2pdma
