// libibverbs and librdmacm, loaded at run time (dlopen + dlsym), never
// linked: the addon loads, and everything but RDMA works, on a machine
// without rdma-core. The headers are used for types only; the inline verbs
// (ibv_post_send, ibv_post_recv, ibv_poll_cq, ibv_req_notify_cq) call
// through the context's ops table and need no symbol.
//
// Members are not named like the library functions: verbs.h defines
// ibv_reg_mr and ibv_query_port as function-like macros.
#pragma once

#include <napi.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <string>

namespace p2pdma {

struct Verbs {
  ibv_device** (*get_device_list)(int*);
  void (*free_device_list)(ibv_device**);
  const char* (*get_device_name)(ibv_device*);
  __be64 (*get_device_guid)(ibv_device*);
  ibv_context* (*open_device)(ibv_device*);
  int (*close_device)(ibv_context*);
  int (*query_device)(ibv_context*, ibv_device_attr*);
  int (*query_port)(ibv_context*, uint8_t, _compat_ibv_port_attr*);
  int (*query_gid)(ibv_context*, uint8_t, int, ibv_gid*);
  ibv_pd* (*alloc_pd)(ibv_context*);
  int (*dealloc_pd)(ibv_pd*);
  ibv_mr* (*reg_mr)(ibv_pd*, void*, size_t, int);
  int (*dereg_mr)(ibv_mr*);
  // IBVERBS_1.12: null when the library predates it.
  ibv_mr* (*reg_dmabuf_mr)(ibv_pd*, uint64_t, size_t, uint64_t, int, int);
  // IBVERBS_PRIVATE (the command providers build reg_dmabuf_mr on; its last
  // argument, a driver command buffer, came later: passing null suits both).
  int (*cmd_reg_dmabuf_mr)(ibv_pd*, uint64_t, size_t, uint64_t, int, int, void*, void*);
  // IBVERBS_1.11 (the function behind ibv_query_gid_table): null when older.
  ssize_t (*query_gid_table)(ibv_context*, ibv_gid_entry*, size_t, uint32_t, size_t);
  ibv_comp_channel* (*create_comp_channel)(ibv_context*);
  int (*destroy_comp_channel)(ibv_comp_channel*);
  ibv_cq* (*create_cq)(ibv_context*, int, void*, ibv_comp_channel*, int);
  int (*destroy_cq)(ibv_cq*);
  int (*get_cq_event)(ibv_comp_channel*, ibv_cq**, void**);
  void (*ack_cq_events)(ibv_cq*, unsigned int);
  ibv_qp* (*create_qp)(ibv_pd*, ibv_qp_init_attr*);
  int (*destroy_qp)(ibv_qp*);
  int (*modify_qp)(ibv_qp*, ibv_qp_attr*, int);
  int (*query_qp)(ibv_qp*, ibv_qp_attr*, int, ibv_qp_init_attr*);
  ibv_srq* (*create_srq)(ibv_pd*, ibv_srq_init_attr*);
  int (*modify_srq)(ibv_srq*, ibv_srq_attr*, int);
  int (*destroy_srq)(ibv_srq*);
  ibv_ah* (*create_ah)(ibv_pd*, ibv_ah_attr*);
  ibv_ah* (*create_ah_from_wc)(ibv_pd*, ibv_wc*, ibv_grh*, uint8_t);
  int (*attach_mcast)(ibv_qp*, const ibv_gid*, uint16_t);
  int (*detach_mcast)(ibv_qp*, const ibv_gid*, uint16_t);
  int (*destroy_ah)(ibv_ah*);
  int (*get_async_event)(ibv_context*, ibv_async_event*);
  void (*ack_async_event)(ibv_async_event*);
  const char* (*event_type_str)(ibv_event_type);
  const char* (*wc_status_str)(ibv_wc_status);
};

struct RdmaCm {
  rdma_event_channel* (*create_event_channel)();
  void (*destroy_event_channel)(rdma_event_channel*);
  int (*create_id)(rdma_event_channel*, rdma_cm_id**, void*, rdma_port_space);
  int (*destroy_id)(rdma_cm_id*);
  int (*bind_addr)(rdma_cm_id*, sockaddr*);
  int (*listen)(rdma_cm_id*, int);
  int (*resolve_addr)(rdma_cm_id*, sockaddr*, sockaddr*, int);
  int (*resolve_route)(rdma_cm_id*, int);
  int (*connect)(rdma_cm_id*, rdma_conn_param*);
  int (*accept)(rdma_cm_id*, rdma_conn_param*);
  int (*reject)(rdma_cm_id*, const void*, uint8_t);
  int (*establish)(rdma_cm_id*);
  int (*disconnect)(rdma_cm_id*);
  int (*get_cm_event)(rdma_event_channel*, rdma_cm_event**);
  int (*ack_cm_event)(rdma_cm_event*);
  int (*init_qp_attr)(rdma_cm_id*, ibv_qp_attr*, int*);
  const char* (*event_str)(rdma_cm_event_type);
  int (*getaddrinfo)(const char*, const char*, const rdma_addrinfo*, rdma_addrinfo**);
  void (*freeaddrinfo)(rdma_addrinfo*);
  int (*join_multicast)(rdma_cm_id*, sockaddr*, void*);
  int (*leave_multicast)(rdma_cm_id*, sockaddr*);
};

// The loaded table, or nullptr with `library`/`symbol`/`error` (dlerror())
// set to what is missing. Loaded once per process; never unloaded.
const Verbs* LoadVerbs(std::string* library, std::string* symbol, std::string* error);
const RdmaCm* LoadRdmaCm(std::string* library, std::string* symbol, std::string* error);

// The table, or throws the error lib/rdma/ turns into ERR_P2PDMA_RDMA_LIBRARY:
// Error with `library`, `symbol` (when a symbol is missing) and `dlerror`.
const Verbs& VerbsOrThrow(Napi::Env env);
const RdmaCm& RdmaCmOrThrow(Napi::Env env);

}  // namespace p2pdma
