// dlopen/dlsym of libibverbs and librdmacm (see rdma_lib.h).
#include "rdma_lib.h"

#include <dlfcn.h>

#include <stdlib.h>

#include <mutex>

namespace p2pdma {
namespace {

// Loads every symbol of one table; remembers the first failure.
class Loader {
 public:
  // `env` names a variable that overrides the soname (tests load a
  // library that lacks a symbol, or none at all).
  Loader(const char* soname, const char* env) : soname_(soname) {
    const char* o = ::getenv(env);
    if (o != nullptr && *o != '\0') soname_ = o;
    dlerror();
    h_ = ::dlopen(soname_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h_ == nullptr) Fail("", dlerror());
  }
  template <typename F>
  void Sym(F& f, const char* name, bool optional = false) {
    f = nullptr;
    if (h_ == nullptr) return;
    dlerror();
    void* p = ::dlsym(h_, name);
    if (p == nullptr && !optional && ok_) Fail(name, dlerror());
    f = reinterpret_cast<F>(p);
  }
  bool ok() const { return ok_; }
  void Report(std::string* library, std::string* symbol, std::string* error) const {
    *library = soname_;
    *symbol = symbol_;
    *error = error_;
  }

 private:
  void Fail(const char* symbol, const char* err) {
    ok_ = false;
    symbol_ = symbol;
    error_ = err != nullptr ? err : "not found";
  }
  std::string soname_;
  void* h_ = nullptr;
  bool ok_ = true;
  std::string symbol_, error_;
};

Verbs g_verbs;
RdmaCm g_cm;
std::string g_verbs_err[3], g_cm_err[3];
bool g_verbs_ok = false, g_cm_ok = false;
std::once_flag g_verbs_once, g_cm_once;

void DoLoadVerbs() {
  Loader l("libibverbs.so.1", "P2PDMA_LIBIBVERBS");
  Verbs& v = g_verbs;
  l.Sym(v.get_device_list, "ibv_get_device_list");
  l.Sym(v.free_device_list, "ibv_free_device_list");
  l.Sym(v.get_device_name, "ibv_get_device_name");
  l.Sym(v.get_device_guid, "ibv_get_device_guid");
  l.Sym(v.open_device, "ibv_open_device");
  l.Sym(v.close_device, "ibv_close_device");
  l.Sym(v.query_device, "ibv_query_device");
  l.Sym(v.query_port, "ibv_query_port");
  l.Sym(v.query_gid, "ibv_query_gid");
  l.Sym(v.alloc_pd, "ibv_alloc_pd");
  l.Sym(v.dealloc_pd, "ibv_dealloc_pd");
  l.Sym(v.reg_mr, "ibv_reg_mr");
  l.Sym(v.dereg_mr, "ibv_dereg_mr");
  l.Sym(v.reg_dmabuf_mr, "ibv_reg_dmabuf_mr", true);
  l.Sym(v.cmd_reg_dmabuf_mr, "ibv_cmd_reg_dmabuf_mr", true);
  l.Sym(v.query_gid_table, "_ibv_query_gid_table", true);
  l.Sym(v.create_comp_channel, "ibv_create_comp_channel");
  l.Sym(v.destroy_comp_channel, "ibv_destroy_comp_channel");
  l.Sym(v.create_cq, "ibv_create_cq");
  l.Sym(v.destroy_cq, "ibv_destroy_cq");
  l.Sym(v.get_cq_event, "ibv_get_cq_event");
  l.Sym(v.ack_cq_events, "ibv_ack_cq_events");
  l.Sym(v.create_qp, "ibv_create_qp");
  l.Sym(v.destroy_qp, "ibv_destroy_qp");
  l.Sym(v.modify_qp, "ibv_modify_qp");
  l.Sym(v.query_qp, "ibv_query_qp");
  l.Sym(v.create_srq, "ibv_create_srq");
  l.Sym(v.modify_srq, "ibv_modify_srq");
  l.Sym(v.destroy_srq, "ibv_destroy_srq");
  l.Sym(v.create_ah, "ibv_create_ah");
  l.Sym(v.create_ah_from_wc, "ibv_create_ah_from_wc");
  l.Sym(v.attach_mcast, "ibv_attach_mcast");
  l.Sym(v.detach_mcast, "ibv_detach_mcast");
  l.Sym(v.destroy_ah, "ibv_destroy_ah");
  l.Sym(v.get_async_event, "ibv_get_async_event");
  l.Sym(v.ack_async_event, "ibv_ack_async_event");
  l.Sym(v.event_type_str, "ibv_event_type_str");
  l.Sym(v.wc_status_str, "ibv_wc_status_str");
  g_verbs_ok = l.ok();
  l.Report(&g_verbs_err[0], &g_verbs_err[1], &g_verbs_err[2]);
}

void DoLoadCm() {
  Loader l("librdmacm.so.1", "P2PDMA_LIBRDMACM");
  RdmaCm& c = g_cm;
  l.Sym(c.create_event_channel, "rdma_create_event_channel");
  l.Sym(c.destroy_event_channel, "rdma_destroy_event_channel");
  l.Sym(c.create_id, "rdma_create_id");
  l.Sym(c.destroy_id, "rdma_destroy_id");
  l.Sym(c.bind_addr, "rdma_bind_addr");
  l.Sym(c.listen, "rdma_listen");
  l.Sym(c.resolve_addr, "rdma_resolve_addr");
  l.Sym(c.resolve_route, "rdma_resolve_route");
  l.Sym(c.connect, "rdma_connect");
  l.Sym(c.accept, "rdma_accept");
  l.Sym(c.reject, "rdma_reject");
  l.Sym(c.establish, "rdma_establish");
  l.Sym(c.disconnect, "rdma_disconnect");
  l.Sym(c.get_cm_event, "rdma_get_cm_event");
  l.Sym(c.ack_cm_event, "rdma_ack_cm_event");
  l.Sym(c.init_qp_attr, "rdma_init_qp_attr");
  l.Sym(c.event_str, "rdma_event_str");
  l.Sym(c.getaddrinfo, "rdma_getaddrinfo");
  l.Sym(c.freeaddrinfo, "rdma_freeaddrinfo");
  l.Sym(c.join_multicast, "rdma_join_multicast");
  l.Sym(c.leave_multicast, "rdma_leave_multicast");
  g_cm_ok = l.ok();
  l.Report(&g_cm_err[0], &g_cm_err[1], &g_cm_err[2]);
}

[[noreturn]] void ThrowMissing(Napi::Env env, const std::string* e) {
  Napi::Error err = Napi::Error::New(env, "rdma library");
  err.Set("library", e[0]);
  if (!e[1].empty()) err.Set("symbol", e[1]);
  err.Set("dlerror", e[2]);
  throw err;
}

}  // namespace

const Verbs* LoadVerbs(std::string* library, std::string* symbol, std::string* error) {
  std::call_once(g_verbs_once, DoLoadVerbs);
  if (g_verbs_ok) return &g_verbs;
  *library = g_verbs_err[0];
  *symbol = g_verbs_err[1];
  *error = g_verbs_err[2];
  return nullptr;
}

const RdmaCm* LoadRdmaCm(std::string* library, std::string* symbol, std::string* error) {
  std::call_once(g_cm_once, DoLoadCm);
  if (g_cm_ok) return &g_cm;
  *library = g_cm_err[0];
  *symbol = g_cm_err[1];
  *error = g_cm_err[2];
  return nullptr;
}

const Verbs& VerbsOrThrow(Napi::Env env) {
  std::call_once(g_verbs_once, DoLoadVerbs);
  if (!g_verbs_ok) ThrowMissing(env, g_verbs_err);
  return g_verbs;
}

const RdmaCm& RdmaCmOrThrow(Napi::Env env) {
  std::call_once(g_cm_once, DoLoadCm);
  if (!g_cm_ok) ThrowMissing(env, g_cm_err);
  return g_cm;
}

}  // namespace p2pdma
