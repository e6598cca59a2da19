// One io_uring per JS thread (Node environment), for native/nvme.cc.
//
// Why per thread, not per handle: a ring is meant to have one submitter,
// and the environment's loop is that thread's only one; one ring batches
// the I/O of every Nvme handle of the thread into one io_uring_enter per
// loop turn and costs two fds (ring, eventfd) however many handles are open.
//
// Raw syscalls and the uapi header (linux/io_uring.h), not liburing: the
// few calls used here (setup, enter, register) need no library, and
// bookworm's liburing 2.3 would be a new build and run dependency.
//
// Flow, all on the loop thread:
//  - Queue(op) appends to `pending_` and starts a uv_prepare handle, which
//    runs once per loop turn just before the loop blocks: it copies every
//    pending op into the SQ (skipping ops whose AbortSignal fired, which
//    thus never reach the kernel) and submits them with one io_uring_enter;
//  - the kernel signals an eventfd (IORING_REGISTER_EVENTFD) that a uv_poll
//    watches; its callback drains every CQE in one callback scope (promise
//    reactions run once, after the whole batch), then submits what those
//    reactions queued;
//  - no thread-pool thread is used.
// The kernel may hold at most the CQ's size of ops (no CQ overflow); more
// wait in `pending_`. The poll handle keeps the loop alive only while ops
// are queued or in flight.
//
// Lifetime: an op owns what the kernel reads or writes (staged copies, JS
// references to the memory, a hold on the Fd) until its CQE arrives.
// Environment teardown (process exit, worker terminate) waits for every
// in-flight CQE (io_uring_enter GETEVENTS) before anything is freed, then
// drops the ops without calling JS, closes the handles and the fds.
#pragma once

#include <errno.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <napi.h>
#include <uv.h>

#include <algorithm>
#include <deque>

namespace p2pdma {

class RingOp {
 public:
  virtual ~RingOp() = default;
  // Fills a zeroed SQE (128 bytes when the ring has SQE128).
  virtual void Prep(io_uring_sqe* sqe) = 0;
  // The CQE, on the JS thread inside a handle and callback scope: `extra`
  // is big_cqe[0] on a CQE32 ring. Returns false to be queued again (a
  // short transfer continues).
  virtual bool Complete(Napi::Env env, int32_t res, uint64_t extra) = 0;
  // Whether the op was aborted before it reached the kernel (at the flush).
  virtual bool Aborted(Napi::Env env) { return false; }
  // Settles an op aborted before submission.
  virtual void Cancel(Napi::Env env) = 0;

  // A chain (IOSQE_IO_LINK): the op's next submission is Links() SQEs,
  // each started by the kernel when the one before it succeeded in full
  // (a failed or short one cancels the rest: -ECANCELED). A copy chains its
  // read to its write so the write needs no trip through the loop (the
  // least C can do on io_uring). Where the kernel has
  // IOSQE_CQE_SKIP_SUCCESS (5.17), the links before the last carry it and a
  // chain posts one CQE, one wake-up: the first link that failed or came up
  // short (the kernel then skips the cancelled links' CQEs too), or the
  // last link. Before 5.17 each link posts one, in order. Each CQE goes to
  // LinkDone(); the chain's last also to Complete().
  virtual unsigned Links() const { return 1; }
  // Fills link `link` of a chain (a zeroed SQE).
  virtual void PrepLink(io_uring_sqe* sqe, unsigned link) { Prep(sqe); }
  virtual void LinkDone(unsigned link, int32_t res) {}

 private:
  friend class Ring;
  unsigned links_ = 1;  // of the submission in flight
};

class Ring {
 public:
  // The ring of `env`'s thread, created on first use; nullptr when
  // io_uring_setup failed (`Error()` has the errno).
  static Ring* Get(Napi::Env env) {
    Ring* r = current_;
    if (r != nullptr && r->env_ == env) return r->fd_ >= 0 ? r : nullptr;
    r = new Ring(env);
    current_ = r;
    return r->fd_ >= 0 ? r : nullptr;
  }
  // 0, or the errno of the failed setup of this thread's ring.
  static int Error(Napi::Env env) {
    Get(env);
    return current_->error_;
  }

  // Whether SQE128|CQE32 (NVMe passthrough) is available.
  bool big() const { return big_; }
  size_t queued() const { return pending_.size(); }
  size_t in_flight() const { return in_flight_; }

  void Queue(RingOp* op) {
    pending_.push_back(op);
    Wake();
  }

 private:
  explicit Ring(Napi::Env env) : env_(env) {
    napi_get_uv_event_loop(env, &loop_);
    error_ = Setup();
    if (error_ != 0) {
      Unmap();
      return;
    }
    // The callback scope's resource: an object of our own.
    Napi::HandleScope scope(env);
    Napi::Object resource = Napi::Object::New(env);
    resource_ = Napi::Persistent(resource);
    napi_async_init(env, resource, Napi::String::New(env, "p2pdma:nvme-io_uring"), &async_);
    uv_poll_init(loop_, &poll_, efd_);
    poll_.data = this;
    uv_poll_start(&poll_, UV_READABLE, OnPoll);
    uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
    uv_prepare_init(loop_, &prepare_);
    prepare_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
    napi_add_async_cleanup_hook(env, OnTeardown, this, &hook_);
  }

  static int Enter(int fd, unsigned submit, unsigned min, unsigned flags) {
    return static_cast<int>(::syscall(__NR_io_uring_enter, fd, submit, min, flags, nullptr, 0));
  }

  int Setup() {
    io_uring_params p;
    // SQE128|CQE32 for NVMe passthrough (5.19); SUBMIT_ALL (5.18) so one
    // bad SQE does not hold back the rest of a batch. Older kernels: plain.
    const unsigned tries[] = {IORING_SETUP_SQE128 | IORING_SETUP_CQE32 | IORING_SETUP_SUBMIT_ALL, 0};
    for (unsigned flags : tries) {
      ::memset(&p, 0, sizeof p);
      p.flags = flags;
      fd_ = static_cast<int>(::syscall(__NR_io_uring_setup, kEntries, &p));
      if (fd_ >= 0) break;
      if (errno != EINVAL) return errno;
    }
    if (fd_ < 0) return errno;
    big_ = (p.flags & IORING_SETUP_SQE128) != 0;
    skip_ = (p.features & IORING_FEAT_CQE_SKIP) != 0;  // 5.17
    if ((p.features & IORING_FEAT_SINGLE_MMAP) == 0) return ENOSYS;  // < 5.4: not worth a second path
    size_t cqe_size = big_ ? 32 : 16;
    ring_len_ = std::max(p.sq_off.array + p.sq_entries * sizeof(unsigned), p.cq_off.cqes + p.cq_entries * cqe_size);
    ring_ = ::mmap(nullptr, ring_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
    if (ring_ == MAP_FAILED) {
      ring_ = nullptr;
      return errno;
    }
    sqe_size_ = big_ ? 128 : 64;
    sqes_len_ = p.sq_entries * sqe_size_;
    sqes_ = static_cast<char*>(::mmap(nullptr, sqes_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES));
    if (sqes_ == MAP_FAILED) {
      sqes_ = nullptr;
      return errno;
    }
    char* base = static_cast<char*>(ring_);
    sq_head_ = reinterpret_cast<unsigned*>(base + p.sq_off.head);
    sq_tail_ = reinterpret_cast<unsigned*>(base + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<unsigned*>(base + p.sq_off.ring_mask);
    sq_array_ = reinterpret_cast<unsigned*>(base + p.sq_off.array);
    sq_entries_ = p.sq_entries;
    cq_head_ = reinterpret_cast<unsigned*>(base + p.cq_off.head);
    cq_tail_ = reinterpret_cast<unsigned*>(base + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<unsigned*>(base + p.cq_off.ring_mask);
    cqes_ = base + p.cq_off.cqes;
    cqe_size_ = cqe_size;
    cq_entries_ = p.cq_entries;
    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0) return errno;
    if (::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_EVENTFD, &efd_, 1) != 0) return errno;
    return 0;
  }

  void Unmap() {
    if (sqes_ != nullptr) ::munmap(sqes_, sqes_len_);
    if (ring_ != nullptr) ::munmap(ring_, ring_len_);
    if (efd_ >= 0) ::close(efd_);
    if (fd_ >= 0) ::close(fd_);
    sqes_ = nullptr;
    ring_ = nullptr;
    efd_ = fd_ = -1;
  }

  // Keeps the loop alive (and the flush scheduled) while there is work.
  void Wake() {
    if (!pending_.empty() && !prepare_active_) {
      uv_prepare_start(&prepare_, OnPrepare);
      prepare_active_ = true;
    }
    bool busy = !pending_.empty() || in_flight_ > 0;
    if (busy != referenced_) {
      referenced_ = busy;
      if (busy) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_));
      else uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
    }
  }

  // Pending ops into the SQ, then one io_uring_enter for all of them.
  void Flush() {
    Napi::HandleScope scope(env_);
    unsigned tail = *sq_tail_;
    unsigned head = __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
    unsigned added = 0;
    while (!pending_.empty()) {
      RingOp* op = pending_.front();
      unsigned links = op->Links();
      // A chain goes in whole or waits: its links must reach one submission.
      if (tail - head + links > sq_entries_ || in_flight_ + links > cq_entries_) break;
      pending_.pop_front();
      bool aborted = false;
      try {
        aborted = op->Aborted(env_);
        if (aborted) op->Cancel(env_);
      } catch (...) {
        aborted = true;
      }
      if (aborted) {
        delete op;
        continue;
      }
      // user_data: the op, with the link's index in the low bits (ops are
      // heap objects, aligned to at least 8).
      for (unsigned link = 0; link < links; link++) {
        unsigned i = tail & sq_mask_;
        auto* sqe = reinterpret_cast<io_uring_sqe*>(sqes_ + i * sqe_size_);
        ::memset(sqe, 0, sqe_size_);
        if (links == 1) op->Prep(sqe);
        else op->PrepLink(sqe, link);
        if (link + 1 < links) sqe->flags |= IOSQE_IO_LINK | (skip_ ? IOSQE_CQE_SKIP_SUCCESS : 0);
        sqe->user_data = reinterpret_cast<uintptr_t>(op) | link;
        sq_array_[i] = i;
        tail++;
      }
      // The CQ room of every link is held until the last link's CQE.
      op->links_ = links;
      added += links;
      in_flight_ += links;
    }
    __atomic_store_n(sq_tail_, tail, __ATOMIC_RELEASE);
    unsigned unsubmitted = tail - __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
    while (unsubmitted > 0) {
      int r = Enter(fd_, unsubmitted, 0, 0);
      if (r >= 0) {
        unsubmitted -= std::min(unsubmitted, static_cast<unsigned>(r));
        if (r == 0) break;
        continue;
      }
      if (errno == EINTR) continue;
      // EAGAIN/EBUSY: the kernel is short of memory or CQ space; the SQEs
      // stay in the SQ and the next turn (or the next CQE) tries again.
      break;
    }
    retry_ = unsubmitted > 0;
    (void)added;
  }

  void Drain() {
    napi_callback_scope cs = nullptr;
    Napi::HandleScope scope(env_);
    napi_open_callback_scope(env_, resource_.Value(), async_, &cs);
    for (;;) {
      unsigned head = *cq_head_;
      unsigned tail = __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
      if (head == tail) break;
      while (head != tail) {
        auto* cqe = reinterpret_cast<io_uring_cqe*>(cqes_ + (head & cq_mask_) * cqe_size_);
        RingOp* op = OpOf(cqe->user_data);
        unsigned link = LinkOf(cqe->user_data);
        int32_t res = cqe->res;
        uint64_t extra = big_ ? cqe->big_cqe[0] : 0;
        head++;
        __atomic_store_n(cq_head_, head, __ATOMIC_RELEASE);
        op->LinkDone(link, res);
        if (!ChainEnds(op, link)) continue;
        in_flight_ -= op->links_;
        bool done = true;
        try {
          Napi::HandleScope op_scope(env_);
          done = op->Complete(env_, res, extra);
        } catch (...) {
          // Settling failed (the environment is going away): the op is over.
        }
        if (done) delete op;
        else pending_.push_front(op);
      }
    }
    // The batch's promise reactions run here, and may queue more I/O: it
    // is submitted at once, in the same wake-up, not a loop turn later.
    napi_close_callback_scope(env_, cs);
    if (!pending_.empty() || retry_) Flush();
    Wake();
  }

  // The uv callbacks: node-addon-api throws C++ exceptions where a call
  // into JS fails (a worker being terminated): they must not leave here.
  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* r = static_cast<Ring*>(h->data);
    uint64_t n;
    while (::read(r->efd_, &n, sizeof n) == -1 && errno == EINTR) {
    }
    try {
      r->Drain();
    } catch (...) {
    }
  }

  static void OnPrepare(uv_prepare_t* h) {
    auto* r = static_cast<Ring*>(h->data);
    try {
      r->Flush();
    } catch (...) {
    }
    if (r->pending_.empty() && !r->retry_) {
      uv_prepare_stop(&r->prepare_);
      r->prepare_active_ = false;
    }
    r->Wake();
  }

  // Environment teardown: no JS runs again. Wait for the kernel to finish
  // with every submitted op's memory, then free it all.
  static void OnTeardown(napi_async_cleanup_hook_handle, void* arg) {
    auto* r = static_cast<Ring*>(arg);
    if (current_ == r) current_ = nullptr;
    uv_prepare_stop(&r->prepare_);
    uv_poll_stop(&r->poll_);
    // Never submitted: nothing to wait for.
    for (RingOp* op : r->pending_) delete op;
    r->pending_.clear();
    // Cancel what can be (an op parked in io-wq); a command the device
    // holds cannot be and completes. The cancel's own CQE has user_data 0.
    unsigned tail = *r->sq_tail_;
    if (r->in_flight_ > 0 && tail - __atomic_load_n(r->sq_head_, __ATOMIC_ACQUIRE) < r->sq_entries_) {
      unsigned i = tail & r->sq_mask_;
      auto* sqe = reinterpret_cast<io_uring_sqe*>(r->sqes_ + i * r->sqe_size_);
      ::memset(sqe, 0, r->sqe_size_);
      sqe->opcode = IORING_OP_ASYNC_CANCEL;
      sqe->fd = -1;
      sqe->cancel_flags = IORING_ASYNC_CANCEL_ANY;
      r->sq_array_[i] = i;
      __atomic_store_n(r->sq_tail_, tail + 1, __ATOMIC_RELEASE);
    }
    unsigned unsubmitted = *r->sq_tail_ - __atomic_load_n(r->sq_head_, __ATOMIC_ACQUIRE);
    if (unsubmitted > 0) Enter(r->fd_, unsubmitted, 0, 0);
    while (r->in_flight_ > 0) {
      unsigned head = *r->cq_head_;
      unsigned tail = __atomic_load_n(r->cq_tail_, __ATOMIC_ACQUIRE);
      if (head == tail) {
        if (Enter(r->fd_, 0, 1, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) break;
        continue;
      }
      auto* cqe = reinterpret_cast<io_uring_cqe*>(r->cqes_ + (head & r->cq_mask_) * r->cqe_size_);
      RingOp* op = OpOf(cqe->user_data);
      __atomic_store_n(r->cq_head_, head + 1, __ATOMIC_RELEASE);
      if (op == nullptr || !r->ChainEnds(op, LinkOf(cqe->user_data))) continue;
      r->in_flight_ -= op->links_;
      delete op;
    }
    r->resource_.Reset();
    napi_async_destroy(r->env_, r->async_);
    r->closing_ = 2;
    uv_close(reinterpret_cast<uv_handle_t*>(&r->poll_), OnClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&r->prepare_), OnClosed);
  }

  static void OnClosed(uv_handle_t* h) {
    auto* r = static_cast<Ring*>(h->data);
    if (--r->closing_ > 0) return;
    r->Unmap();
    napi_remove_async_cleanup_hook(r->hook_);
    delete r;
  }

  static constexpr uint64_t kLinkMask = 7;
  static RingOp* OpOf(uint64_t user_data) { return reinterpret_cast<RingOp*>(static_cast<uintptr_t>(user_data & ~kLinkMask)); }
  static unsigned LinkOf(uint64_t user_data) { return static_cast<unsigned>(user_data & kLinkMask); }

  bool ChainEnds(const RingOp* op, unsigned link) const { return skip_ || link + 1 == op->links_; }

  static constexpr unsigned kEntries = 256;
  static inline thread_local Ring* current_ = nullptr;

  Napi::Env env_;
  uv_loop_t* loop_ = nullptr;
  int error_ = 0;
  int fd_ = -1;
  int efd_ = -1;
  bool big_ = false;
  bool skip_ = false;
  void* ring_ = nullptr;
  size_t ring_len_ = 0;
  char* sqes_ = nullptr;
  size_t sqes_len_ = 0;
  size_t sqe_size_ = 64;
  unsigned* sq_head_ = nullptr;
  unsigned* sq_tail_ = nullptr;
  unsigned* sq_array_ = nullptr;
  unsigned sq_mask_ = 0;
  unsigned sq_entries_ = 0;
  unsigned* cq_head_ = nullptr;
  unsigned* cq_tail_ = nullptr;
  char* cqes_ = nullptr;
  size_t cqe_size_ = 16;
  unsigned cq_mask_ = 0;
  unsigned cq_entries_ = 0;
  std::deque<RingOp*> pending_;
  size_t in_flight_ = 0;
  bool retry_ = false;
  bool prepare_active_ = false;
  bool referenced_ = false;
  int closing_ = 0;
  uv_poll_t poll_;
  uv_prepare_t prepare_;
  Napi::ObjectReference resource_;
  napi_async_context async_ = nullptr;
  napi_async_cleanup_hook_handle hook_ = nullptr;
};

}  // namespace p2pdma
