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
#include <stddef.h>
#include <sys/uio.h>
#include <stdlib.h>
#include <linux/nvme_ioctl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../core/async.h"
#include "../core/errors.h"
#include "../core/handle.h"
#include "../core/modules.h"
#include "../core/views.h"
#include "nvme-io.h"
#include "uring.h"

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

// ---------------------------------------------------------------------------
// The io_uring engine (native/uring.h): the same I/O and commands as the
// workers above, as ring ops. An op holds the Fd (so close() defers the
// close(2)), the JS objects that own the memory and the staged copy until
// its CQE arrives.

static_assert(sizeof(nvme_uring_cmd) == 72, "struct nvme_uring_cmd");
static_assert(offsetof(nvme_uring_cmd, data_len) == offsetof(nvme_passthru_cmd64, data_len) &&
                  offsetof(nvme_uring_cmd, timeout_ms) == offsetof(nvme_passthru_cmd64, timeout_ms),
              "nvme_uring_cmd is nvme_passthru_cmd64 up to timeout_ms");

class NvmeRingOp : public RingOp {
 public:
  NvmeRingOp(Napi::Env env, FdWrap* fd) : deferred_(Napi::Promise::Deferred::New(env)), fd_(fd) { static_cast<Resource*>(fd_)->Hold(); }
  // Resource::Release (FdWrap hides it with its JS method).
  ~NvmeRingOp() override { static_cast<Resource*>(fd_)->Release(); }
  Napi::Promise Promise() { return deferred_.Promise(); }
  Staging& staging() { return staging_; }
  void Keep(Napi::Value v) {
    if (v.IsObject()) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  bool Aborted(Napi::Env) override { return staging_.Aborted(); }
  // lib/abort.ts has rejected the caller's promise already: this outcome is discarded.
  void Cancel(Napi::Env env) override { deferred_.Reject(SysError(env, ECANCELED, "io_uring_enter", fd_->fd()).Value()); }

 protected:
  void Fail(Napi::Env env, int err, const char* syscall) {
    staging_.Settle(env, false);
    deferred_.Reject(SysError(env, err, syscall, fd_->fd()).Value());
  }

  Napi::Promise::Deferred deferred_;
  FdWrap* fd_;
  Staging staging_;
  std::vector<Napi::ObjectReference> keep_;
};

class RingIo : public NvmeRingOp {
 public:
  RingIo(Napi::Env env, FdWrap* fd, bool write, size_t len, uint64_t pos) : NvmeRingOp(env, fd), write_(write), len_(len), pos_(pos) {}
  void Prep(io_uring_sqe* sqe) override {
    sqe->opcode = write_ ? IORING_OP_WRITE : IORING_OP_READ;
    sqe->fd = fd_->fd();
    sqe->addr = reinterpret_cast<uintptr_t>(staging_.data() + done_);
    // One SQE moves at most 1 GiB (the kernel stops at MAX_RW_COUNT anyway); the rest follows.
    sqe->len = static_cast<uint32_t>(std::min<size_t>(len_ - done_, size_t{1} << 30));
    sqe->off = pos_ + done_;
  }
  bool Complete(Napi::Env env, int32_t res, uint64_t) override {
    if (res == -EINTR || res == -EAGAIN) return false;
    // As DoIo: an error is reported even after a partial transfer.
    if (res < 0) {
      Fail(env, -res, write_ ? "write" : "read");
      return true;
    }
    done_ += static_cast<size_t>(res);
    if (res > 0 && done_ < len_) return false;
    staging_.Settle(env, true);
    deferred_.Resolve(Napi::Number::New(env, static_cast<double>(done_)));
    return true;
  }

 private:
  bool write_;
  size_t len_;
  uint64_t pos_;
  size_t done_ = 0;
};

class RingCmd : public NvmeRingOp {
 public:
  RingCmd(Napi::Env env, FdWrap* fd, bool admin, const Passthru& p) : NvmeRingOp(env, fd), admin_(admin), p_(p) {}
  void Prep(io_uring_sqe* sqe) override {
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fd_->fd();
    sqe->cmd_op = admin_ ? NVME_URING_CMD_ADMIN : NVME_URING_CMD_IO;
    nvme_passthru_cmd64 c = p_.cmd;
    c.addr = reinterpret_cast<uintptr_t>(staging_.data());
    ::memcpy(sqe->cmd, &c, sizeof(nvme_uring_cmd));
  }
  bool Complete(Napi::Env env, int32_t res, uint64_t extra) override {
    // res: the NVMe status (as the ioctl returns it) or -errno; extra: DW0/DW1.
    if (res < 0) {
      Fail(env, -res, "io_uring_enter");
      return true;
    }
    p_.status = res;
    p_.cmd.result = extra;
    staging_.Settle(env, true);
    deferred_.Resolve(PassthruResult(env, p_));
    return true;
  }

 private:
  bool admin_;
  Passthru p_;
};

// nvmeUringProbe() -> { errno, passthru }: this thread's ring (made now if
// need be), 0 when it works; passthru: SQE128|CQE32 (NVMe commands) work.
Napi::Value UringProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ring* r = Ring::Get(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", Napi::Number::New(env, r == nullptr ? Ring::Error(env) : 0));
  o.Set("passthru", Napi::Boolean::New(env, r != nullptr && r->big()));
  return o;
}

// nvmeUringQueue() -> { queued, inFlight } of this thread's ring.
Napi::Value UringQueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ring* r = Ring::Get(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("queued", Napi::Number::New(env, r == nullptr ? 0 : static_cast<double>(r->queued())));
  o.Set("inFlight", Napi::Number::New(env, r == nullptr ? 0 : static_cast<double>(r->in_flight())));
  return o;
}

// Stages the op's memory (info[view]; the signal in info[6]), keeps the view
// and info[4] (keepAlive) referenced, and queues it: its promise.
Napi::Value Queue(const Napi::CallbackInfo& info, Ring* ring, NvmeRingOp* op, size_t view, char* data, size_t len, uint32_t bounce) {
  try {
    op->staging().Init(info.Env(), info[view], data, len, bounce, info[6]);
  } catch (...) {
    delete op;
    throw;
  }
  op->Keep(info[view]);
  op->Keep(info[4]);
  Napi::Promise p = op->Promise();
  ring->Queue(op);
  return p;
}

// nvmeUringIo(nativeFd, write, view, position, keepAlive?, bounce?, signal?) -> Promise<bytes>.
Napi::Value UringIo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdWrap* f = OpenFdArg(info, 0);
  bool write = info[1].ToBoolean();
  void* d = nullptr;
  size_t len = 0;
  if (!ViewBytes(env, info[2], &d, &len)) ThrowType(env, "view");
  uint64_t pos = U64Arg(info, 3);
  if (pos > static_cast<uint64_t>(INT64_MAX) - len) ThrowRange(env, "position");
  uint32_t bounce = BounceArg(info, 5);
  Ring* ring = RingOf(env);
  return Queue(info, ring, new RingIo(env, f, write, len, pos), 2, static_cast<char*>(d), len, bounce);
}

// nvmeUringCmd(nativeFd, admin, cmd, data?, keepAlive?, bounce?, signal?) -> Promise<{ status, result }>;
// the fd is a generic char device (/dev/ngXnY) or, for admin, a controller.
Napi::Value UringCmd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdWrap* f = OpenFdArg(info, 0);
  bool admin = info[1].ToBoolean();
  Passthru p;
  bool has_data;
  ReadCmd(env, info[2], info[3], &p, &has_data);
  uint32_t bounce = has_data ? BounceArg(info, 5) : 0;
  Ring* ring = RingOf(env);
  if (!ring->big()) ThrowSys(env, EOPNOTSUPP, "io_uring_setup");
  return Queue(info, ring, new RingCmd(env, f, admin, p), 3, reinterpret_cast<char*>(static_cast<uintptr_t>(p.cmd.addr)), p.cmd.data_len, bounce);
}

// nvmeUringFixedProbe(view, fd?, position?) -> { register, read }: on a
// scratch ring, IORING_REGISTER_BUFFERS of the view's memory (0 or errno),
// then, if that worked and an fd is given, IORING_OP_READ_FIXED of the
// whole view at `position` (bytes, or -errno). Synchronous: a diagnostic
// for the tests (does the kernel take p2pmem as a fixed buffer?).
Napi::Value UringFixedProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* d = nullptr;
  size_t len = 0;
  if (!ViewBytes(env, info[0], &d, &len) || len == 0 || len > UINT32_MAX) ThrowType(env, "view");
  int fd = info[1].IsUndefined() ? -1 : FdArg(info, 1);
  uint64_t pos = info[2].IsUndefined() ? 0 : U64Arg(info, 2);
  io_uring_params p;
  ::memset(&p, 0, sizeof p);
  int rfd = static_cast<int>(::syscall(__NR_io_uring_setup, 4, &p));
  if (rfd < 0) ThrowSys(env, errno, "io_uring_setup");
  Napi::Object o = Napi::Object::New(env);
  iovec iov = {d, len};
  int reg = ::syscall(__NR_io_uring_register, rfd, IORING_REGISTER_BUFFERS, &iov, 1) == 0 ? 0 : errno;
  o.Set("register", Napi::Number::New(env, reg));
  o.Set("read", env.Undefined());
  if (reg == 0 && fd >= 0) {
    size_t ring_len = std::max(p.sq_off.array + p.sq_entries * sizeof(unsigned), p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe));
    void* ring = ::mmap(nullptr, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
    void* sqes = ::mmap(nullptr, p.sq_entries * sizeof(io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
    int res = -ENOMEM;
    if (ring != MAP_FAILED && sqes != MAP_FAILED) {
      char* b = static_cast<char*>(ring);
      auto* sqe = static_cast<io_uring_sqe*>(sqes);
      ::memset(sqe, 0, sizeof *sqe);
      sqe->opcode = IORING_OP_READ_FIXED;
      sqe->fd = fd;
      sqe->addr = reinterpret_cast<uintptr_t>(d);
      sqe->len = static_cast<uint32_t>(len);
      sqe->off = pos;
      sqe->buf_index = 0;
      reinterpret_cast<unsigned*>(b + p.sq_off.array)[0] = 0;
      __atomic_store_n(reinterpret_cast<unsigned*>(b + p.sq_off.tail), 1u, __ATOMIC_RELEASE);
      int r;
      do r = static_cast<int>(::syscall(__NR_io_uring_enter, rfd, 1, 1, IORING_ENTER_GETEVENTS, nullptr, 0));
      while (r < 0 && errno == EINTR);
      if (r < 0) res = -errno;
      else res = reinterpret_cast<io_uring_cqe*>(b + p.cq_off.cqes)[0].res;
    }
    if (ring != MAP_FAILED) ::munmap(ring, ring_len);
    if (sqes != MAP_FAILED) ::munmap(sqes, p.sq_entries * sizeof(io_uring_sqe));
    o.Set("read", Napi::Number::New(env, res));
  }
  ::close(rfd);
  return o;
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
  exports.Set("nvmeUringProbe", Napi::Function::New(env, UringProbe, "nvmeUringProbe"));
  exports.Set("nvmeUringQueue", Napi::Function::New(env, UringQueue, "nvmeUringQueue"));
  exports.Set("nvmeUringIo", Napi::Function::New(env, UringIo, "nvmeUringIo"));
  exports.Set("nvmeUringCmd", Napi::Function::New(env, UringCmd, "nvmeUringCmd"));
  exports.Set("nvmeUringFixedProbe", Napi::Function::New(env, UringFixedProbe, "nvmeUringFixedProbe"));
  exports.Set("viewAddress", Napi::Function::New(env, ViewAddress, "viewAddress"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("NVME_IOCTL_ID", Napi::Number::New(env, static_cast<double>(NVME_IOCTL_ID)));
  c.Set("NVME_IOCTL_ADMIN64_CMD", Napi::Number::New(env, static_cast<double>(NVME_IOCTL_ADMIN64_CMD)));
  c.Set("NVME_IOCTL_IO64_CMD", Napi::Number::New(env, static_cast<double>(NVME_IOCTL_IO64_CMD)));
  exports.Set("nvmeConstants", c);
}

}  // namespace p2pdma
