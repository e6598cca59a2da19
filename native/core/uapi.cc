// The kernel structs lib/ packs by hand, as the uapi headers lay them out:
// uapiLayouts() -> { struct: { size, fields: { name: offset } } }, compared
// with lib/core/uapi.ts by test/core/uapi.test.ts. A header that changes a layout (or
// a TypeScript offset typed wrong) fails that test, not a user's ioctl.
// vgem's two structs are not here: its header is in no Debian -dev package.
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/nvme_ioctl.h>
#include <linux/sync_file.h>
#include <linux/udmabuf.h>
#include <libdrm/drm.h>

#include <cstddef>

#include "modules.h"

namespace p2pdma {
namespace {

class Layouts {
 public:
  explicit Layouts(Napi::Env env) : env_(env), all_(Napi::Object::New(env)) {}
  Layouts& Struct(const char* name, size_t size) {
    cur_ = Napi::Object::New(env_);
    fields_ = Napi::Object::New(env_);
    cur_.Set("size", static_cast<double>(size));
    cur_.Set("fields", fields_);
    all_.Set(name, cur_);
    return *this;
  }
  Layouts& Field(const char* name, size_t offset) {
    fields_.Set(name, static_cast<double>(offset));
    return *this;
  }
  Napi::Object Result() const { return all_; }

 private:
  Napi::Env env_;
  Napi::Object all_;
  Napi::Object cur_;
  Napi::Object fields_;
};

#define STRUCT(s) .Struct(#s, sizeof(struct s))
#define FIELD(s, f) .Field(#f, offsetof(struct s, f))

Napi::Value UapiLayouts(const Napi::CallbackInfo& info) {
  Layouts l(info.Env());
  l STRUCT(dma_heap_allocation_data) FIELD(dma_heap_allocation_data, len) FIELD(dma_heap_allocation_data, fd)
      FIELD(dma_heap_allocation_data, fd_flags) FIELD(dma_heap_allocation_data, heap_flags);
  l STRUCT(udmabuf_create) FIELD(udmabuf_create, memfd) FIELD(udmabuf_create, flags) FIELD(udmabuf_create, offset)
      FIELD(udmabuf_create, size);
  l STRUCT(udmabuf_create_item) FIELD(udmabuf_create_item, memfd) FIELD(udmabuf_create_item, offset)
      FIELD(udmabuf_create_item, size);
  l STRUCT(udmabuf_create_list) FIELD(udmabuf_create_list, flags) FIELD(udmabuf_create_list, count)
      FIELD(udmabuf_create_list, list);
  l STRUCT(sync_merge_data) FIELD(sync_merge_data, name) FIELD(sync_merge_data, fd2) FIELD(sync_merge_data, fence)
      FIELD(sync_merge_data, flags);
  l STRUCT(sync_fence_info) FIELD(sync_fence_info, obj_name) FIELD(sync_fence_info, driver_name)
      FIELD(sync_fence_info, status) FIELD(sync_fence_info, flags) FIELD(sync_fence_info, timestamp_ns);
  l STRUCT(sync_file_info) FIELD(sync_file_info, name) FIELD(sync_file_info, status) FIELD(sync_file_info, flags)
      FIELD(sync_file_info, num_fences) FIELD(sync_file_info, sync_fence_info);
  l STRUCT(dma_buf_sync) FIELD(dma_buf_sync, flags);
  l STRUCT(dma_buf_export_sync_file) FIELD(dma_buf_export_sync_file, flags) FIELD(dma_buf_export_sync_file, fd);
  l STRUCT(dma_buf_import_sync_file) FIELD(dma_buf_import_sync_file, flags) FIELD(dma_buf_import_sync_file, fd);
  l STRUCT(nvme_passthru_cmd64) FIELD(nvme_passthru_cmd64, opcode) FIELD(nvme_passthru_cmd64, flags)
      FIELD(nvme_passthru_cmd64, nsid) FIELD(nvme_passthru_cmd64, cdw2) FIELD(nvme_passthru_cmd64, cdw3)
      FIELD(nvme_passthru_cmd64, metadata) FIELD(nvme_passthru_cmd64, addr) FIELD(nvme_passthru_cmd64, metadata_len)
      FIELD(nvme_passthru_cmd64, data_len) FIELD(nvme_passthru_cmd64, cdw10) FIELD(nvme_passthru_cmd64, cdw11)
      FIELD(nvme_passthru_cmd64, cdw12) FIELD(nvme_passthru_cmd64, cdw13) FIELD(nvme_passthru_cmd64, cdw14)
      FIELD(nvme_passthru_cmd64, cdw15) FIELD(nvme_passthru_cmd64, timeout_ms) FIELD(nvme_passthru_cmd64, result);
  l STRUCT(drm_version) FIELD(drm_version, version_major) FIELD(drm_version, version_minor)
      FIELD(drm_version, version_patchlevel) FIELD(drm_version, name_len) FIELD(drm_version, name)
      FIELD(drm_version, date_len) FIELD(drm_version, date) FIELD(drm_version, desc_len) FIELD(drm_version, desc);
  l STRUCT(drm_gem_close) FIELD(drm_gem_close, handle);
  l STRUCT(drm_prime_handle) FIELD(drm_prime_handle, handle) FIELD(drm_prime_handle, flags) FIELD(drm_prime_handle, fd);
  l STRUCT(drm_mode_create_dumb) FIELD(drm_mode_create_dumb, height) FIELD(drm_mode_create_dumb, width)
      FIELD(drm_mode_create_dumb, bpp) FIELD(drm_mode_create_dumb, flags) FIELD(drm_mode_create_dumb, handle)
      FIELD(drm_mode_create_dumb, pitch) FIELD(drm_mode_create_dumb, size);
  l STRUCT(drm_mode_map_dumb) FIELD(drm_mode_map_dumb, handle) FIELD(drm_mode_map_dumb, offset);
  l STRUCT(drm_get_cap) FIELD(drm_get_cap, capability) FIELD(drm_get_cap, value);
  l STRUCT(drm_set_client_cap) FIELD(drm_set_client_cap, capability) FIELD(drm_set_client_cap, value);
  l STRUCT(drm_syncobj_create) FIELD(drm_syncobj_create, handle) FIELD(drm_syncobj_create, flags);
  l STRUCT(drm_syncobj_destroy) FIELD(drm_syncobj_destroy, handle) FIELD(drm_syncobj_destroy, pad);
  l STRUCT(drm_syncobj_handle) FIELD(drm_syncobj_handle, handle) FIELD(drm_syncobj_handle, flags)
      FIELD(drm_syncobj_handle, fd) FIELD(drm_syncobj_handle, pad);
  l STRUCT(drm_syncobj_transfer) FIELD(drm_syncobj_transfer, src_handle) FIELD(drm_syncobj_transfer, dst_handle)
      FIELD(drm_syncobj_transfer, src_point) FIELD(drm_syncobj_transfer, dst_point) FIELD(drm_syncobj_transfer, flags)
      FIELD(drm_syncobj_transfer, pad);
  return l.Result();
}

#undef STRUCT
#undef FIELD

}  // namespace

void InitUapi(Napi::Env env, Napi::Object exports) {
  exports.Set("uapiLayouts", Napi::Function::New(env, UapiLayouts, "uapiLayouts"));
}

}  // namespace p2pdma
