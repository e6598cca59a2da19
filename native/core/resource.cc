#include "resource.h"

#include <errno.h>

#include <algorithm>

namespace p2pdma {

// ---------------------------------------------------------------------------
// EnvState

void EnvState::Init(Napi::Env env) {
  auto* s = new EnvState();
  s->env_ = env;
  NAPI_THROW_IF_FAILED_VOID(env, napi_get_uv_event_loop(env, &s->loop_));
  // No finalizer: the state frees itself once torn down and empty, because
  // wrappers are finalized after the instance data would be.
  NAPI_THROW_IF_FAILED_VOID(env, napi_set_instance_data(env, s, nullptr, nullptr));
  // An async hook (not a plain one) so that uv_close callbacks can complete
  // before the loop is closed: Node waits until we remove it.
  NAPI_THROW_IF_FAILED_VOID(env, napi_add_async_cleanup_hook(env, OnTeardown, s, &s->hook_));
}

EnvState* EnvState::Get(Napi::Env env) {
  void* p = nullptr;
  napi_get_instance_data(env, &p);
  return static_cast<EnvState*>(p);
}

void EnvState::OnTeardown(napi_async_cleanup_hook_handle, void* arg) {
  auto* s = static_cast<EnvState*>(arg);
  s->tearing_down_ = true;
  // Closing one resource can tear down others (its parents), never free
  // them: finalizers run only after this hook is removed.
  std::vector<Resource*> open(s->live_.begin(), s->live_.end());
  for (Resource* r : open) {
    // No JS will run again to release JS holds (thread-pool work has
    // completed before cleanup hooks run).
    while (r->js_holds_ > 0) r->ReleaseFromJs();
    r->Close();
  }
  s->MaybeFinishTeardown();
}

void EnvState::EndAsyncClose() {
  async_closes_--;
  MaybeFinishTeardown();
}

void EnvState::MaybeFinishTeardown() {
  if (!tearing_down_ || torn_down_ || async_closes_ > 0) return;
  torn_down_ = true;
  napi_remove_async_cleanup_hook(hook_);
  hook_ = nullptr;
  if (live_.empty()) delete this;
}

void EnvState::Remove(Resource* r) {
  live_.erase(r);
  if (torn_down_ && live_.empty()) delete this;
}

// ---------------------------------------------------------------------------
// Resource

Resource::Resource(Napi::Env env) : env_(env), state_env_(EnvState::Get(env)) { state_env_->Add(this); }

Resource::~Resource() {
  // Only reached through CloseOnFinalize (the wrapper's finalizer) or with
  // a constructor that threw before anything was owned.
  for (Resource* p : parents_) p->children_.erase(std::remove(p->children_.begin(), p->children_.end(), this), p->children_.end());
  state_env_->Remove(this);
}

int Resource::Close() {
  if (state_ != State::kOpen) return 0;
  state_ = State::kClosing;
  // Children may close at once and release us, so copy first.
  std::vector<Resource*> children = children_;
  for (Resource* c : children) c->OnParentClose();
  OnClose(false);
  if (holds_ > 0) {
    deferred_ = true;
    return kDeferred;
  }
  return RunTeardown();
}

void Resource::CloseOnFinalize() {
  if (state_ == State::kDone) return;
  // Nothing holds a collectable resource except at environment teardown,
  // when every close has already run; drop what is left.
  state_ = State::kClosing;
  OnClose(true);
  holds_ = 0;
  js_holds_ = 0;
  RunTeardown();
}

int Resource::RunTeardown() {
  state_ = State::kDone;
  int r = Teardown();
  // Children hold their parents, so only a finalizer at environment
  // teardown (which finalizes in any order) gets here with children left.
  for (Resource* c : children_) c->parents_.erase(std::remove(c->parents_.begin(), c->parents_.end(), this), c->parents_.end());
  children_.clear();
  std::vector<Resource*> parents;
  parents.swap(parents_);
  for (Resource* p : parents) {
    p->children_.erase(std::remove(p->children_.begin(), p->children_.end(), this), p->children_.end());
  }
  for (auto& ref : parent_refs_) ref.Reset();
  parent_refs_.clear();
  for (Resource* p : parents) p->Release();
  return r;
}

void Resource::Hold() {
  if (holds_++ == 0) KeepAlive(true);
}

void Resource::Release() {
  if (holds_ <= 0) return;
  if (--holds_ > 0) return;
  KeepAlive(false);
  if (state_ == State::kClosing && deferred_) {
    deferred_ = false;
    Deferred(RunTeardown());
  }
}

void Resource::HoldFromJs() {
  js_holds_++;
  Hold();
}

void Resource::ReleaseFromJs() {
  if (js_holds_ <= 0) return;
  js_holds_--;
  Release();
}

int Resource::Disown() {
  if (state_ != State::kOpen) return 0;
  if (holds_ > 0) return -EBUSY;
  state_ = State::kDone;
  std::vector<Resource*> parents;
  parents.swap(parents_);
  for (auto& ref : parent_refs_) ref.Reset();
  parent_refs_.clear();
  for (Resource* p : parents) {
    p->children_.erase(std::remove(p->children_.begin(), p->children_.end(), this), p->children_.end());
    p->Release();
  }
  return 0;
}

void Resource::AddParent(Resource* parent, Napi::Object parent_object) {
  parent->Hold();
  parent->children_.push_back(this);
  parents_.push_back(parent);
  parent_refs_.push_back(Napi::Persistent(parent_object));
}

}  // namespace p2pdma
