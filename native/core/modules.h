// One Init per native module; native/core/addon.cc calls them all.
#pragma once

#include <napi.h>

namespace p2pdma {

void InitErrors(Napi::Env env, Napi::Object exports);
void InitHandle(Napi::Env env, Napi::Object exports);
void InitIoctl(Napi::Env env, Napi::Object exports);
void InitMmap(Napi::Env env, Napi::Object exports);
void InitMemfd(Napi::Env env, Napi::Object exports);
void InitCapabilities(Napi::Env env, Napi::Object exports);
void InitPoll(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);
void InitNvme(Napi::Env env, Napi::Object exports);
void InitNvmeCopy(Napi::Env env, Napi::Object exports);
void InitDmabuf(Napi::Env env, Napi::Object exports);
void InitUdmabuf(Napi::Env env, Napi::Object exports);
void InitSyncFile(Napi::Env env, Napi::Object exports);
void InitDrm(Napi::Env env, Napi::Object exports);
void InitDrmSyncobj(Napi::Env env, Napi::Object exports);
void InitRdma(Napi::Env env, Napi::Object exports);
void InitRdmaCm(Napi::Env env, Napi::Object exports);
void InitUapi(Napi::Env env, Napi::Object exports);

}  // namespace p2pdma
