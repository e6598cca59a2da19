// Module init: every native module adds its functions to `exports`.
#include <napi.h>

#include "modules.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // First: it sets up the per-environment state the other modules use.
  p2pdma::InitHandle(env, exports);
  p2pdma::InitErrors(env, exports);
  p2pdma::InitIoctl(env, exports);
  p2pdma::InitMmap(env, exports);
  p2pdma::InitMemfd(env, exports);
  p2pdma::InitCapabilities(env, exports);
  p2pdma::InitPoll(env, exports);
  p2pdma::InitEventfd(env, exports);
  p2pdma::InitNvme(env, exports);
  p2pdma::InitNvmeCopy(env, exports);
  p2pdma::InitDmabuf(env, exports);
  p2pdma::InitUdmabuf(env, exports);
  p2pdma::InitSyncFile(env, exports);
  p2pdma::InitDrm(env, exports);
  p2pdma::InitDrmSyncobj(env, exports);
  p2pdma::InitRdma(env, exports);
  p2pdma::InitRdmaCm(env, exports);
  p2pdma::InitUapi(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(p2pdma, Init)
