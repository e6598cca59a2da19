// Readiness events from the event loop (uv_poll), behind lib/core/poll.ts.
//
// A Watcher polls its own dup of the fd (F_DUPFD_CLOEXEC): libuv allows one
// poll handle per fd number, and closing the caller's fd (or FileHandle)
// cannot pull the number out from under epoll. No thread-pool thread is
// ever used. Lifetime:
//  - a watcher on an Fd is that Fd's child: closing the Fd closes the
//    watcher (JS gets onevent(1)), and the Fd's close(2) waits until the
//    watcher's uv_close has completed;
//  - while started it holds itself (it cannot be collected, as a pending
//    fs request cannot); a stopped, unreachable one is collected and its
//    handle closed by the finalizer;
//  - environment teardown closes every watcher and waits for uv_close.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "errors.h"
#include "handle.h"
#include "modules.h"
#include "resource.h"

namespace p2pdma {
namespace {

class Watcher;

// Outlives the Watcher until uv_close has called back.
struct PollHandle {
  uv_poll_t poll;
  int fd;
  Watcher* owner;
  EnvState* env;
};

// onevent(status, events): status 0 with UV_* event bits, -errno when
// polling failed, kClosedByParent when the watched Fd was closed.
constexpr int kClosedByParent = 1;

class Watcher : public ResourceWrap<Watcher> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7064'6d61'706f'6c6cULL, 0x2b8f'61d0'c4a7'193eULL};

  static Napi::Function Define(Napi::Env env) {
    auto props = ResourceMethods();
    props.push_back(InstanceMethod<&Watcher::Start>("start"));
    props.push_back(InstanceMethod<&Watcher::Stop>("stop"));
    props.push_back(InstanceMethod<&Watcher::SetRef>("setRef"));
    props.push_back(InstanceMethod<&Watcher::Peek>("peek"));
    return DefineClass(env, "Watcher", props);
  }

  // new Watcher(target): target is a native Fd (becomes the parent) or an
  // fd number (only dup'ed). Throws SysError: EBADF (closed Fd), fcntl
  // errors, or uv_poll_init's (EPERM: regular files and directories).
  explicit Watcher(const Napi::CallbackInfo& info) : ResourceWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    FdWrap* parent = UnwrapResource<FdWrap>(info[0]);
    int src;
    if (parent != nullptr) {
      src = parent->fd();
      if (!parent->IsOpen()) ThrowSys(env, EBADF, "fcntl", src);
    } else {
      src = FdArg(info, 0);
    }
    int d = ::fcntl(src, F_DUPFD_CLOEXEC, 0);
    if (d == -1) ThrowSys(env, errno, "fcntl", src);
    auto* h = new PollHandle{{}, d, this, env_state()};
    int r = uv_poll_init(env_state()->loop(), &h->poll, d);
    if (r < 0) {
      ::close(d);
      delete h;
      ThrowSys(env, -r, "epoll_ctl", src);
    }
    h->poll.data = h;
    h_ = h;
    if (parent != nullptr) AddParent(parent, info[0].As<Napi::Object>());
  }

  void Finalize(Napi::Env) override { FinalizeResource(); }

 protected:
  // The dup is closed in OnClosed, after uv_close.
  int Teardown() override { return 0; }

  void OnClose(bool gc) override {
    if (h_ == nullptr) return;
    if (active_) {
      uv_poll_stop(&h_->poll);
      active_ = false;
      if (!gc) Release();
    }
    PollHandle* h = h_;
    h_ = nullptr;
    // From the finalizer the wrapper is about to be deleted: close blind.
    h->owner = gc ? nullptr : this;
    if (!gc) Hold();
    h->env->BeginAsyncClose();
    uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), OnClosed);
  }

  void OnParentClose() override {
    closed_by_parent_ = true;
    Close();
  }

  void Deferred(int) override {
    if (closed_by_parent_) CallJs("onevent", {Napi::Number::New(env(), kClosedByParent), Napi::Number::New(env(), 0)});
  }

 private:
  // start(events) -> 0 or -errno. Changes the events when already started.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int events = static_cast<int>(U32Arg(info, 0));
    if (h_ == nullptr) return Napi::Number::New(env, -EBADF);
    int r = uv_poll_start(&h_->poll, events, OnPoll);
    if (r < 0) return Napi::Number::New(env, r);
    if (!active_) {
      active_ = true;
      Hold();
    }
    return Napi::Number::New(env, 0);
  }

  void Stop(const Napi::CallbackInfo&) {
    if (h_ == nullptr || !active_) return;
    uv_poll_stop(&h_->poll);
    active_ = false;
    Release();
  }

  // setRef(bool): whether an active watcher keeps the event loop alive.
  void SetRef(const Napi::CallbackInfo& info) {
    if (h_ == nullptr) return;
    if (info[0].ToBoolean())
      uv_ref(reinterpret_cast<uv_handle_t*>(&h_->poll));
    else
      uv_unref(reinterpret_cast<uv_handle_t*>(&h_->poll));
  }

  // peek(events) -> the UV_* events ready now (poll(2), timeout 0), or
  // -errno. Reports like libuv: POLLERR fails with EBADF, POLLHUP wakes
  // readers and writers.
  Napi::Value Peek(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int events = static_cast<int>(U32Arg(info, 0));
    if (h_ == nullptr) return Napi::Number::New(env, -EBADF);
    short want = 0;
    if (events & UV_READABLE) want |= POLLIN;
    if (events & UV_WRITABLE) want |= POLLOUT;
    if (events & UV_PRIORITIZED) want |= POLLPRI;
    if (events & UV_DISCONNECT) want |= POLLRDHUP;
    struct pollfd p = {h_->fd, want, 0};
    int r;
    do r = ::poll(&p, 1, 0);
    while (r == -1 && errno == EINTR);
    if (r == -1) return Napi::Number::New(env, -errno);
    if (p.revents & POLLNVAL) return Napi::Number::New(env, -EBADF);
    if ((p.revents & POLLERR) && !(p.revents & POLLPRI)) return Napi::Number::New(env, -EBADF);
    if (p.revents & (POLLERR | POLLHUP)) p.revents |= want & (POLLIN | POLLOUT | POLLRDHUP | POLLPRI);
    int ready = 0;
    if (p.revents & POLLIN) ready |= UV_READABLE;
    if (p.revents & POLLOUT) ready |= UV_WRITABLE;
    if (p.revents & POLLPRI) ready |= UV_PRIORITIZED;
    if (p.revents & POLLRDHUP) ready |= UV_DISCONNECT;
    return Napi::Number::New(env, ready);
  }

  static void OnPoll(uv_poll_t* p, int status, int events) {
    auto* h = static_cast<PollHandle*>(p->data);
    Watcher* w = h->owner;
    if (w == nullptr) return;
    Napi::Env env = w->env();
    Napi::HandleScope scope(env);
    // On error libuv has stopped the handle; drop the active hold after the
    // callback, so the watcher stays alive during it.
    bool stopped = status < 0 && w->active_;
    if (stopped) w->active_ = false;
    // JS may stop or close the watcher (or its Fd) in the callback: only
    // the hold above is touched afterwards (a closing watcher is held too).
    w->CallJs("onevent", {Napi::Number::New(env, status < 0 ? status : 0), Napi::Number::New(env, events)});
    if (stopped) w->Release();
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* h = static_cast<PollHandle*>(handle->data);
    ::close(h->fd);
    EnvState* env = h->env;
    Watcher* owner = h->owner;
    delete h;
    if (owner != nullptr) {
      Napi::HandleScope scope(owner->env());
      owner->Release();  // runs the teardown, which releases the parent Fd
    }
    env->EndAsyncClose();
  }

  PollHandle* h_ = nullptr;
  bool active_ = false;
  bool closed_by_parent_ = false;
};

}  // namespace

void InitPoll(Napi::Env env, Napi::Object exports) {
  exports.Set("Watcher", Watcher::Define(env));
  Napi::Object c = Napi::Object::New(env);
  c.Set("UV_READABLE", Napi::Number::New(env, UV_READABLE));
  c.Set("UV_WRITABLE", Napi::Number::New(env, UV_WRITABLE));
  c.Set("UV_DISCONNECT", Napi::Number::New(env, UV_DISCONNECT));
  c.Set("UV_PRIORITIZED", Napi::Number::New(env, UV_PRIORITIZED));
  exports.Set("pollConstants", c);
}

}  // namespace p2pdma
