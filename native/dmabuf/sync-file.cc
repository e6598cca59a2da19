// SYNC_IOC_FILE_INFO behind lib/dmabuf/sync-file.ts. The fence array is a second
// buffer the kernel writes through a pointer in the first, so the two calls
// (count, then fill) live here; lib/ names and words everything.
#include <errno.h>
#include <linux/sync_file.h>
#include <string.h>
#include <sys/ioctl.h>

#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/modules.h"

namespace p2pdma {
namespace {

std::string Str(const char* s, size_t max) { return std::string(s, strnlen(s, max)); }

// syncFileInfo(fd) -> { name, status, flags, fences: [{ obj, driver, status,
// flags, timestampNs: bigint }] }; throws SysError('ioctl').
Napi::Value SyncFileInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  struct sync_file_info head;
  std::vector<struct sync_fence_info> fences;
  // The count can change between the two calls (a merge cannot, but a
  // fence array could only shrink): retry until it is stable.
  for (int tries = 0;; tries++) {
    memset(&head, 0, sizeof head);
    head.num_fences = static_cast<__u32>(fences.size());
    head.sync_fence_info = reinterpret_cast<uintptr_t>(fences.data());
    if (::ioctl(fd, SYNC_IOC_FILE_INFO, &head) == -1) ThrowSys(env, errno, "ioctl", fd);
    if (head.num_fences <= fences.size() && (head.num_fences > 0 || fences.empty())) break;
    if (tries > 3) ThrowSys(env, EAGAIN, "ioctl", fd);
    fences.assign(head.num_fences, {});
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", Str(head.name, sizeof head.name));
  out.Set("status", head.status);
  out.Set("flags", head.flags);
  Napi::Array list = Napi::Array::New(env, head.num_fences);
  for (uint32_t i = 0; i < head.num_fences && i < fences.size(); i++) {
    const auto& f = fences[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("obj", Str(f.obj_name, sizeof f.obj_name));
    o.Set("driver", Str(f.driver_name, sizeof f.driver_name));
    o.Set("status", f.status);
    o.Set("flags", f.flags);
    o.Set("timestampNs", Napi::BigInt::New(env, static_cast<uint64_t>(f.timestamp_ns)));
    list.Set(i, o);
  }
  out.Set("fences", list);
  return out;
}

}  // namespace

void InitSyncFile(Napi::Env env, Napi::Object exports) {
  exports.Set("syncFileInfo", Napi::Function::New(env, SyncFileInfo, "syncFileInfo"));
}

}  // namespace p2pdma
