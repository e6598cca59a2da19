// The handle model: every kernel object the addon owns is a Resource.
//
// A Resource is closed exactly once, by whichever comes first:
//  - an explicit close() from JS;
//  - the environment's teardown (worker terminate or exit, process exit),
//    which FinalizationRegistry callbacks never see;
//  - the garbage collector (the wrapper's finalizer), as a backstop.
//
// close() while operations are in flight (a thread-pool ioctl, a uv_poll
// watcher, a child resource) makes the resource read as closed at once but
// defers the teardown until the last of them is released, so the fd number
// is never closed (and reused) under a running syscall or under epoll. The
// result of a deferred teardown is handed to JS through the wrapper's
// `onclose(result)` property, so its error is never lost.
//
// Parents: a resource may hold strong references to parent resources (an MR
// to its PD, a watcher to the Fd it watches). A parent stays alive and open
// until its children are torn down; its own teardown runs after theirs.
#pragma once

#include <napi.h>
#include <uv.h>

#include <unordered_set>
#include <vector>

namespace p2pdma {

class Resource;

// Per-environment state: the open resources and the async cleanup hook that
// closes them when the environment goes away. It is the addon's instance
// data: add fields here rather than calling SetInstanceData elsewhere.
class EnvState {
 public:
  static void Init(Napi::Env env);
  static EnvState* Get(Napi::Env env);

  uv_loop_t* loop() const { return loop_; }
  // True once the environment is being torn down: no more calls into JS.
  bool tearing_down() const { return tearing_down_; }

  void Add(Resource* r) { live_.insert(r); }
  // Deletes this state once torn down and empty.
  void Remove(Resource* r);

  // Brackets an asynchronous close (uv_close) that teardown must wait for.
  void BeginAsyncClose() { async_closes_++; }
  void EndAsyncClose();

  // Constructors native code instantiates.
  Napi::FunctionReference fd_class;
  // rdma_cm ids made for incoming connections (native/rdma/rdma_cm.cc).
  Napi::FunctionReference rdma_cm_id_class;
  // %TypedArray%.prototype.byteLength's getter (native/core/views.h).
  Napi::FunctionReference typed_array_byte_length;

 private:
  static void OnTeardown(napi_async_cleanup_hook_handle handle, void* arg);
  void MaybeFinishTeardown();

  napi_env env_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  std::unordered_set<Resource*> live_;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  bool tearing_down_ = false;
  bool torn_down_ = false;
  int async_closes_ = 0;
};

class Resource {
 public:
  // close(): the teardown ran now (0 or -errno), or it waits for in-flight
  // operations (kDeferred).
  static constexpr int kDeferred = 1;

  explicit Resource(Napi::Env env);
  virtual ~Resource();
  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;

  // Open: not closed by anyone yet. Usable for new operations.
  bool IsOpen() const { return state_ == State::kOpen; }
  // Number of holds: in-flight operations and children.
  int InFlight() const { return holds_; }

  // Requests the close. Idempotent (later calls return 0).
  int Close();

  // An operation starts/ends using this resource. Hold() keeps the JS
  // wrapper alive; the last Release() after Close() runs the teardown.
  void Hold();
  void Release();
  // Holds taken from JS (lib/core/handle.ts hold()). Environment teardown drops
  // them, since no JS will run to release them.
  void HoldFromJs();
  void ReleaseFromJs();

  // Gives up ownership without a teardown (e.g. Fd.release()). Fails with
  // -EBUSY while operations are in flight.
  int Disown();

  // Makes `parent` (open) outlive this resource: it is held, and its JS
  // wrapper strongly referenced, until this resource's teardown has run.
  void AddParent(Resource* parent, Napi::Object parent_object);

  Napi::Env env() const { return env_; }
  EnvState* env_state() const { return state_env_; }

 protected:
  // Releases the kernel object. Runs exactly once, on the JS thread, with no
  // operation in flight. Returns 0 or -errno.
  virtual int Teardown() = 0;
  // close() started: cancel the operations that can be cancelled (polls).
  // `gc` is true when called from the finalizer (the wrapper is going away).
  virtual void OnClose(bool gc) {}
  // A parent is being closed. By default the child keeps it alive (its
  // teardown waits); watchers close themselves instead.
  virtual void OnParentClose() {}
  // A deferred teardown finished with `result` (0 or -errno).
  virtual void Deferred(int result) {}
  // Keeps the JS wrapper alive (strong) while anything is in flight.
  virtual void KeepAlive(bool on) {}

  // Called by the wrapper's finalizer: closes without waiting and without
  // calling into JS.
  void CloseOnFinalize();

 private:
  enum class State { kOpen, kClosing, kDone };
  int RunTeardown();

  Napi::Env env_;
  EnvState* state_env_;
  State state_ = State::kOpen;
  int holds_ = 0;
  int js_holds_ = 0;
  bool deferred_ = false;
  std::vector<Resource*> parents_;
  std::vector<Napi::ObjectReference> parent_refs_;
  std::vector<Resource*> children_;

  friend class EnvState;
};

// The JS side of a Resource. Every concrete class T must declare
//   void Finalize(Napi::Env env) override { FinalizeResource(); }
// (node-addon-api only calls a Finalize declared in T itself; the
// static_assert below enforces it).
//
// Each T also declares `static constexpr napi_type_tag kTypeTag = {...}`
// (two random u64s) so that UnwrapResource<T> can check the type of an
// object JS passed in before unwrapping it.
template <typename T>
class ResourceWrap : public Napi::ObjectWrap<T>, public Resource {
 public:
  explicit ResourceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info), Resource(info.Env()) {
    static_assert(Napi::details::HasExtendedFinalizer<T>::value, "declare Finalize(Napi::Env) in the resource class");
    napi_type_tag_object(info.Env(), info.This(), &T::kTypeTag);
  }

  ~ResourceWrap() override {
    if (async_ctx_ != nullptr) napi_async_destroy(env(), async_ctx_);
  }

  // The JS methods every resource has: close() -> 0 | -errno | 1 (deferred),
  // hold(), unhold(), inFlight() -> number.
  static std::vector<typename Napi::ObjectWrap<T>::PropertyDescriptor> ResourceMethods() {
    using W = Napi::ObjectWrap<T>;
    return {
        W::InstanceMethod("close", static_cast<typename W::InstanceMethodCallback>(&ResourceWrap::JsClose)),
        W::InstanceMethod("hold", static_cast<typename W::InstanceVoidMethodCallback>(&ResourceWrap::JsHold)),
        W::InstanceMethod("unhold", static_cast<typename W::InstanceVoidMethodCallback>(&ResourceWrap::JsUnhold)),
        W::InstanceMethod("inFlight", static_cast<typename W::InstanceMethodCallback>(&ResourceWrap::JsInFlight)),
    };
  }

 protected:
  void FinalizeResource() { CloseOnFinalize(); }

  void KeepAlive(bool on) override {
    if (on)
      this->Ref();
    else
      this->Unref();
  }

  // Calls `this.onclose(result)` when JS set one. A deferred teardown can
  // run inside environment teardown (a child's close releasing its parent),
  // where no handle may be made, or from a native callback without a scope.
  void Deferred(int result) override {
    if (env_state()->tearing_down()) return;
    Napi::HandleScope scope(env());
    CallJs("onclose", {Napi::Number::New(env(), result)});
  }

  // Calls the function in the wrapper's property `name`, if any, as an
  // async callback (microtasks run after it). Never while tearing down.
  // A throwing callback becomes an uncaught exception.
  void CallJs(const char* name, const std::initializer_list<napi_value>& args) {
    if (env_state()->tearing_down()) return;
    Napi::Env env = this->env();
    Napi::HandleScope scope(env);
    try {
      Napi::Object self = this->Value();
      Napi::Value fn = self.Get(name);
      if (!fn.IsFunction()) return;
      if (async_ctx_ == nullptr &&
          napi_async_init(env, self, Napi::String::New(env, "p2pdma:Resource"), &async_ctx_) != napi_ok)
        return;
      napi_value result;
      napi_make_callback(env, async_ctx_, self, fn, args.size(), args.begin(), &result);
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err);
      }
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

 private:
  napi_async_context async_ctx_ = nullptr;

  Napi::Value JsClose(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Close()); }
  void JsHold(const Napi::CallbackInfo&) { HoldFromJs(); }
  void JsUnhold(const Napi::CallbackInfo&) { ReleaseFromJs(); }
  Napi::Value JsInFlight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), InFlight()); }
};

// The T wrapped by `v`, or nullptr when `v` is not a T.
template <typename T>
T* UnwrapResource(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  bool is_t = false;
  if (napi_check_object_type_tag(v.Env(), v, &T::kTypeTag, &is_t) != napi_ok || !is_t) return nullptr;
  return T::Unwrap(v.As<Napi::Object>());
}

}  // namespace p2pdma
