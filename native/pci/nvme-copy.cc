// Nvme.copyTo() on io_uring (lib/pci/nvme.ts): `length` bytes from one
// namespace to another through a staging view (another device's CMB: the
// controllers DMA peer to peer; host memory: a bounce), `depth` chunks in
// flight, with no call into JS until the end (issue 25: a promise per read
// and per write cost more guest CPU than the copy itself).
//
// Each lane is one RingOp that reads its chunk into its slot of the view and
// writes it out, the write linked to the read (one submission, no trip
// through the loop between them, as C on io_uring does it), then takes the
// next chunk (lane i: chunks i, i + depth, ...), requeued by returning false
// from Complete(). The job's promise settles when
// the last lane ends: the bytes copied, or the first error (the other lanes
// stop after the op they have in flight). The job holds both fds and the
// view's memory (a Mapping pins its address range; other memory is staged,
// as for read()) until every lane is gone.
#include <errno.h>

#include <algorithm>
#include <vector>

#include "../core/errors.h"
#include "../core/handle.h"
#include "../core/modules.h"
#include "nvme-io.h"
#include "uring.h"

namespace p2pdma {
namespace {

class CopyJob {
 public:
  CopyJob(Napi::Env env, FdWrap* src, FdWrap* dst, uint64_t from, uint64_t to, uint64_t length, uint64_t chunk, unsigned lanes)
      : src_(src), dst_(dst), from_(from), to_(to), length_(length), chunk_(chunk), deferred_(Napi::Promise::Deferred::New(env)), live_(lanes), refs_(lanes) {
    static_cast<Resource*>(src_)->Hold();
    static_cast<Resource*>(dst_)->Hold();
  }
  ~CopyJob() {
    static_cast<Resource*>(src_)->Release();
    static_cast<Resource*>(dst_)->Release();
  }

  Staging& staging() { return staging_; }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Keep(Napi::Value v) {
    if (v.IsObject()) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  bool Stopped() const { return err_ != 0 || staging_.Aborted(); }
  void Fail(int err, bool write) {
    if (err_ != 0) return;
    err_ = err;
    failed_write_ = write;
  }
  // A lane is over (on the JS thread): the last one settles the promise.
  void LaneEnded(Napi::Env env) {
    if (--live_ > 0) return;
    if (err_ != 0) {
      deferred_.Reject(SysError(env, err_, failed_write_ ? "write" : "read", (failed_write_ ? dst_ : src_)->fd()).Value());
    } else if (staging_.Aborted()) {
      // lib/core/abort.ts has rejected the caller's promise already.
      deferred_.Reject(SysError(env, ECANCELED, "io_uring_enter", src_->fd()).Value());
    } else {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(copied_)));
    }
  }
  // A lane was freed (also at environment teardown, when no JS runs).
  void Unref() {
    if (--refs_ == 0) delete this;
  }

  FdWrap* src_;
  FdWrap* dst_;
  const uint64_t from_, to_, length_, chunk_;
  uint64_t copied_ = 0;

 private:
  Napi::Promise::Deferred deferred_;
  Staging staging_;
  std::vector<Napi::ObjectReference> keep_;
  unsigned live_;
  unsigned refs_;
  int err_ = 0;
  bool failed_write_ = false;
};

class CopyLane : public RingOp {
 public:
  CopyLane(CopyJob* job, unsigned index, unsigned lanes) : job_(job), slot_(index * job->chunk_), stride_(lanes * job->chunk_), next_(index * job->chunk_) {
    cur_ = std::min(job_->chunk_, job_->length_ - next_);
  }
  ~CopyLane() override { job_->Unref(); }

  // The chunk's read linked to its write, or the rest of a short write alone.
  unsigned Links() const override { return writing_only_ ? 1 : 2; }
  void Prep(io_uring_sqe* sqe) override { PrepLink(sqe, 0); }
  void PrepLink(io_uring_sqe* sqe, unsigned link) override {
    bool write = writing_only_ || link == 1;
    // A linked write moves the whole chunk; a lone one the rest of it.
    uint64_t done = write ? (writing_only_ ? written_ : 0) : read_;
    sqe->opcode = write ? IORING_OP_WRITE : IORING_OP_READ;
    sqe->fd = (write ? job_->dst_ : job_->src_)->fd();
    sqe->addr = reinterpret_cast<uintptr_t>(job_->staging().data() + slot_ + done);
    sqe->len = static_cast<uint32_t>(cur_ - done);
    sqe->off = (write ? job_->to_ : job_->from_) + next_ + done;
    // A read that succeeds in full may post no CQE; a write cancelled
    // after a failed or short read may post none either.
    if (!write) res_[0] = static_cast<int32_t>(sqe->len);
    else if (!writing_only_) res_[1] = -ECANCELED;
  }
  void LinkDone(unsigned link, int32_t res) override { res_[link] = res; }

  bool Complete(Napi::Env env, int32_t, uint64_t) override {
    int32_t wrote = res_[writing_only_ ? 0 : 1];
    if (!writing_only_) {
      int32_t got = res_[0];
      if (got == -EINTR || got == -EAGAIN) return false;  // the write was cancelled: both again
      // A short O_DIRECT transfer of 0 bytes is the device refusing the rest.
      if (got <= 0) return Fail(env, got, false);
      read_ += static_cast<uint64_t>(got);
      if (read_ < cur_) return false;  // short: the kernel cancelled the write
      writing_only_ = true;
    }
    if (wrote == -EINTR || wrote == -EAGAIN) return false;
    if (wrote <= 0) return Fail(env, wrote, true);
    written_ += static_cast<uint64_t>(wrote);
    if (written_ < cur_) return false;
    job_->copied_ += cur_;
    next_ += stride_;
    read_ = written_ = 0;
    writing_only_ = false;
    if (next_ < job_->length_ && !job_->Stopped()) {
      cur_ = std::min(job_->chunk_, job_->length_ - next_);
      return false;
    }
    job_->LaneEnded(env);
    return true;
  }

  bool Aborted(Napi::Env) override { return job_->Stopped(); }
  void Cancel(Napi::Env env) override { job_->LaneEnded(env); }

 private:
  bool Fail(Napi::Env env, int32_t res, bool write) {
    job_->Fail(res < 0 ? -res : EIO, write);
    job_->LaneEnded(env);
    return true;
  }

  CopyJob* job_;
  const uint64_t slot_, stride_;
  uint64_t next_;
  uint64_t cur_;
  uint64_t read_ = 0, written_ = 0;  // of the current chunk
  bool writing_only_ = false;        // the chunk is read; its write was short
  int32_t res_[2] = {0, 0};
};

// nvmeUringCopy(srcFd, dstFd, view, from, to, length, chunk, depth,
//   keepAlive, bounce, signal) -> Promise<bytes>. lib/pci/nvme.ts checks
// the O_DIRECT rules, that view holds depth chunks and that the ranges fit.
Napi::Value UringCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdWrap* src = OpenFdArg(info, 0);
  FdWrap* dst = OpenFdArg(info, 1);
  void* d = nullptr;
  size_t len = 0;
  if (!ViewBytes(env, info[2], &d, &len)) ThrowType(env, "view");
  uint64_t from = U64Arg(info, 3), to = U64Arg(info, 4), length = U64Arg(info, 5), chunk = U64Arg(info, 6);
  uint32_t depth = U32Arg(info, 7);
  if (length == 0 || chunk == 0 || chunk > (uint64_t{1} << 30)) ThrowRange(env, "chunk");
  if (depth == 0 || depth > 64 || chunk * depth > len) ThrowRange(env, "depth");
  if (from > static_cast<uint64_t>(INT64_MAX) - length || to > static_cast<uint64_t>(INT64_MAX) - length) ThrowRange(env, "position");
  uint32_t bounce = BounceArg(info, 9);
  Ring* ring = RingOf(env);
  unsigned lanes = static_cast<unsigned>(std::min<uint64_t>(depth, (length + chunk - 1) / chunk));
  auto* job = new CopyJob(env, src, dst, from, to, length, chunk, lanes);
  try {
    job->staging().Init(env, info[2], static_cast<char*>(d), static_cast<size_t>(chunk * depth), bounce, info[10]);
  } catch (...) {
    delete job;
    throw;
  }
  job->Keep(info[2]);
  job->Keep(info[8]);
  Napi::Promise p = job->Promise();
  for (unsigned i = 0; i < lanes; i++) ring->Queue(new CopyLane(job, i, lanes));
  return p;
}

}  // namespace

void InitNvmeCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("nvmeUringCopy", Napi::Function::New(env, UringCopy, "nvmeUringCopy"));
}

}  // namespace p2pdma
