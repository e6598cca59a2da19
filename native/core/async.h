// Promise-returning work on the libuv thread pool.
//
// A PromiseWorker runs one blocking syscall off the JS thread. It keeps every
// object it was given (the handle, the argument buffer, the Mapping) alive
// until it settles, and rejects with the same tiny SysError that sync calls
// throw, so lib/core/errors.ts builds one error shape for both.
#pragma once

#include <napi.h>

#include <vector>

#include "errors.h"

namespace p2pdma {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* resource, const char* syscall, int fd)
      : Napi::AsyncWorker(env, resource),
        deferred_(Napi::Promise::Deferred::New(env)),
        syscall_(syscall),
        fd_(fd) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  // Holds a strong reference to `v` (if it is an object) until settled.
  void Keep(Napi::Value v) {
    if (v.IsObject()) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  // Queues the worker and returns its promise.
  Napi::Promise Start() {
    Napi::Promise p = Promise();
    Queue();
    return p;
  }

 protected:
  // Runs on the thread pool. Set err_ to a positive errno on failure.
  virtual void Run() = 0;
  // Runs on the JS thread after a successful Run().
  virtual Napi::Value Result(Napi::Env env) = 0;
  // Runs on the JS thread before the promise settles, success or not.
  virtual void Settled(Napi::Env) {}

  int err_ = 0;

 private:
  void Execute() override { Run(); }
  void OnOK() override {
    Napi::Env env = Env();
    Settled(env);
    if (err_ != 0)
      deferred_.Reject(SysError(env, err_, syscall_, fd_).Value());
    else
      deferred_.Resolve(Result(env));
  }
  void OnError(const Napi::Error& e) override {
    Settled(Env());
    deferred_.Reject(e.Value());
  }

  Napi::Promise::Deferred deferred_;
  const char* syscall_;
  int fd_;
  std::vector<Napi::ObjectReference> keep_;
};

}  // namespace p2pdma
