// DRM_IOCTL_VERSION behind lib/dmabuf/drm.ts: the kernel copies three strings
// through pointers in the struct, so both calls (lengths, then strings)
// live here. Every other DRM ioctl is a flat struct done from lib/dmabuf/drm.ts.
#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include <string>

#include "../core/errors.h"
#include "../core/modules.h"

namespace p2pdma {
namespace {

// include/uapi/drm/drm.h (no libdrm headers needed).
struct drm_version {
  int version_major;
  int version_minor;
  int version_patchlevel;
  size_t name_len;
  char* name;
  size_t date_len;
  char* date;
  size_t desc_len;
  char* desc;
};
const unsigned long kDrmIoctlVersion = _IOWR('d', 0x00, struct drm_version);

// drmVersion(fd) -> { major, minor, patchlevel, name, date, desc }; throws
// SysError('ioctl').
Napi::Value DrmVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  struct drm_version v = {};
  if (::ioctl(fd, kDrmIoctlVersion, &v) == -1) ThrowSys(env, errno, "ioctl", fd);
  // Driver strings are short; cap them so a bogus length cannot allocate much.
  const size_t cap = 4096;
  std::string name(v.name_len < cap ? v.name_len : cap, '\0');
  std::string date(v.date_len < cap ? v.date_len : cap, '\0');
  std::string desc(v.desc_len < cap ? v.desc_len : cap, '\0');
  v.name_len = name.size();
  v.name = name.data();
  v.date_len = date.size();
  v.date = date.data();
  v.desc_len = desc.size();
  v.desc = desc.data();
  if (::ioctl(fd, kDrmIoctlVersion, &v) == -1) ThrowSys(env, errno, "ioctl", fd);
  Napi::Object out = Napi::Object::New(env);
  out.Set("major", v.version_major);
  out.Set("minor", v.version_minor);
  out.Set("patchlevel", v.version_patchlevel);
  out.Set("name", name.substr(0, v.name_len < name.size() ? v.name_len : name.size()));
  out.Set("date", date.substr(0, v.date_len < date.size() ? v.date_len : date.size()));
  out.Set("desc", desc.substr(0, v.desc_len < desc.size() ? v.desc_len : desc.size()));
  return out;
}

}  // namespace

void InitDrm(Napi::Env env, Napi::Object exports) {
  exports.Set("drmVersion", Napi::Function::New(env, DrmVersion, "drmVersion"));
}

}  // namespace p2pdma
