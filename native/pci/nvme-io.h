// What the NVMe I/O of native/pci/nvme.cc and nvme-copy.cc shares: the
// staging of a promise form's memory, and the argument helpers of the
// io_uring forms.
#pragma once

#include <stdlib.h>
#include <string.h>

#include <napi.h>

#include "../core/errors.h"
#include "../core/handle.h"
#include "../core/views.h"
#include "uring.h"

namespace p2pdma {

// Where a promise form's data lives while the pool thread works: the
// caller's bytes, or an aligned copy of them (kBounceIn: filled from the
// view at the start; kBounceOut: copied back into it when settled).
constexpr uint32_t kBounceIn = 1;
constexpr uint32_t kBounceOut = 2;

class Staging {
 public:
  ~Staging() { free(copy_); }
  // Throws ENOMEM when the copy cannot be had.
  // `signal`: an AbortSignal; aborted by settlement, nothing is copied back
  // (lib/core/abort.ts: an aborted operation's outcome is discarded).
  void Init(Napi::Env env, Napi::Value view, char* data, size_t len, uint32_t bounce, Napi::Value signal) {
    if (signal.IsObject()) signal_ = Napi::Persistent(signal.As<Napi::Object>());
    data_ = data;
    len_ = len;
    bounce_ = bounce;
    if (bounce_ == 0 || len_ == 0) return;
    void* p = nullptr;
    if (posix_memalign(&p, 4096, len_) != 0) ThrowSys(env, ENOMEM, "posix_memalign");
    copy_ = static_cast<char*>(p);
    if ((bounce_ & kBounceIn) != 0) ::memcpy(copy_, data_, len_);
    else ::memset(copy_, 0, len_);
    view_ = Napi::Persistent(view.As<Napi::Object>());
  }
  char* data() const { return copy_ != nullptr ? copy_ : data_; }
  bool Aborted() const { return !signal_.IsEmpty() && signal_.Value().Get("aborted").ToBoolean(); }
  // On the JS thread: the copy back, if the view still spans the same bytes
  // (not detached, transferred or resized meanwhile).
  void Settle(Napi::Env env, bool ok) {
    if (copy_ == nullptr || (bounce_ & kBounceOut) == 0 || !ok) return;
    if (Aborted()) return;
    void* now = nullptr;
    size_t bytes = 0;
    if (!ViewBytes(env, view_.Value(), &now, &bytes) || now != data_ || bytes != len_) return;
    ::memcpy(data_, copy_, len_);
  }

 private:
  char* data_ = nullptr;
  size_t len_ = 0;
  uint32_t bounce_ = 0;
  char* copy_ = nullptr;
  Napi::ObjectReference view_;
  Napi::ObjectReference signal_;
};

inline uint32_t BounceArg(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsUndefined()) return 0;
  uint32_t b = U32Arg(info, i);
  if (b > (kBounceIn | kBounceOut)) ThrowRange(info.Env(), "bounce");
  return b;
}

inline Ring* RingOf(Napi::Env env) {
  Ring* r = Ring::Get(env);
  if (r == nullptr) ThrowSys(env, Ring::Error(env), "io_uring_setup");
  return r;
}

inline FdWrap* OpenFdArg(const Napi::CallbackInfo& info, size_t i) {
  FdWrap* f = UnwrapResource<FdWrap>(info[i]);
  if (f == nullptr) ThrowType(info.Env(), "fd");
  if (!f->IsOpen()) ThrowSys(info.Env(), EBADF, "io_uring_enter", f->fd());
  return f;
}

}  // namespace p2pdma
