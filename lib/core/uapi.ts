/**
 * The kernel structs this package packs and parses by hand in TypeScript,
 * laid out as on x86-64 Linux: each struct's size and the byte offset of
 * each field the code touches. Every module takes its offsets from here, and
 * test/core/uapi.test.ts compares this table with native/core/uapi.cc's, which the
 * compiler takes from the kernel's uapi headers (sizeof/offsetof), so a
 * mistyped offset fails a test instead of corrupting an ioctl argument.
 * vgem's structs (vgem_drm.h, in no Debian -dev package) are checked by the
 * guest tests that use them.
 */
export const uapi = Object.freeze({
  dma_heap_allocation_data: { size: 24, fields: { len: 0, fd: 8, fd_flags: 12, heap_flags: 16 } },
  udmabuf_create: { size: 24, fields: { memfd: 0, flags: 4, offset: 8, size: 16 } },
  udmabuf_create_item: { size: 24, fields: { memfd: 0, offset: 8, size: 16 } },
  udmabuf_create_list: { size: 8, fields: { flags: 0, count: 4, list: 8 } },
  sync_merge_data: { size: 48, fields: { name: 0, fd2: 32, fence: 36, flags: 40 } },
  sync_fence_info: { size: 80, fields: { obj_name: 0, driver_name: 32, status: 64, flags: 68, timestamp_ns: 72 } },
  sync_file_info: { size: 56, fields: { name: 0, status: 32, flags: 36, num_fences: 40, sync_fence_info: 48 } },
  dma_buf_sync: { size: 8, fields: { flags: 0 } },
  dma_buf_export_sync_file: { size: 8, fields: { flags: 0, fd: 4 } },
  dma_buf_import_sync_file: { size: 8, fields: { flags: 0, fd: 4 } },
  nvme_passthru_cmd64: {
    size: 80,
    fields: {
      opcode: 0, flags: 1, nsid: 4, cdw2: 8, cdw3: 12, metadata: 16, addr: 24, metadata_len: 32, data_len: 36,
      cdw10: 40, cdw11: 44, cdw12: 48, cdw13: 52, cdw14: 56, cdw15: 60, timeout_ms: 64, result: 72,
    },
  },
  drm_version: {
    size: 64,
    fields: { version_major: 0, version_minor: 4, version_patchlevel: 8, name_len: 16, name: 24, date_len: 32, date: 40, desc_len: 48, desc: 56 },
  },
  drm_gem_close: { size: 8, fields: { handle: 0 } },
  drm_prime_handle: { size: 12, fields: { handle: 0, flags: 4, fd: 8 } },
  drm_mode_create_dumb: { size: 32, fields: { height: 0, width: 4, bpp: 8, flags: 12, handle: 16, pitch: 20, size: 24 } },
  drm_mode_map_dumb: { size: 16, fields: { handle: 0, offset: 8 } },
  drm_get_cap: { size: 16, fields: { capability: 0, value: 8 } },
  drm_set_client_cap: { size: 16, fields: { capability: 0, value: 8 } },
  drm_syncobj_create: { size: 8, fields: { handle: 0, flags: 4 } },
  drm_syncobj_destroy: { size: 8, fields: { handle: 0, pad: 4 } },
  drm_syncobj_handle: { size: 16, fields: { handle: 0, flags: 4, fd: 8, pad: 12 } },
  drm_syncobj_transfer: { size: 32, fields: { src_handle: 0, dst_handle: 4, src_point: 8, dst_point: 16, flags: 24, pad: 28 } },
} as const);

export type UapiStruct = keyof typeof uapi;
