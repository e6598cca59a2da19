// Fd: the resource that owns one file descriptor.
#pragma once

#include <napi.h>

#include "resource.h"

namespace p2pdma {

class FdWrap : public ResourceWrap<FdWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7064'6d61'6664'0001ULL, 0x9c1e'4b7a'53d2'0e61ULL};

  static Napi::Function Define(Napi::Env env);
  // Wraps an fd a native call just created (always O_CLOEXEC), so JS never
  // holds a bare number it could leak. Closes `fd` if that fails.
  static Napi::Object New(Napi::Env env, int fd);

  explicit FdWrap(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }

  int fd() const { return fd_; }

 protected:
  int Teardown() override;

 private:
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);

  int fd_ = -1;
};

}  // namespace p2pdma
