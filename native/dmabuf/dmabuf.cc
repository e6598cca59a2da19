// Fd-creating ioctls and fd helpers behind lib/dmabuf/dmabuf.ts, lib/dmabuf/dma-heap.ts,
// lib/dmabuf/udmabuf.ts, lib/dmabuf/drm.ts and lib/dmabuf/sync-file.ts.
//
// dma-heap ALLOC, UDMABUF_CREATE, PRIME_HANDLE_TO_FD, EXPORT_SYNC_FILE,
// SYNC_IOC_MERGE and DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD all hand back a new fd, either as the ioctl's result or in
// a field of the argument. Here that fd is wrapped in a native Fd before JS
// sees it, so it cannot leak between the syscall and the handle: not when a
// promise is abandoned (an AbortSignal) nor when JS throws in between.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/magic.h>
#include <linux/sync_file.h>
#include <linux/udmabuf.h>

#include <cstdio>

#include <vector>

#include "../core/async.h"
#include "../core/errors.h"
#include "../core/handle.h"
#include "../core/modules.h"
#include "../core/ioctl.h"
#include "../core/views.h"

namespace p2pdma {
namespace {

// The argument views these ioctls take are small structs (a udmabuf list of
// a few thousand items at most).
constexpr size_t kMaxArg = 1 << 20;

// What each request these entry points serve hands back: a dma-buf or a
// sync_file. Any other request is refused before the syscall, so a wrong
// request number can never make a number the ioctl left alone (stdin,
// libuv's epoll fd) look like a new fd to adopt and later close.
enum class NewFdKind { kNone, kDmaBuf, kSyncFile, kSyncobjOrSyncFile };

struct DrmPrimeHandle {  // struct drm_prime_handle (drm/drm.h is libdrm's)
  uint32_t handle;
  uint32_t flags;
  int32_t fd;
};
constexpr unsigned long kDrmIoctlPrimeHandleToFd = _IOWR('d', 0x2d, DrmPrimeHandle);
struct DrmSyncobjHandle {  // struct drm_syncobj_handle
  uint32_t handle;
  uint32_t flags;
  int32_t fd;
  uint32_t pad;
};
// A syncobj fd, or a sync_file with DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE.
constexpr unsigned long kDrmIoctlSyncobjHandleToFd = _IOWR('d', 0xc1, DrmSyncobjHandle);

NewFdKind KindOf(uint32_t req) {
  switch (req) {
    case DMA_HEAP_IOCTL_ALLOC:
    case UDMABUF_CREATE:
    case UDMABUF_CREATE_LIST:
    case kDrmIoctlPrimeHandleToFd:
      return NewFdKind::kDmaBuf;
    case DMA_BUF_IOCTL_EXPORT_SYNC_FILE:
    case SYNC_IOC_MERGE:
      return NewFdKind::kSyncFile;
    case kDrmIoctlSyncobjHandleToFd:
      return NewFdKind::kSyncobjOrSyncFile;
    default:
      return NewFdKind::kNone;
  }
}

// The new fd: the ioctl's result (offset < 0) or the s32 at `offset`; -1
// unless it is a close-on-exec file of the kind the request creates (each of
// them makes its fd close-on-exec: lib/ asks for it where the request has
// flags, sync_file's always are).
int NewFd(int result, const uint8_t* arg, int offset, NewFdKind kind) {
  int32_t fd = result;
  if (offset >= 0) memcpy(&fd, arg + offset, sizeof fd);
  if (fd < 0) return -1;
  int flags = ::fcntl(fd, F_GETFD);
  if (flags == -1 || (flags & FD_CLOEXEC) == 0) return -1;
  if (kind == NewFdKind::kDmaBuf) {
    struct statfs st;
    return ::fstatfs(fd, &st) == 0 && static_cast<unsigned long>(st.f_type) == DMA_BUF_MAGIC ? fd : -1;
  }
  char path[32], link[32];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(path, link, sizeof link - 1);
  if (n < 0) return -1;
  link[n] = 0;
  if (strcmp(link, "anon_inode:sync_file") == 0) return fd;
  return kind == NewFdKind::kSyncobjOrSyncFile && strcmp(link, "anon_inode:syncobj_file") == 0 ? fd : -1;
}

void ArgView(const Napi::CallbackInfo& info, size_t i, uint32_t req, int offset, void** data, size_t* bytes) {
  Napi::Env env = info.Env();
  if (KindOf(req) == NewFdKind::kNone) ThrowRange(env, "request (not one that creates a dma-buf, sync_file or syncobj fd)");
  if (!ViewBytes(env, info[i], data, bytes)) ThrowType(env, "arg");
  if (*bytes > kMaxArg) ThrowRange(env, "arg");
  // The kernel reads and writes what the request encodes, whatever the view.
  if (*bytes < EncodedSize(req)) ThrowRange(env, "view smaller than the request's size");
  if (offset >= 0 && static_cast<size_t>(offset) + 4 > *bytes) ThrowRange(env, "fdOffset");
}

int32_t OffsetArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber()) ThrowType(env, "fdOffset");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(d, -1, kMaxArg)) ThrowRange(env, "fdOffset");
  return static_cast<int32_t>(d);
}

// (fd, request, view, fdOffset), the arguments both forms share.
struct IoctlFdArgs {
  int fd;
  uint32_t req;
  int32_t offset;
  void* data;
  size_t bytes;
};

IoctlFdArgs ParseIoctlFdArgs(const Napi::CallbackInfo& info) {
  IoctlFdArgs a;
  a.fd = FdArg(info, 0);
  a.req = U32Arg(info, 1);
  a.offset = OffsetArg(info, 3);
  ArgView(info, 2, a.req, a.offset, &a.data, &a.bytes);
  return a;
}

// ioctlFd(fd, request, view, fdOffset) -> Fd. The kernel works on the view
// in place; throws SysError('ioctl').
Napi::Value IoctlFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoctlFdArgs a = ParseIoctlFdArgs(info);
  int r = ::ioctl(a.fd, static_cast<unsigned long>(a.req), a.data);
  if (r == -1) ThrowSys(env, errno, "ioctl", a.fd);
  int nfd = NewFd(r, static_cast<uint8_t*>(a.data), a.offset, KindOf(a.req));
  if (nfd < 0) ThrowSys(env, EBADF, "ioctl", a.fd);  // it returned no new fd
  return FdWrap::New(env, nfd);
}

// The promise form: the view is copied in, and back when it settles (if it
// still has the same length), as ioctlAsync does. The new fd is wrapped on
// the JS thread whatever JS decided meanwhile; lib/ closes it if the caller
// aborted.
class IoctlFdWorker : public PromiseWorker {
 public:
  IoctlFdWorker(Napi::Env env, int fd, unsigned long req, int offset, Napi::Value view, const void* data, size_t bytes)
      : PromiseWorker(env, "p2pdma:ioctlFd", "ioctl", fd),
        fd_(fd),
        req_(req),
        offset_(offset),
        view_(Napi::Persistent(view.As<Napi::Object>())),
        copy_(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes) {}

 protected:
  void Run() override {
    int r = ::ioctl(fd_, req_, copy_.data());
    if (r == -1) {
      err_ = errno;
      return;
    }
    nfd_ = NewFd(r, copy_.data(), offset_, KindOf(static_cast<uint32_t>(req_)));
    if (nfd_ < 0) err_ = EBADF;  // it returned no new fd
  }
  Napi::Value Result(Napi::Env env) override { return FdWrap::New(env, nfd_); }
  void Settled(Napi::Env env) override {
    void* data = nullptr;
    size_t bytes = 0;
    if (!ViewBytes(env, view_.Value(), &data, &bytes) || data == nullptr || bytes != copy_.size()) return;
    memcpy(data, copy_.data(), bytes);
  }

 private:
  int fd_;
  unsigned long req_;
  int offset_;
  int nfd_ = -1;
  Napi::ObjectReference view_;
  std::vector<uint8_t> copy_;
};

// ioctlFdAsync(fd, request, view, fdOffset, keepAlive?) -> Promise<Fd>.
Napi::Value IoctlFdAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoctlFdArgs a = ParseIoctlFdArgs(info);
  auto* w = new IoctlFdWorker(env, a.fd, a.req, a.offset, info[2], a.data, a.bytes);
  w->Keep(info[4]);
  return w->Start();
}

// dupFd(fd) -> Fd: fcntl(F_DUPFD_CLOEXEC); throws SysError('fcntl').
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  int r = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (r == -1) ThrowSys(env, errno, "fcntl", fd);
  return FdWrap::New(env, r);
}

// pollSync(fd, events, timeoutMs) -> revents (0: timed out) or -errno.
// Blocks the calling thread: the xSync forms of waits.
Napi::Value PollSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct pollfd p = {FdArg(info, 0), static_cast<short>(U32Arg(info, 1)), 0};
  if (!info[2].IsNumber()) ThrowType(env, "timeoutMs");
  double t = info[2].As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(t, -1, INT32_MAX)) ThrowRange(env, "timeoutMs");
  int r;
  do r = ::poll(&p, 1, static_cast<int>(t));
  while (r == -1 && errno == EINTR);
  return Napi::Number::New(env, r == -1 ? -errno : r == 0 ? 0 : p.revents);
}

}  // namespace

void InitDmabuf(Napi::Env env, Napi::Object exports) {
  exports.Set("ioctlFd", Napi::Function::New(env, IoctlFd, "ioctlFd"));
  exports.Set("ioctlFdAsync", Napi::Function::New(env, IoctlFdAsync, "ioctlFdAsync"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("pollSync", Napi::Function::New(env, PollSync, "pollSync"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("POLLIN", Napi::Number::New(env, POLLIN));
  c.Set("POLLOUT", Napi::Number::New(env, POLLOUT));
  c.Set("POLLERR", Napi::Number::New(env, POLLERR));
  c.Set("POLLNVAL", Napi::Number::New(env, POLLNVAL));
  c.Set("O_RDONLY", Napi::Number::New(env, O_RDONLY));
  c.Set("O_RDWR", Napi::Number::New(env, O_RDWR));
  c.Set("O_CLOEXEC", Napi::Number::New(env, O_CLOEXEC));
  exports.Set("dmabufConstants", c);
}

}  // namespace p2pdma
