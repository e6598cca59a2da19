// The DRM sync object ioctls whose argument points at arrays (handles, and
// timeline points), behind lib/dmabuf/drm-syncobj.ts: WAIT, TIMELINE_WAIT,
// RESET, SIGNAL, TIMELINE_SIGNAL and QUERY. The flat ones (CREATE, DESTROY,
// HANDLE_TO_FD, FD_TO_HANDLE, TRANSFER, EVENTFD) are done from lib/ with
// ioctlSync. The structs are the kernel's (include/uapi/drm/drm.h, 6.12):
// Debian 12's libdrm-dev header predates the waits' deadline_nsec.
#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>

#include <limits>

#include "../core/errors.h"
#include "../core/modules.h"

namespace p2pdma {
namespace {

struct drm_syncobj_wait {
  uint64_t handles;
  int64_t timeout_nsec;  // absolute, CLOCK_MONOTONIC
  uint32_t count_handles;
  uint32_t flags;
  uint32_t first_signaled;
  uint32_t pad;
  uint64_t deadline_nsec;
};
struct drm_syncobj_timeline_wait {
  uint64_t handles;
  uint64_t points;
  int64_t timeout_nsec;
  uint32_t count_handles;
  uint32_t flags;
  uint32_t first_signaled;
  uint32_t pad;
  uint64_t deadline_nsec;
};
struct drm_syncobj_array {
  uint64_t handles;
  uint32_t count_handles;
  uint32_t pad;
};
struct drm_syncobj_timeline_array {
  uint64_t handles;
  uint64_t points;
  uint32_t count_handles;
  uint32_t flags;
};
static_assert(sizeof(drm_syncobj_wait) == 40, "drm_syncobj_wait");
static_assert(sizeof(drm_syncobj_timeline_wait) == 48, "drm_syncobj_timeline_wait");
static_assert(sizeof(drm_syncobj_array) == 16, "drm_syncobj_array");
static_assert(sizeof(drm_syncobj_timeline_array) == 24, "drm_syncobj_timeline_array");

const unsigned long kWait = _IOWR('d', 0xC3, struct drm_syncobj_wait);
const unsigned long kReset = _IOWR('d', 0xC4, struct drm_syncobj_array);
const unsigned long kSignal = _IOWR('d', 0xC5, struct drm_syncobj_array);
const unsigned long kTimelineWait = _IOWR('d', 0xCA, struct drm_syncobj_timeline_wait);
const unsigned long kQuery = _IOWR('d', 0xCB, struct drm_syncobj_timeline_array);
const unsigned long kTimelineSignal = _IOWR('d', 0xCD, struct drm_syncobj_timeline_array);

// A Uint32Array of handles (lib/ checked it; this only stops a crash).
Napi::Uint32Array Handles(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) ThrowType(info.Env(), "handles");
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  if (a.ElementLength() == 0 || a.ElementLength() > UINT32_MAX) ThrowRange(info.Env(), "handles");
  return a;
}

// A BigUint64Array as long as `handles`.
Napi::TypedArrayOf<uint64_t> Points(const Napi::CallbackInfo& info, size_t i, size_t count) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) ThrowType(info.Env(), "points");
  Napi::TypedArrayOf<uint64_t> a = v.As<Napi::TypedArrayOf<uint64_t>>();
  if (a.ElementLength() != count) ThrowRange(info.Env(), "points");
  return a;
}

uint64_t Ptr(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

// drmSyncobjWait(fd, handles, points | undefined, timeoutMs, flags) ->
// first_signaled. timeoutMs -1 waits without limit, 0 only checks; the
// kernel's deadline is absolute. Blocks the calling thread (waitSync).
Napi::Value Wait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  Napi::Uint32Array handles = Handles(info, 1);
  double ms = info[3].As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(ms, -1, 2147483647)) ThrowRange(env, "timeoutMs");
  uint32_t flags = U32Arg(info, 4);
  int64_t abs = std::numeric_limits<int64_t>::max();
  if (ms == 0) {
    abs = 0;
  } else if (ms > 0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    abs = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec + static_cast<int64_t>(ms) * 1000000;
  }
  int r;
  uint32_t first;
  if (info[2].IsUndefined()) {
    struct drm_syncobj_wait w = {};
    w.handles = Ptr(handles.Data());
    w.count_handles = static_cast<uint32_t>(handles.ElementLength());
    w.timeout_nsec = abs;
    w.flags = flags;
    r = ::ioctl(fd, kWait, &w);
    first = w.first_signaled;
  } else {
    Napi::TypedArrayOf<uint64_t> points = Points(info, 2, handles.ElementLength());
    struct drm_syncobj_timeline_wait w = {};
    w.handles = Ptr(handles.Data());
    w.points = Ptr(points.Data());
    w.count_handles = static_cast<uint32_t>(handles.ElementLength());
    w.timeout_nsec = abs;
    w.flags = flags;
    r = ::ioctl(fd, kTimelineWait, &w);
    first = w.first_signaled;
  }
  if (r == -1) ThrowSys(env, errno, "ioctl", fd);
  return Napi::Number::New(env, first);
}

// drmSyncobjReset(fd, handles) / drmSyncobjSignal(fd, handles).
Napi::Value ArrayCall(const Napi::CallbackInfo& info, unsigned long request) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  Napi::Uint32Array handles = Handles(info, 1);
  struct drm_syncobj_array a = {};
  a.handles = Ptr(handles.Data());
  a.count_handles = static_cast<uint32_t>(handles.ElementLength());
  if (::ioctl(fd, request, &a) == -1) ThrowSys(env, errno, "ioctl", fd);
  return env.Undefined();
}
Napi::Value Reset(const Napi::CallbackInfo& info) { return ArrayCall(info, kReset); }
Napi::Value Signal(const Napi::CallbackInfo& info) { return ArrayCall(info, kSignal); }

// drmSyncobjQuery(fd, handles, points, flags): the kernel fills `points`.
// drmSyncobjTimelineSignal(fd, handles, points, 0).
Napi::Value TimelineArrayCall(const Napi::CallbackInfo& info, unsigned long request) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  Napi::Uint32Array handles = Handles(info, 1);
  Napi::TypedArrayOf<uint64_t> points = Points(info, 2, handles.ElementLength());
  struct drm_syncobj_timeline_array a = {};
  a.handles = Ptr(handles.Data());
  a.points = Ptr(points.Data());
  a.count_handles = static_cast<uint32_t>(handles.ElementLength());
  a.flags = U32Arg(info, 3);
  if (::ioctl(fd, request, &a) == -1) ThrowSys(env, errno, "ioctl", fd);
  return env.Undefined();
}
Napi::Value Query(const Napi::CallbackInfo& info) { return TimelineArrayCall(info, kQuery); }
Napi::Value TimelineSignal(const Napi::CallbackInfo& info) { return TimelineArrayCall(info, kTimelineSignal); }

}  // namespace

void InitDrmSyncobj(Napi::Env env, Napi::Object exports) {
  exports.Set("drmSyncobjWait", Napi::Function::New(env, Wait, "drmSyncobjWait"));
  exports.Set("drmSyncobjReset", Napi::Function::New(env, Reset, "drmSyncobjReset"));
  exports.Set("drmSyncobjSignal", Napi::Function::New(env, Signal, "drmSyncobjSignal"));
  exports.Set("drmSyncobjQuery", Napi::Function::New(env, Query, "drmSyncobjQuery"));
  exports.Set("drmSyncobjTimelineSignal", Napi::Function::New(env, TimelineSignal, "drmSyncobjTimelineSignal"));
}

}  // namespace p2pdma
