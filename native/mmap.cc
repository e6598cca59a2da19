// mmap(2) behind lib/mmap.ts.
//
// A mapping is exposed as an external ArrayBuffer over the mapped pages (no
// copy). Two things may end its life and must agree on who calls munmap:
//  - the explicit unmap(): marks the mapping unmapped, detaches the
//    ArrayBuffer (so JS can no longer reach the pages), then unmaps;
//  - the ArrayBuffer's finalizer, when it is garbage collected un-unmapped.
// MapState is shared (refcounted) by the MappingWrap and the ArrayBuffer's
// finalizer; `munmapped` guarantees munmap runs exactly once, and `pending`
// defers it while an async msync is using the pages.
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

#include "async.h"
#include "errors.h"
#include "modules.h"

namespace p2pdma {
namespace {

// Process-wide counts of successful mmap/munmap calls made by this addon.
// Tests read them to prove that a mapping is unmapped exactly once.
std::atomic<uint64_t> g_mmaps{0};
std::atomic<uint64_t> g_munmaps{0};

struct MapState {
  void* addr;
  size_t len;
  int refs;          // MappingWrap + ArrayBuffer finalizer
  int pending = 0;   // async operations using the pages
  bool unmapped = false;   // unmap requested (explicitly or by GC)
  bool munmapped = false;  // munmap done
};

void MaybeMunmap(MapState* s) {
  if (s->unmapped && !s->munmapped && s->pending == 0) {
    ::munmap(s->addr, s->len);
    s->munmapped = true;
    g_munmaps++;
  }
}

void Release(MapState* s) {
  if (--s->refs == 0) delete s;
}

// The ArrayBuffer was collected (or detached and dropped): the pages are no
// longer reachable from JS.
void BufferFinalize(Napi::Env, void*, MapState* s) {
  s->unmapped = true;
  MaybeMunmap(s);
  Release(s);
}

class MappingWrap : public Napi::ObjectWrap<MappingWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {
                           InstanceMethod<&MappingWrap::Buffer>("buffer"),
                           InstanceMethod<&MappingWrap::Address>("address"),
                           InstanceMethod<&MappingWrap::Unmap>("unmap"),
                           InstanceMethod<&MappingWrap::Msync>("msync"),
                           InstanceMethod<&MappingWrap::MsyncAsync>("msyncAsync"),
                       });
  }

  // new Mapping(fd, length, prot, flags, offset). fd -1 for MAP_ANONYMOUS.
  explicit MappingWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MappingWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) ThrowType(env, "fd");
    int fd = info[0].As<Napi::Number>().Int32Value();
    uint64_t len = U64Arg(info, 1);
    if (!info[2].IsNumber() || !info[3].IsNumber()) ThrowType(env, "prot/flags");
    int prot = info[2].As<Napi::Number>().Int32Value();
    int flags = info[3].As<Napi::Number>().Int32Value();
    uint64_t off = U64Arg(info, 4);
    if (len == 0 || len > SIZE_MAX || off > static_cast<uint64_t>(INT64_MAX)) ThrowType(env, "length/offset");

    void* p = ::mmap(nullptr, static_cast<size_t>(len), prot, flags, fd, static_cast<off_t>(off));
    if (p == MAP_FAILED) ThrowSys(env, errno, "mmap", fd);
    g_mmaps++;
    state_ = new MapState{p, static_cast<size_t>(len), 1};
    Napi::ArrayBuffer ab;
    try {
      ab = Napi::ArrayBuffer::New(env, p, state_->len, BufferFinalize, state_);
    } catch (...) {
      // The destructor does not run for a constructor that throws.
      state_->unmapped = true;
      MaybeMunmap(state_);
      delete state_;
      state_ = nullptr;
      throw;
    }
    state_->refs++;
    buffer_ = Napi::Persistent(ab);
  }

  // The wrapper never unmaps: typed arrays over buffer() may outlive it, and
  // the ArrayBuffer's own finalizer handles that case.
  ~MappingWrap() override {
    if (state_ != nullptr) Release(state_);
  }

 private:
  friend class MsyncWorker;

  Napi::Value Buffer(const Napi::CallbackInfo&) { return buffer_.Value(); }

  Napi::Value Address(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(state_->addr)));
  }

  // unmap() -> true if this call unmapped, false if already unmapped.
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->unmapped) return Napi::Boolean::New(env, false);
    state_->unmapped = true;  // before Detach: its finalizer may run any time
    Napi::ArrayBuffer ab = buffer_.Value();
    if (!ab.IsDetached()) ab.Detach();
    buffer_.Reset();
    MaybeMunmap(state_);
    return Napi::Boolean::New(env, true);
  }

  // msync(flags) -> undefined; throws SysError.
  Napi::Value Msync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int flags = static_cast<int>(U32Arg(info, 0));
    if (state_->unmapped) ThrowSys(env, EBADF, "msync");
    if (::msync(state_->addr, state_->len, flags) == -1) ThrowSys(env, errno, "msync");
    return env.Undefined();
  }

  Napi::Value MsyncAsync(const Napi::CallbackInfo& info);

  MapState* state_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

class MsyncWorker : public PromiseWorker {
 public:
  MsyncWorker(Napi::Env env, MapState* s, int flags)
      : PromiseWorker(env, "p2pdma:msync", "msync", -1), s_(s), flags_(flags) {
    s_->refs++;
    s_->pending++;
  }
  ~MsyncWorker() override { Release(s_); }

 protected:
  void Run() override {
    if (::msync(s_->addr, s_->len, flags_) == -1) err_ = errno;
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  void Settled(Napi::Env) override {
    s_->pending--;
    MaybeMunmap(s_);  // an unmap() that came while we ran happens now
  }

 private:
  MapState* s_;
  int flags_;
};

Napi::Value MappingWrap::MsyncAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int flags = static_cast<int>(U32Arg(info, 0));
  if (state_->unmapped) ThrowSys(env, EBADF, "msync");
  auto* w = new MsyncWorker(env, state_, flags);
  w->Keep(Value());
  return w->Start();
}

Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(::sysconf(_SC_PAGESIZE)));
}

Napi::Value Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("mmap", Napi::Number::New(env, static_cast<double>(g_mmaps.load())));
  o.Set("munmap", Napi::Number::New(env, static_cast<double>(g_munmaps.load())));
  return o;
}

}  // namespace

void InitMmap(Napi::Env env, Napi::Object exports) {
  exports.Set("Mapping", MappingWrap::Define(env));
  exports.Set("pageSize", Napi::Function::New(env, PageSize, "pageSize"));
  exports.Set("counters", Napi::Function::New(env, Counters, "counters"));
  Napi::Object c = Napi::Object::New(env);
#define P2PDMA_CONST(n) c.Set(#n, Napi::Number::New(env, n))
  P2PDMA_CONST(PROT_NONE);
  P2PDMA_CONST(PROT_READ);
  P2PDMA_CONST(PROT_WRITE);
  P2PDMA_CONST(PROT_EXEC);
  P2PDMA_CONST(MAP_SHARED);
  P2PDMA_CONST(MAP_PRIVATE);
  P2PDMA_CONST(MAP_SHARED_VALIDATE);
  P2PDMA_CONST(MAP_ANONYMOUS);
  P2PDMA_CONST(MAP_FIXED);
  P2PDMA_CONST(MAP_FIXED_NOREPLACE);
  P2PDMA_CONST(MAP_POPULATE);
  P2PDMA_CONST(MAP_LOCKED);
  P2PDMA_CONST(MAP_NORESERVE);
  P2PDMA_CONST(MAP_SYNC);
  P2PDMA_CONST(MS_ASYNC);
  P2PDMA_CONST(MS_SYNC);
  P2PDMA_CONST(MS_INVALIDATE);
#undef P2PDMA_CONST
  exports.Set("mmapConstants", c);
}

}  // namespace p2pdma
