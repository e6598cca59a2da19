// Library probes behind lib/core/capabilities.ts. Nothing here links the probed
// libraries: they are dlopen()ed with RTLD_LAZY and closed again.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <link.h>

#include "errors.h"
#include "modules.h"

namespace p2pdma {
namespace {

// dlprobe(soname) -> { ok: true, path } | { ok: false, error }
Napi::Value DlProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "soname");
  std::string name = info[0].As<Napi::String>();
  Napi::Object r = Napi::Object::New(env);
  dlerror();
  void* h = ::dlopen(name.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    r.Set("ok", false);
    r.Set("error", e != nullptr ? e : "dlopen failed");
    return r;
  }
  r.Set("ok", true);
  struct link_map* lm = nullptr;
  if (::dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != nullptr && lm->l_name != nullptr)
    r.Set("path", lm->l_name);
  ::dlclose(h);
  return r;
}

}  // namespace

void InitCapabilities(Napi::Env env, Napi::Object exports) {
  exports.Set("dlprobe", Napi::Function::New(env, DlProbe, "dlprobe"));
}

}  // namespace p2pdma
