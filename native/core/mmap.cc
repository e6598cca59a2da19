// mmap(2) behind lib/core/mmap.ts.
//
// JS reaches the mapped pages through external ArrayBuffers ("views": the
// mapping's `.buffer` and its windows), with no copy. The address range must
// stay owned by us until nothing can reach it any more, because a view can
// outlive unmap() in ways we cannot stop:
//  - ArrayBuffer.prototype.transfer() and friends move the backing store to a
//    new ArrayBuffer we know nothing about, so we cannot detach it;
//  - a thread-pool fs.read()/ioctl still writes through the raw pointer it
//    took before the view was detached.
// So unmap() detaches every view it can find, replaces the device pages with
// a private anonymous mapping at the same address (a "tombstone": stale
// accesses read zeros, writes go nowhere, never into another mapping that
// could land at a freed address), and the munmap itself waits until every
// view's JS object and backing store are gone and no async msync runs.
//
// mprotect() to anything short of PROT_READ | PROT_WRITE detaches the views
// the same way (they need both), and refuses, changing nothing, while a view
// it cannot detach may still reach the pages: the device pages stay mapped
// there, so no tombstone can catch what that view would touch.
//
// Everything here runs on the JS thread except MsyncWorker::Run, which only
// reads addr/len.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <utility>
#include <vector>

#include "async.h"
#include "errors.h"
#include "modules.h"
#include "views.h"

namespace p2pdma {
namespace {

// Process-wide counts of this addon's successful mmap/munmap calls, and the
// number of unmapped ranges still pinned (tombstoned) until their last view
// is collected. Tests read them to prove each mapping is unmapped once.
std::atomic<uint64_t> g_mmaps{0};
std::atomic<uint64_t> g_munmaps{0};
std::atomic<int64_t> g_pinned{0};

struct View;

struct MapState {
  MapState(void* a, size_t l) : addr(a), len(l) {}
  void* addr;
  size_t len;
  int refs = 1;              // the MappingWrap + each View + each running worker
  bool wrapped = true;       // the MappingWrap is alive
  bool unmapped = false;     // unmap() was called
  bool tombstoned = false;   // device pages replaced, munmap pending
  bool munmapped = false;
  std::vector<View*> views;  // views whose object or store is still alive
};

// One ArrayBuffer over [addr + offset, +length). It pins the range until both
// its JS object (what an in-flight fs.read holds) and its backing store (what
// transfer() moves elsewhere) are gone.
struct View {
  explicit View(MapState* state) : s(state) {}
  MapState* s;
  napi_ref object = nullptr;  // weak, to detach it on unmap()
  bool creating = true;
  bool object_gone = false;
  bool store_gone = false;
  bool detached = false;  // by unmap() or mprotect(): no transfer() can have moved it since
};

// munmap once nothing but (at most) the wrapper can reach the range and the
// mapping is unmapped or unreachable; free the state with the last reference.
void Settle(MapState* s) {
  int users = s->refs - (s->wrapped ? 1 : 0);
  if (!s->munmapped && users == 0 && (s->unmapped || !s->wrapped)) {
    ::munmap(s->addr, s->len);
    s->munmapped = true;
    g_munmaps++;
    if (s->tombstoned) g_pinned--;
  }
  if (s->refs == 0) delete s;
}

void Release(MapState* s) {
  s->refs--;
  Settle(s);
}

void ViewGone(View* v) {
  if (!v->object_gone || !v->store_gone) return;
  MapState* s = v->s;
  for (auto it = s->views.begin(); it != s->views.end(); ++it) {
    if (*it == v) {
      s->views.erase(it);
      break;
    }
  }
  delete v;
  Release(s);
}

// The backing store was freed. On Node 20 this also runs synchronously
// inside a failing napi_create_external_arraybuffer (length over
// buffer.constants.MAX_LENGTH); `creating` lets the caller clean up then.
void StoreFinalize(napi_env, void*, void* hint) {
  auto* v = static_cast<View*>(hint);
  v->store_gone = true;
  if (!v->creating) ViewGone(v);
}

void ObjectFinalize(napi_env env, void* data, void*) {
  auto* v = static_cast<View*>(data);
  if (v->object != nullptr) napi_delete_reference(env, v->object);
  v->object = nullptr;
  v->object_gone = true;
  ViewGone(v);
}

// Replaces the pages with inaccessible-to-others private memory, keeping the
// range reserved. If that fails the device pages stay mapped: stale views then
// still reach the old device memory, never someone else's.
void Tombstone(MapState* s) {
  void* p = ::mmap(s->addr, s->len, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;
  s->tombstoned = true;
  g_pinned++;
}

// The view's ArrayBuffer if it is alive and attached, else nullptr (collected,
// detached by us, or moved away by transfer()).
napi_value Attached(napi_env env, View* v) {
  napi_value ab = nullptr;
  if (v->object == nullptr || napi_get_reference_value(env, v->object, &ab) != napi_ok || ab == nullptr) return nullptr;
  bool detached = true;
  if (napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached) return nullptr;
  return ab;
}

void Detach(napi_env env, View* v, napi_value ab) {
  v->detached = true;
  napi_detach_arraybuffer(env, ab);
}

Napi::Value NewView(Napi::Env env, MapState* s, size_t off, size_t len) {
  auto* v = new View(s);
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(env, static_cast<char*>(s->addr) + off, len,
                                                    StoreFinalize, v, &ab);
  v->creating = false;
  if (st != napi_ok) {
    // If Node did not run the finalizer it may still hold `v`: leak those
    // few bytes rather than risk a use after free.
    if (v->store_gone) delete v;
    throw Napi::Error::New(env);
  }
  s->refs++;
  s->views.push_back(v);
  if (napi_add_finalizer(env, ab, v, ObjectFinalize, nullptr, &v->object) != napi_ok) {
    v->object_gone = true;  // only the store's lifetime is known then
    throw Napi::Error::New(env);
  }
  return Napi::Value(env, ab);
}

class MappingWrap : public Napi::ObjectWrap<MappingWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {
                           InstanceMethod<&MappingWrap::Window>("window"),
                           InstanceMethod<&MappingWrap::Address>("address"),
                           InstanceMethod<&MappingWrap::Unmap>("unmap"),
                           InstanceMethod<&MappingWrap::Read>("read"),
                           InstanceMethod<&MappingWrap::Write>("write"),
                           InstanceMethod<&MappingWrap::Msync>("msync"),
                           InstanceMethod<&MappingWrap::MsyncAsync>("msyncAsync"),
                           InstanceMethod<&MappingWrap::Mprotect>("mprotect"),
                       });
  }

  // new Mapping(fd, length, prot, flags, offset). fd -1 for MAP_ANONYMOUS.
  explicit MappingWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MappingWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) ThrowType(env, "fd");
    // Int32Value() wraps (2**32 + fd would map fd): exact integers only.
    double fdv = info[0].As<Napi::Number>().DoubleValue();
    if (!IsIntegerIn(fdv, -1, INT32_MAX)) ThrowRange(env, "fd");
    int fd = static_cast<int>(fdv);
    uint64_t len = U64Arg(info, 1);
    if (!info[2].IsNumber() || !info[3].IsNumber()) ThrowType(env, "prot/flags");
    double protv = info[2].As<Napi::Number>().DoubleValue();
    double flagsv = info[3].As<Napi::Number>().DoubleValue();
    if (!IsIntegerIn(protv, 0, INT32_MAX) || !IsIntegerIn(flagsv, 0, INT32_MAX)) ThrowRange(env, "prot/flags");
    int prot = static_cast<int>(protv);
    int flags = static_cast<int>(flagsv);
    // fd -1 only with MAP_ANONYMOUS, which ignores it.
    if (fd == -1 && (flags & MAP_ANONYMOUS) == 0) ThrowRange(env, "fd");
    uint64_t off = U64Arg(info, 4);
    if (len == 0 || len > SIZE_MAX || off > static_cast<uint64_t>(INT64_MAX)) ThrowType(env, "length/offset");

    void* p = ::mmap(nullptr, static_cast<size_t>(len), prot, flags, fd, static_cast<off_t>(off));
    if (p == MAP_FAILED) ThrowSys(env, errno, "mmap", fd);
    g_mmaps++;
    state_ = new MapState(p, static_cast<size_t>(len));
  }

  // Typed arrays over views may outlive the wrapper: it only drops its
  // reference, and the mapping lives on until the last view is gone.
  ~MappingWrap() override {
    if (state_ == nullptr) return;  // the constructor threw
    state_->wrapped = false;
    Release(state_);
  }

 private:
  friend class MsyncWorker;

  // Throws EBADF once unmapped. Bounds are checked by lib/core/mmap.ts; this only
  // stops a crash.
  void CheckRange(Napi::Env env, uint64_t off, uint64_t len, const char* what) {
    if (state_->unmapped) ThrowSys(env, EBADF, what);
    if (off > state_->len || len > state_->len - off) ThrowType(env, "offset/length");
  }

  // window(offset, length) -> a new ArrayBuffer over those bytes.
  Napi::Value Window(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t off = U64Arg(info, 0);
    uint64_t len = U64Arg(info, 1);
    CheckRange(env, off, len, "mmap");
    if (len == 0) ThrowType(env, "length");
    return NewView(env, state_, static_cast<size_t>(off), static_cast<size_t>(len));
  }

  // read(offset, view): copies from the mapping into the view.
  Napi::Value Read(const Napi::CallbackInfo& info) { return Copy(info, false); }
  // write(offset, view): copies the view into the mapping.
  Napi::Value Write(const Napi::CallbackInfo& info) { return Copy(info, true); }

  Napi::Value Copy(const Napi::CallbackInfo& info, bool into_mapping) {
    Napi::Env env = info.Env();
    uint64_t off = U64Arg(info, 0);
    void* data = nullptr;
    size_t n = 0;
    if (!ViewBytes(env, info[1], &data, &n)) ThrowType(env, "view");
    CheckRange(env, off, n, into_mapping ? "write" : "read");
    char* at = static_cast<char*>(state_->addr) + off;
    if (n > 0) {
      if (into_mapping)
        ::memmove(at, data, n);
      else
        ::memmove(data, at, n);
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value Address(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(state_->addr)));
  }

  // unmap() -> true if this call unmapped, false if already unmapped.
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MapState* s = state_;
    if (s->unmapped) return Napi::Boolean::New(env, false);
    s->unmapped = true;
    // A copy: a finalizer run from Detach must not change what we iterate.
    std::vector<View*> views = s->views;
    for (View* v : views) {
      napi_value ab = Attached(env, v);
      if (ab != nullptr) Detach(env, v, ab);
    }
    if (!s->views.empty()) Tombstone(s);
    Settle(s);
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

  // mprotect(prot) over the whole range -> 0, or the number of views it
  // cannot detach (nothing changed then); throws SysError. Without both
  // PROT_READ and PROT_WRITE the views would fault, so it detaches them once
  // the protection has changed. A view whose store may outlive its detached
  // or collected object (moved by transfer(), or collected but not yet
  // finalized) cannot be detached: it refuses then.
  Napi::Value Mprotect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int prot = static_cast<int>(U32Arg(info, 0));
    MapState* s = state_;
    if (s->unmapped) ThrowSys(env, EBADF, "mprotect");
    std::vector<std::pair<View*, napi_value>> detach;
    if ((prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE)) {
      uint32_t stuck = 0;
      for (View* v : s->views) {
        if (v->store_gone || v->detached) continue;
        napi_value ab = Attached(env, v);
        if (ab == nullptr)
          stuck++;
        else
          detach.emplace_back(v, ab);
      }
      if (stuck > 0) return Napi::Number::New(env, stuck);
    }
    if (::mprotect(s->addr, s->len, prot) == -1) ThrowSys(env, errno, "mprotect");
    for (auto& [v, ab] : detach) Detach(env, v, ab);
    return Napi::Number::New(env, 0);
  }

  MapState* state_ = nullptr;
};

// msync on the thread pool. It holds a reference, so an unmap() meanwhile
// defers the munmap (a tombstone, if views exist, may take the pages first:
// the msync then syncs nothing, which is what an unmapped mapping asks for).
class MsyncWorker : public PromiseWorker {
 public:
  MsyncWorker(Napi::Env env, MapState* s, int flags)
      : PromiseWorker(env, "p2pdma:msync", "msync", -1), s_(s), flags_(flags) {
    s_->refs++;
  }
  ~MsyncWorker() override { Release(s_); }

 protected:
  void Run() override {
    if (::msync(s_->addr, s_->len, flags_) == -1) err_ = errno;
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

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
  o.Set("pinned", Napi::Number::New(env, static_cast<double>(g_pinned.load())));
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
