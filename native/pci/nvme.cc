// NVMe I/O behind lib/pci/nvme.ts: pread/pwrite (the fd is O_DIRECT) and the
// 64-bit passthrough ioctls, each as a sync call and a thread-pool promise.
//
// Memory JS cannot free under the device is used in place (O_DIRECT and P2P
// need its real address): a Mapping's views pin its address range
// (native/core/mmap.cc), so an unmap() meanwhile leaves the I/O writing into a
// tombstone; a SharedArrayBuffer can be neither detached nor shrunk. The
// promise forms on any other ArrayBuffer work on a page-aligned copy of the
// bytes (lib/pci/nvme.ts asks for it): JS can transfer, detach or resize such a
// buffer while the pool thread runs, and its memory may then be freed and
// reused. The copy goes back when the I/O settles only if the view still
// spans the same bytes. The sync forms run while no JS can, in place.
// lib/pci/nvme.ts checks alignment, bounds and the in-flight cap.
#include <errno.h>
#include <stdlib.h>
#include <linux/nvme_ioctl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../core/async.h"
#include "../core/errors.h"
#include "../core/modules.h"
#include "../core/views.h"

namespace p2pdma {
namespace {

static_assert(sizeof(nvme_passthru_cmd64) == 80, "struct nvme_passthru_cmd64");

// The whole transfer unless EOF or an error: -errno, or the bytes done.
int64_t DoIo(int fd, bool write, char* data, size_t len, uint64_t pos) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = write ? ::pwrite(fd, data + done, len - done, static_cast<off_t>(pos + done))
                      : ::pread(fd, data + done, len - done, static_cast<off_t>(pos + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      // Report what failed even after a partial transfer: with O_DIRECT a
      // partial one means the device refused the rest.
      return -errno;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
}

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
  // On the JS thread: the copy back, if the view still spans the same bytes
  // (not detached, transferred or resized meanwhile).
  void Settle(Napi::Env env, bool ok) {
    if (copy_ == nullptr || (bounce_ & kBounceOut) == 0 || !ok) return;
    if (!signal_.IsEmpty() && signal_.Value().Get("aborted").ToBoolean()) return;
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

uint32_t BounceArg(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsUndefined()) return 0;
  uint32_t b = U32Arg(info, i);
  if (b > (kBounceIn | kBounceOut)) ThrowRange(info.Env(), "bounce");
  return b;
}

struct Passthru {
  nvme_passthru_cmd64 cmd;
  int status = 0;
};

// The command from a view of 80 bytes (struct nvme_passthru_cmd64), with
// the data view's address and length filled in.
void ReadCmd(Napi::Env env, Napi::Value cmd_view, Napi::Value data_view, Passthru* p, bool* has_data) {
  void* c = nullptr;
  size_t c_len = 0;
  if (!ViewBytes(env, cmd_view, &c, &c_len) || c_len != sizeof(p->cmd)) ThrowType(env, "cmd");
  ::memcpy(&p->cmd, c, sizeof(p->cmd));
  *has_data = false;
  p->cmd.addr = 0;
  p->cmd.data_len = 0;
  if (data_view.IsUndefined() || data_view.IsNull()) return;
  void* d = nullptr;
  size_t d_len = 0;
  if (!ViewBytes(env, data_view, &d, &d_len)) ThrowType(env, "data");
  if (d_len > UINT32_MAX) ThrowRange(env, "data");
  p->cmd.addr = reinterpret_cast<uintptr_t>(d);
  p->cmd.data_len = static_cast<uint32_t>(d_len);
  *has_data = d_len > 0;
}

unsigned long PassthruRequest(bool admin) { return admin ? NVME_IOCTL_ADMIN64_CMD : NVME_IOCTL_IO64_CMD; }

Napi::Value PassthruResult(Napi::Env env, const Passthru& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("status", Napi::Number::New(env, p.status));
  o.Set("result", Napi::BigInt::New(env, static_cast<uint64_t>(p.cmd.result)));
  return o;
}

class IoWorker : public PromiseWorker {
 public:
  IoWorker(Napi::Env env, int fd, bool write, size_t len, uint64_t pos)
      : PromiseWorker(env, "p2pdma:nvme-io", write ? "write" : "read", fd),
        fd_(fd), write_(write), len_(len), pos_(pos) {}
  Staging& staging() { return staging_; }

 protected:
  void Run() override {
    result_ = DoIo(fd_, write_, staging_.data(), len_, pos_);
    if (result_ < 0) err_ = static_cast<int>(-result_);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(result_)); }
  void Settled(Napi::Env env) override { staging_.Settle(env, err_ == 0); }

 private:
  int fd_;
  bool write_;
  size_t len_;
  uint64_t pos_;
  int64_t result_ = 0;
  Staging staging_;
};

class PassthruWorker : public PromiseWorker {
 public:
  PassthruWorker(Napi::Env env, int fd, bool admin, const Passthru& p)
      : PromiseWorker(env, "p2pdma:nvme-passthru", "ioctl", fd), fd_(fd), admin_(admin), p_(p) {}
  Staging& staging() { return staging_; }
  // The command's data pointer: the staged copy if there is one.
  void UseStaging() { p_.cmd.addr = reinterpret_cast<uintptr_t>(staging_.data()); }

 protected:
  void Run() override {
    int r;
    do r = ::ioctl(fd_, PassthruRequest(admin_), &p_.cmd);
    while (r == -1 && errno == EINTR);
    if (r == -1) err_ = errno;
    else p_.status = r;
  }
  Napi::Value Result(Napi::Env env) override { return PassthruResult(env, p_); }
  void Settled(Napi::Env env) override { staging_.Settle(env, err_ == 0); }

 private:
  int fd_;
  bool admin_;
  Passthru p_;
  Staging staging_;
};

// (fd, write, view, position) -> the view's bytes, validated.
void IoArgs(const Napi::CallbackInfo& info, int* fd, bool* write, char** data, size_t* len, uint64_t* pos) {
  Napi::Env env = info.Env();
  *fd = FdArg(info, 0);
  *write = info[1].ToBoolean();
  void* d = nullptr;
  if (!ViewBytes(env, info[2], &d, len)) ThrowType(env, "view");
  *data = static_cast<char*>(d);
  *pos = U64Arg(info, 3);
  if (*pos > static_cast<uint64_t>(INT64_MAX) - *len) ThrowRange(env, "position");
}

// nvmeIoSync(fd, write, view, position) -> bytes; throws SysError.
Napi::Value IoSync(const Napi::CallbackInfo& info) {
  int fd;
  bool write;
  char* data;
  size_t len;
  uint64_t pos;
  IoArgs(info, &fd, &write, &data, &len, &pos);
  int64_t r = DoIo(fd, write, data, len, pos);
  if (r < 0) ThrowSys(info.Env(), static_cast<int>(-r), write ? "write" : "read", fd);
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// nvmeIo(fd, write, view, position, keepAlive?, bounce?, signal?) -> Promise<bytes>.
Napi::Value Io(const Napi::CallbackInfo& info) {
  int fd;
  bool write;
  char* data;
  size_t len;
  uint64_t pos;
  IoArgs(info, &fd, &write, &data, &len, &pos);
  uint32_t bounce = BounceArg(info, 5);
  auto* w = new IoWorker(info.Env(), fd, write, len, pos);
  try {
    w->staging().Init(info.Env(), info[2], data, len, bounce, info[6]);
  } catch (...) {
    delete w;
    throw;
  }
  w->Keep(info[2]);
  w->Keep(info[4]);
  return w->Start();
}

// nvmePassthruSync(fd, admin, cmd, data?) -> { status, result }; throws SysError.
Napi::Value PassthruSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  bool admin = info[1].ToBoolean();
  Passthru p;
  bool has_data;
  ReadCmd(env, info[2], info[3], &p, &has_data);
  int r;
  do r = ::ioctl(fd, PassthruRequest(admin), &p.cmd);
  while (r == -1 && errno == EINTR);
  if (r == -1) ThrowSys(env, errno, "ioctl", fd);
  p.status = r;
  return PassthruResult(env, p);
}

// nvmePassthru(fd, admin, cmd, data?, keepAlive?, bounce?, signal?) -> Promise<{ status, result }>.
Napi::Value PassthruAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  bool admin = info[1].ToBoolean();
  Passthru p;
  bool has_data;
  ReadCmd(env, info[2], info[3], &p, &has_data);
  uint32_t bounce = has_data ? BounceArg(info, 5) : 0;
  auto* w = new PassthruWorker(env, fd, admin, p);
  try {
    w->staging().Init(env, info[3], reinterpret_cast<char*>(static_cast<uintptr_t>(p.cmd.addr)), p.cmd.data_len, bounce, info[6]);
  } catch (...) {
    delete w;
    throw;
  }
  w->UseStaging();
  w->Keep(info[3]);
  w->Keep(info[4]);
  return w->Start();
}

// viewAddress(view) -> the address of its first byte (checked for O_DIRECT alignment).
Napi::Value ViewAddress(const Napi::CallbackInfo& info) {
  void* d = nullptr;
  size_t len = 0;
  if (!ViewBytes(info.Env(), info[0], &d, &len)) ThrowType(info.Env(), "view");
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(d)));
}

}  // namespace

void InitNvme(Napi::Env env, Napi::Object exports) {
  exports.Set("nvmeIo", Napi::Function::New(env, Io, "nvmeIo"));
  exports.Set("nvmeIoSync", Napi::Function::New(env, IoSync, "nvmeIoSync"));
  exports.Set("nvmePassthru", Napi::Function::New(env, PassthruAsync, "nvmePassthru"));
  exports.Set("nvmePassthruSync", Napi::Function::New(env, PassthruSync, "nvmePassthruSync"));
  exports.Set("viewAddress", Napi::Function::New(env, ViewAddress, "viewAddress"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("NVME_IOCTL_ID", Napi::Number::New(env, static_cast<double>(NVME_IOCTL_ID)));
  c.Set("NVME_IOCTL_ADMIN64_CMD", Napi::Number::New(env, static_cast<double>(NVME_IOCTL_ADMIN64_CMD)));
  c.Set("NVME_IOCTL_IO64_CMD", Napi::Number::New(env, static_cast<double>(NVME_IOCTL_IO64_CMD)));
  exports.Set("nvmeConstants", c);
}

}  // namespace p2pdma
