{
  "targets": [
    {
      "target_name": "p2pdma",
      "sources": [
        "native/core/addon.cc",
        "native/core/errors.cc",
        "native/core/handle.cc",
        "native/core/resource.cc",
        "native/core/poll.cc",
        "native/core/eventfd.cc",
        "native/core/ioctl.cc",
        "native/core/mmap.cc",
        "native/core/memfd.cc",
        "native/core/capabilities.cc",
        "native/pci/nvme.cc",
        "native/pci/nvme-copy.cc",
        "native/dmabuf/dmabuf.cc",
        "native/dmabuf/udmabuf.cc",
        "native/dmabuf/sync-file.cc",
        "native/dmabuf/drm.cc",
        "native/dmabuf/drm-syncobj.cc",
        "native/rdma/rdma_lib.cc",
        "native/rdma/rdma.cc",
        "native/rdma/rdma_cm.cc",
        "native/core/uapi.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "_GNU_SOURCE"
      ],
      "cflags_cc": [ "-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter" ],
      "libraries": [ "-ldl" ]
    }
  ]
}
