{
  "targets": [
    {
      "target_name": "p2pdma",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/handle.cc",
        "native/resource.cc",
        "native/poll.cc",
        "native/eventfd.cc",
        "native/ioctl.cc",
        "native/mmap.cc",
        "native/memfd.cc",
        "native/capabilities.cc",
        "native/nvme.cc",
        "native/dmabuf.cc",
        "native/udmabuf.cc",
        "native/sync-file.cc",
        "native/drm.cc",
        "native/rdma_lib.cc",
        "native/rdma.cc",
        "native/rdma_cm.cc",
        "native/uapi.cc"
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
