// RDMA verbs behind lib/rdma/ (see rdma.h). Thin: each call validates
// enough not to crash, calls the verb and returns its result or an errno;
// names, defaults and messages live in TypeScript.
#include "rdma.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../core/async.h"
#include "../core/errors.h"
#include "../core/modules.h"
#include "../core/views.h"

namespace p2pdma {
namespace {

// Parent of a child resource, checked open; throws EBADF (closed) or a type
// error (not a T).
template <typename T>
T* OpenParent(const Napi::CallbackInfo& info, size_t i, const char* what) {
  T* p = UnwrapResource<T>(info[i]);
  if (p == nullptr) ThrowType(info.Env(), what);
  if (!p->IsOpen()) ThrowSys(info.Env(), EBADF, what);
  return p;
}

uint32_t U32Of(Napi::Object o, const char* key, bool* present) {
  Napi::Value v = o.Get(key);
  *present = !v.IsUndefined();
  if (!*present) return 0;
  if (!v.IsNumber()) ThrowType(o.Env(), key);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(d, 0, 4294967295.0)) ThrowRange(o.Env(), key);
  return static_cast<uint32_t>(d);
}

// The bytes of an ArrayBuffer or view: data pointer and length.
bool BytesOf(Napi::Value v, uint8_t** data, size_t* len) {
  napi_env env = v.Env();
  bool is = false;
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    void* d;
    napi_get_arraybuffer_info(env, v, &d, len);
    *data = static_cast<uint8_t*>(d);
    return true;
  }
  void* d = nullptr;
  if (!ViewBytes(env, v, &d, len)) return false;
  *data = static_cast<uint8_t*>(d);
  return true;
}

Napi::Value U64(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

}  // namespace

// ---------------------------------------------------------------------------
// Context

// new Context(name): ibv_open_device on the device called `name`. Throws
// SysError ENODEV when there is none, or open's errno.
RdmaContext::RdmaContext(const Napi::CallbackInfo& info) : ResourceWrap<RdmaContext>(info) {
  Napi::Env env = info.Env();
  v_ = &VerbsOrThrow(env);
  if (!info[0].IsString()) ThrowType(env, "name");
  std::string name = info[0].As<Napi::String>();
  int n = 0;
  ibv_device** list = v_->get_device_list(&n);
  if (list == nullptr) ThrowSys(env, errno, "ibv_get_device_list");
  ibv_device* dev = nullptr;
  for (int i = 0; i < n; i++)
    if (name == v_->get_device_name(list[i])) dev = list[i];
  if (dev == nullptr) {
    v_->free_device_list(list);
    ThrowSys(env, ENODEV, "ibv_open_device");
  }
  errno = 0;
  ctx_ = v_->open_device(dev);
  int err = errno != 0 ? errno : ENODEV;
  v_->free_device_list(list);
  if (ctx_ == nullptr) ThrowSys(env, err, "ibv_open_device");
  // Async events are read on the event loop (lib/rdma/device.ts events()):
  // a read must never block it.
  int fl = ::fcntl(ctx_->async_fd, F_GETFL);
  if (fl == -1 || ::fcntl(ctx_->async_fd, F_SETFL, fl | O_NONBLOCK) == -1) {
    int e = errno;
    v_->close_device(ctx_);
    ctx_ = nullptr;
    ThrowSys(env, e, "fcntl");
  }
  async_fd_ = ctx_->async_fd;
}

Napi::Function RdmaContext::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&RdmaContext::Query>("query"));
  props.push_back(InstanceMethod<&RdmaContext::QueryEx>("queryEx"));
  props.push_back(InstanceMethod<&RdmaContext::QueryPort>("queryPort"));
  props.push_back(InstanceMethod<&RdmaContext::QueryGid>("queryGid"));
  props.push_back(InstanceMethod<&RdmaContext::QueryGidTable>("queryGidTable"));
  props.push_back(InstanceMethod<&RdmaContext::GetAsyncEvent>("getAsyncEvent"));
  props.push_back(InstanceAccessor<&RdmaContext::GetAsyncFd>("asyncFd"));
  return DefineClass(env, "RdmaContext", props);
}

int RdmaContext::Teardown() {
  int r = v_->close_device(ctx_);
  return r == 0 ? 0 : -(r > 0 ? r : errno);
}

Napi::Value RdmaContext::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_query_device");
  ibv_device_attr a;
  int r = v_->query_device(ctx_, &a);
  if (r != 0) ThrowSys(env, r > 0 ? r : errno, "ibv_query_device");
  Napi::Object o = Napi::Object::New(env);
  o.Set("fwVer", a.fw_ver);
  o.Set("nodeGuid", U64(env, be64toh(a.node_guid)));
  o.Set("sysImageGuid", U64(env, be64toh(a.sys_image_guid)));
  o.Set("maxMrSize", U64(env, a.max_mr_size));
  o.Set("pageSizeCap", U64(env, a.page_size_cap));
  o.Set("vendorId", a.vendor_id);
  o.Set("vendorPartId", a.vendor_part_id);
  o.Set("hwVer", a.hw_ver);
  o.Set("maxQp", a.max_qp);
  o.Set("maxQpWr", a.max_qp_wr);
  o.Set("maxSge", a.max_sge);
  o.Set("maxCq", a.max_cq);
  o.Set("maxCqe", a.max_cqe);
  o.Set("maxMr", a.max_mr);
  o.Set("maxPd", a.max_pd);
  o.Set("maxQpRdAtom", a.max_qp_rd_atom);
  o.Set("maxQpInitRdAtom", a.max_qp_init_rd_atom);
  o.Set("physPortCnt", a.phys_port_cnt);
  return o;
}

// queryEx() -> what ibv_query_device_ex adds to ibv_query_device. Not the
// inline ibv_query_device_ex itself: its fallback for a provider without the
// op calls ibv_query_device, a symbol we do not link (rdma_lib.h); the
// provider's op is reached the way the inline reaches it, and a provider
// without it (or one that answers EOPNOTSUPP/ENOSYS) is EOPNOTSUPP here,
// not zeroed attributes.
Napi::Value RdmaContext::QueryEx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_query_device_ex");
  verbs_context* vctx = verbs_get_ctx_op(ctx_, query_device_ex);
  if (vctx == nullptr) ThrowSys(env, EOPNOTSUPP, "ibv_query_device_ex");
  ibv_device_attr_ex a = {};
  int r = vctx->query_device_ex(ctx_, nullptr, &a, sizeof(a));
  if (r == ENOSYS) r = EOPNOTSUPP;
  if (r != 0) ThrowSys(env, r > 0 ? r : errno, "ibv_query_device_ex");
  Napi::Object o = Napi::Object::New(env);
  o.Set("compMask", a.comp_mask);
  Napi::Object odp = Napi::Object::New(env);
  odp.Set("generalCaps", U64(env, a.odp_caps.general_caps));
  odp.Set("rcCaps", a.odp_caps.per_transport_caps.rc_odp_caps);
  odp.Set("ucCaps", a.odp_caps.per_transport_caps.uc_odp_caps);
  odp.Set("udCaps", a.odp_caps.per_transport_caps.ud_odp_caps);
  odp.Set("xrcCaps", a.xrc_odp_caps);
  o.Set("odpCaps", odp);
  o.Set("completionTimestampMask", U64(env, a.completion_timestamp_mask));
  o.Set("hcaCoreClock", U64(env, a.hca_core_clock));
  o.Set("deviceCapFlagsEx", U64(env, a.device_cap_flags_ex));
  Napi::Object tso = Napi::Object::New(env);
  tso.Set("maxTso", a.tso_caps.max_tso);
  tso.Set("supportedQpts", a.tso_caps.supported_qpts);
  o.Set("tsoCaps", tso);
  Napi::Object rss = Napi::Object::New(env);
  rss.Set("supportedQpts", a.rss_caps.supported_qpts);
  rss.Set("maxRwqIndirectionTables", a.rss_caps.max_rwq_indirection_tables);
  rss.Set("maxRwqIndirectionTableSize", a.rss_caps.max_rwq_indirection_table_size);
  rss.Set("rxHashFieldsMask", U64(env, a.rss_caps.rx_hash_fields_mask));
  rss.Set("rxHashFunction", a.rss_caps.rx_hash_function);
  o.Set("rssCaps", rss);
  o.Set("maxWqTypeRq", a.max_wq_type_rq);
  Napi::Object pacing = Napi::Object::New(env);
  pacing.Set("qpRateLimitMin", a.packet_pacing_caps.qp_rate_limit_min);
  pacing.Set("qpRateLimitMax", a.packet_pacing_caps.qp_rate_limit_max);
  pacing.Set("supportedQpts", a.packet_pacing_caps.supported_qpts);
  o.Set("packetPacingCaps", pacing);
  o.Set("rawPacketCaps", a.raw_packet_caps);
  Napi::Object tm = Napi::Object::New(env);
  tm.Set("maxRndvHdrSize", a.tm_caps.max_rndv_hdr_size);
  tm.Set("maxNumTags", a.tm_caps.max_num_tags);
  tm.Set("flags", a.tm_caps.flags);
  tm.Set("maxOps", a.tm_caps.max_ops);
  tm.Set("maxSge", a.tm_caps.max_sge);
  o.Set("tmCaps", tm);
  Napi::Object cqMod = Napi::Object::New(env);
  cqMod.Set("maxCqCount", a.cq_mod_caps.max_cq_count);
  cqMod.Set("maxCqPeriod", a.cq_mod_caps.max_cq_period);
  o.Set("cqModCaps", cqMod);
  o.Set("maxDmSize", U64(env, a.max_dm_size));
  Napi::Object pciAtomic = Napi::Object::New(env);
  pciAtomic.Set("fetchAdd", a.pci_atomic_caps.fetch_add);
  pciAtomic.Set("swap", a.pci_atomic_caps.swap);
  pciAtomic.Set("compareSwap", a.pci_atomic_caps.compare_swap);
  o.Set("pciAtomicCaps", pciAtomic);
  o.Set("physPortCntEx", a.phys_port_cnt_ex);
  return o;
}

// queryPort(port) -> { state, maxMtu, activeMtu, gidTblLen, lid, linkLayer, ... }
Napi::Value RdmaContext::QueryPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port = U32Arg(info, 0);
  if (port < 1 || port > 255) ThrowRange(env, "port");
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_query_port");
  ibv_port_attr a = {};
  int r = v_->query_port(ctx_, static_cast<uint8_t>(port), reinterpret_cast<_compat_ibv_port_attr*>(&a));
  if (r != 0) ThrowSys(env, r > 0 ? r : errno, "ibv_query_port");
  Napi::Object o = Napi::Object::New(env);
  o.Set("state", static_cast<int>(a.state));
  o.Set("maxMtu", static_cast<int>(a.max_mtu));
  o.Set("activeMtu", static_cast<int>(a.active_mtu));
  o.Set("gidTblLen", a.gid_tbl_len);
  o.Set("lid", a.lid);
  o.Set("maxMsgSz", a.max_msg_sz);
  o.Set("linkLayer", a.link_layer);
  o.Set("activeSpeed", a.active_speed);
  o.Set("activeWidth", a.active_width);
  return o;
}

// queryGid(port, index) -> Buffer of 16 bytes.
Napi::Value RdmaContext::QueryGid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port = U32Arg(info, 0);
  uint32_t index = U32Arg(info, 1);
  if (port < 1 || port > 255) ThrowRange(env, "port");
  if (index > 0x7fffffff) ThrowRange(env, "index");
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_query_gid");
  ibv_gid gid;
  int r = v_->query_gid(ctx_, static_cast<uint8_t>(port), static_cast<int>(index), &gid);
  if (r != 0) ThrowSys(env, r > 0 ? r : (errno != 0 ? errno : EINVAL), "ibv_query_gid");
  return Napi::Buffer<uint8_t>::Copy(env, gid.raw, 16);
}

// queryGidTable(maxEntries) -> [{ index, port, gid: Buffer, type }] of the
// valid entries, in one ioctl, or null when libibverbs predates it. Reading
// rxe's 1024-entry table from sysfs instead costs seconds under emulation.
Napi::Value RdmaContext::QueryGidTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t max = U32Arg(info, 0);
  if (max < 1 || max > 0x10000) ThrowRange(env, "maxEntries");
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_query_gid_table");
  if (v_->query_gid_table == nullptr) return env.Null();
  std::vector<ibv_gid_entry> entries(max);
  errno = 0;
  ssize_t n = v_->query_gid_table(ctx_, entries.data(), entries.size(), 0, sizeof(ibv_gid_entry));
  if (n < 0) ThrowSys(env, n == -1 && errno != 0 ? errno : static_cast<int>(-n), "ibv_query_gid_table");
  Napi::Array out = Napi::Array::New(env, static_cast<size_t>(n));
  for (ssize_t i = 0; i < n; i++) {
    const ibv_gid_entry& e = entries[static_cast<size_t>(i)];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", Napi::Number::New(env, e.gid_index));
    o.Set("port", Napi::Number::New(env, e.port_num));
    o.Set("gid", Napi::Buffer<uint8_t>::Copy(env, e.gid.raw, 16));
    o.Set("type", Napi::Number::New(env, e.gid_type));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value RdmaContext::GetAsyncFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), async_fd_); }

// getAsyncEvent() -> { type, name, portNum? | qpNum? | cqHandle? | srqHandle? }
// or undefined when none is queued (the fd is non-blocking). Acked at once,
// after copying what names its object: an unacked event would make
// destroying that object wait.
Napi::Value RdmaContext::GetAsyncEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_get_async_event");
  ibv_async_event ev;
  errno = 0;
  if (v_->get_async_event(ctx_, &ev) != 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Undefined();
    ThrowSys(env, errno != 0 ? errno : EIO, "ibv_get_async_event");
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", static_cast<int>(ev.event_type));
  o.Set("name", v_->event_type_str(ev.event_type));
  switch (ev.event_type) {
    case IBV_EVENT_CQ_ERR:
      o.Set("cqHandle", ev.element.cq->handle);
      break;
    case IBV_EVENT_QP_FATAL:
    case IBV_EVENT_QP_REQ_ERR:
    case IBV_EVENT_QP_ACCESS_ERR:
    case IBV_EVENT_COMM_EST:
    case IBV_EVENT_SQ_DRAINED:
    case IBV_EVENT_PATH_MIG:
    case IBV_EVENT_PATH_MIG_ERR:
    case IBV_EVENT_QP_LAST_WQE_REACHED:
      o.Set("qpNum", ev.element.qp->qp_num);
      break;
    case IBV_EVENT_SRQ_ERR:
    case IBV_EVENT_SRQ_LIMIT_REACHED:
      o.Set("srqHandle", ev.element.srq->handle);
      break;
    case IBV_EVENT_PORT_ACTIVE:
    case IBV_EVENT_PORT_ERR:
    case IBV_EVENT_LID_CHANGE:
    case IBV_EVENT_PKEY_CHANGE:
    case IBV_EVENT_SM_CHANGE:
    case IBV_EVENT_CLIENT_REREGISTER:
    case IBV_EVENT_GID_CHANGE:
      o.Set("portNum", ev.element.port_num);
      break;
    default:
      break;
  }
  v_->ack_async_event(&ev);
  return o;
}

// ---------------------------------------------------------------------------
// PD

RdmaPd::RdmaPd(const Napi::CallbackInfo& info) : ResourceWrap<RdmaPd>(info) {
  Napi::Env env = info.Env();
  v_ = &VerbsOrThrow(env);
  RdmaContext* c = OpenParent<RdmaContext>(info, 0, "ibv_alloc_pd");
  errno = 0;
  pd_ = v_->alloc_pd(c->ctx());
  if (pd_ == nullptr) ThrowSys(env, errno != 0 ? errno : ENOMEM, "ibv_alloc_pd");
  AddParent(c, info[0].As<Napi::Object>());
}

Napi::Function RdmaPd::Define(Napi::Env env) { return DefineClass(env, "RdmaPd", ResourceMethods()); }

int RdmaPd::Teardown() {
  int r = v_->dealloc_pd(pd_);
  return r == 0 ? 0 : -r;
}

// ---------------------------------------------------------------------------
// MR

namespace {

// ibv_reg_mr on the thread pool: pinning a large region takes a while.
class RegWorker : public PromiseWorker {
 public:
  RegWorker(Napi::Env env, RdmaMr* mr, void* addr, size_t len, int access)
      : PromiseWorker(env, "p2pdma:ibv_reg_mr", "ibv_reg_mr", -1), mr_(mr), addr_(addr), len_(len), access_(access) {
    mr_->Hold();
  }

 protected:
  void Run() override {
    errno = 0;
    result_ = mr_->verbs()->reg_mr(mr_->pd(), addr_, len_, access_);
    if (result_ == nullptr) err_ = errno != 0 ? errno : EINVAL;
  }
  Napi::Value Result(Napi::Env env) override { return mr_->Value(); }
  void Settled(Napi::Env) override {
    // Closed meanwhile: the region goes with the teardown the release runs.
    if (result_ != nullptr) mr_->Adopt(result_);
    mr_->Release();
  }

 private:
  RdmaMr* mr_;
  void* addr_;
  size_t len_;
  int access_;
  ibv_mr* result_ = nullptr;
};

}  // namespace

// new Mr(pd): not registered yet; register*() registers it once.
RdmaMr::RdmaMr(const Napi::CallbackInfo& info) : ResourceWrap<RdmaMr>(info) {
  v_ = &VerbsOrThrow(info.Env());
  RdmaPd* pd = OpenParent<RdmaPd>(info, 0, "ibv_reg_mr");
  pd_ = pd->pd();
  AddParent(pd, info[0].As<Napi::Object>());
}

Napi::Function RdmaMr::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&RdmaMr::Register>("register"));
  props.push_back(InstanceMethod<&RdmaMr::RegisterAsync>("registerAsync"));
  props.push_back(InstanceMethod<&RdmaMr::RegisterDmaBuf>("registerDmaBuf"));
  props.push_back(InstanceMethod<&RdmaMr::Info>("info"));
  props.push_back(InstanceMethod<&RdmaMr::PollByte>("pollByte"));
  return DefineClass(env, "RdmaMr", props);
}

// A buffer stays referenced while registered. An address (a Mapping's) is
// not an object: lib/rdma/ keeps the Mapping.
void RdmaMr::KeepTarget(Napi::Value v) {
  if (v.IsObject()) target_ = Napi::Persistent(v.As<Napi::Object>());
}

int RdmaMr::Teardown() {
  target_.Reset();
  if (mr_ == nullptr) return 0;
  int r = v_->dereg_mr(mr_);
  mr_ = nullptr;
  return r == 0 ? 0 : -r;
}

namespace {

// (target, offset, length, access) or (address bigint, length, access, keep):
// the range to register. A buffer target is checked natively: JS never
// passes a raw address for memory V8 owns.
struct Range {
  void* addr;
  size_t len;
  int access;
};

Range RangeArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Range r;
  if (info[0].IsBigInt()) {
    bool lossless;
    uint64_t a = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless || a == 0) ThrowRange(env, "address");
    r.addr = reinterpret_cast<void*>(a);
    r.len = static_cast<size_t>(U64Arg(info, 1));
    r.access = static_cast<int>(U32Arg(info, 2));
  } else {
    uint8_t* data;
    size_t len;
    if (!BytesOf(info[0], &data, &len)) ThrowType(env, "target");
    uint64_t off = U64Arg(info, 1);
    uint64_t n = U64Arg(info, 2);
    if (off > len || n > len - off || n == 0) ThrowRange(env, "length");
    r.addr = data + off;
    r.len = static_cast<size_t>(n);
    r.access = static_cast<int>(U32Arg(info, 3));
  }
  return r;
}

}  // namespace

// register(target, offset, length, access) | register(address, length, access)
// -> this; throws SysError (ibv_reg_mr).
Napi::Value RdmaMr::Register(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Range r = RangeArgs(info);
  if (!IsOpen() || mr_ != nullptr || InFlight() > 0) ThrowSys(env, EBUSY, "ibv_reg_mr");
  errno = 0;
  mr_ = v_->reg_mr(pd_, r.addr, r.len, r.access);
  if (mr_ == nullptr) ThrowSys(env, errno != 0 ? errno : EINVAL, "ibv_reg_mr");
  cpu_ = true;
  KeepTarget(info[0]);
  return info.This();
}

// registerAsync(...same) -> Promise<this>, pinning on the thread pool.
Napi::Value RdmaMr::RegisterAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Range r = RangeArgs(info);
  if (!IsOpen() || mr_ != nullptr || InFlight() > 0) ThrowSys(env, EBUSY, "ibv_reg_mr");
  auto* w = new RegWorker(env, this, r.addr, r.len, r.access);
  w->Keep(info[0]);
  w->Keep(info.This());
  KeepTarget(info[0]);
  cpu_ = true;
  return w->Start();
}

namespace {

// rdma-core's struct verbs_mr (infiniband/driver.h, not installed): what
// rxe's provider allocates for an MR and frees in its dereg_mr.
struct VerbsMr {
  ibv_mr mr;
  int mr_type;  // enum ibv_mr_type
  int access;
};

// rxe is the one RDMA driver with a 'parent' attribute (its netdev).
bool IsRxe(ibv_context* ctx) {
  std::string p = std::string(ctx->device->ibdev_path) + "/parent";
  return ::access(p.c_str(), F_OK) == 0;
}

// rdma-core's rxe provider has no reg_dmabuf_mr, so ibv_reg_dmabuf_mr()
// fails with EOPNOTSUPP before the kernel is asked, although rxe with the
// p2pdma kernel series has the verb. Register as that provider op would:
// the command into a calloc()ed verbs_mr, which rxe's dereg_mr (reached
// through ibv_dereg_mr) frees. rxe only: other providers' MRs are larger.
ibv_mr* RegDmaBufRxe(const Verbs* v, ibv_pd* pd, uint64_t off, uint64_t len, uint64_t iova, int fd, int access) {
  auto* vmr = static_cast<VerbsMr*>(::calloc(1, sizeof(VerbsMr)));
  if (vmr == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  int r = v->cmd_reg_dmabuf_mr(pd, off, len, iova, fd, access, vmr, nullptr);
  if (r != 0) {
    ::free(vmr);
    errno = r;
    return nullptr;
  }
  return &vmr->mr;
}

}  // namespace

// registerDmaBuf(fd, offset, length, iova, access) -> this. ENOSYS when the
// library lacks ibv_reg_dmabuf_mr (before rdma-core 34).
Napi::Value RdmaMr::RegisterDmaBuf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  uint64_t off = U64Arg(info, 1);
  uint64_t len = U64Arg(info, 2);
  uint64_t iova = U64Arg(info, 3);
  int access = static_cast<int>(U32Arg(info, 4));
  if (v_->reg_dmabuf_mr == nullptr) ThrowSys(env, ENOSYS, "ibv_reg_dmabuf_mr", fd);
  if (!IsOpen() || mr_ != nullptr || InFlight() > 0) ThrowSys(env, EBUSY, "ibv_reg_dmabuf_mr", fd);
  errno = 0;
  mr_ = v_->reg_dmabuf_mr(pd_, off, len, iova, fd, access);
  if (mr_ == nullptr && errno == EOPNOTSUPP && v_->cmd_reg_dmabuf_mr != nullptr && IsRxe(pd_->context)) {
    errno = 0;
    mr_ = RegDmaBufRxe(v_, pd_, off, len, iova, fd, access);
  }
  if (mr_ == nullptr) ThrowSys(env, errno != 0 ? errno : EINVAL, "ibv_reg_dmabuf_mr", fd);
  // libibverbs sets addr to the dma-buf offset; peers address the MR by
  // its iova, which info() reports as addr.
  mr_->addr = reinterpret_cast<void*>(static_cast<uintptr_t>(iova));
  return info.This();
}

// info() -> { lkey, rkey, addr, length } or undefined when not registered.
Napi::Value RdmaMr::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (mr_ == nullptr) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("lkey", mr_->lkey);
  o.Set("rkey", mr_->rkey);
  o.Set("addr", U64(env, reinterpret_cast<uintptr_t>(mr_->addr)));
  o.Set("length", static_cast<double>(mr_->length));
  return o;
}

namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int64_t ElapsedUs(const timespec& a, const timespec& b) {
  return (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
}

}  // namespace

// pollByte(offset, value, timeoutUs) -> 0 once the byte at `offset` of the
// region reads `value`, or -ETIMEDOUT after timeoutUs, -EBADF (closed or
// unregistered), -EFAULT (a dma-buf's region: no CPU address): the latency
// path's wait for a peer's WRITE, spinning here rather than in JS (as
// ib_write_lat spins on its buffer). Blocks the thread, bounded by timeoutUs.
Napi::Value RdmaMr::PollByte(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double off = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  uint32_t value = U32Arg(info, 1);
  uint32_t timeoutUs = U32Arg(info, 2);
  if (value > 255) ThrowRange(env, "value");
  if (!IsOpen() || mr_ == nullptr) return Napi::Number::New(env, -EBADF);
  if (!cpu_) return Napi::Number::New(env, -EFAULT);
  if (!IsIntegerIn(off, 0, static_cast<double>(mr_->length) - 1)) ThrowRange(env, "offset");
  const volatile uint8_t* p = static_cast<const volatile uint8_t*>(mr_->addr) + static_cast<size_t>(off);
  const uint8_t want = static_cast<uint8_t>(value);
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    for (int i = 0; i < 256; i++) {
      if (*p == want) {
        // What the peer wrote before this byte is visible once it is.
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        return Napi::Number::New(env, 0);
      }
      CpuRelax();
    }
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (ElapsedUs(start, now) >= timeoutUs) return Napi::Number::New(env, -ETIMEDOUT);
  }
}

// ---------------------------------------------------------------------------
// CQ

// new Cq(context, cqe, solicitedOnly = false): a CQ with its own completion channel (non-blocking,
// polled by lib/rdma/ on the event loop), armed for the next completion.
RdmaCq::RdmaCq(const Napi::CallbackInfo& info) : ResourceWrap<RdmaCq>(info) {
  Napi::Env env = info.Env();
  v_ = &VerbsOrThrow(env);
  RdmaContext* c = OpenParent<RdmaContext>(info, 0, "ibv_create_cq");
  uint32_t cqe = U32Arg(info, 1);
  if (cqe < 1 || cqe > 0x7fffffff) ThrowRange(env, "cqe");
  errno = 0;
  ch_ = v_->create_comp_channel(c->ctx());
  if (ch_ == nullptr) ThrowSys(env, errno != 0 ? errno : ENOMEM, "ibv_create_comp_channel");
  int fl = ::fcntl(ch_->fd, F_GETFL);
  if (fl == -1 || ::fcntl(ch_->fd, F_SETFL, fl | O_NONBLOCK) == -1) {
    int err = errno;
    int fd = ch_->fd;  // ch_ is freed by destroy_comp_channel
    v_->destroy_comp_channel(ch_);
    ch_ = nullptr;
    ThrowSys(env, err, "fcntl", fd);
  }
  errno = 0;
  cq_ = v_->create_cq(c->ctx(), static_cast<int>(cqe), nullptr, ch_, 0);
  if (cq_ == nullptr) {
    int err = errno != 0 ? errno : ENOMEM;
    v_->destroy_comp_channel(ch_);
    ThrowSys(env, err, "ibv_create_cq");
  }
  // info[2]: solicited only (the channel wakes for solicited completions and errors).
  solicited_ = info[2].ToBoolean() ? 1 : 0;
  int r = ibv_req_notify_cq(cq_, solicited_);
  if (r != 0) {
    v_->destroy_cq(cq_);
    v_->destroy_comp_channel(ch_);
    ThrowSys(env, r, "ibv_req_notify_cq");
  }
  fd_ = ch_->fd;
  cqe_ = cq_->cqe;
  handle_ = cq_->handle;
  AddParent(c, info[0].As<Napi::Object>());
}

Napi::Function RdmaCq::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&RdmaCq::Drain>("drain"));
  props.push_back(InstanceMethod<&RdmaCq::DrainInto>("drainInto"));
  props.push_back(InstanceAccessor<&RdmaCq::GetFd>("fd"));
  props.push_back(InstanceAccessor<&RdmaCq::GetCqe>("cqe"));
  props.push_back(InstanceAccessor<&RdmaCq::GetHandle>("handle"));
  return DefineClass(env, "RdmaCq", props);
}

int RdmaCq::Teardown() {
  if (unacked_ > 0) v_->ack_cq_events(cq_, unacked_);
  unacked_ = 0;
  int r = v_->destroy_cq(cq_);
  int r2 = v_->destroy_comp_channel(ch_);
  cq_ = nullptr;
  ch_ = nullptr;
  if (r != 0) return -r;
  return r2 == 0 ? 0 : -(r2 > 0 ? r2 : errno);
}

Napi::Value RdmaCq::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
Napi::Value RdmaCq::GetCqe(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cqe_); }
Napi::Value RdmaCq::GetHandle(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), handle_); }

// Completions, flattened: stride 10.
constexpr int kWcStride = 10;

// A completion's immediate (host order) with IBV_WC_WITH_IMM, else the
// union as the invalidated rkey (lib/rdma/cq.ts reads it only when the flags
// say an invalidation came: IBV_WC_WITH_INV, or rxe's bit for it).
double WcUnion(const ibv_wc& wc) {
  return (wc.wc_flags & IBV_WC_WITH_IMM) != 0 ? ntohl(wc.imm_data) : wc.invalidated_rkey;
}

// drain(batch) -> Float64Array [wr_id, status, opcode, byte_len,
// vendor_err, qp_num, wc_flags, immediate (host order, 0 without
// IBV_WC_WITH_IMM, else the invalidated rkey), src_qp (UD), sl]*: consumes the channel's events (if any), re-arms the
// CQ, then polls `batch` (1..4096) at a time until a poll returns fewer than
// asked, i.e. until the CQ is empty. Never stops at a count: the channel
// signals only completions that arrive after the re-arm, so any left behind
// would wait for one that may never come. The total is bounded by the work
// requests outstanding (a CQ holds at most cqe). Never blocks. Works after
// close() until the teardown (QPs still on the CQ keep completing).
Napi::Value RdmaCq::Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t batch = U32Arg(info, 0);
  if (batch < 1 || batch > 4096) ThrowRange(env, "batch");
  if (cq_ == nullptr) ThrowSys(env, EBADF, "ibv_poll_cq");
  int r = Rearm();
  if (r != 0) ThrowSys(env, r, "ibv_req_notify_cq");
  std::vector<double> out;
  std::vector<ibv_wc> wc(batch);
  for (;;) {
    int want = static_cast<int>(batch);
    int n = ibv_poll_cq(cq_, want, wc.data());
    if (n < 0) ThrowSys(env, -n > 0 ? -n : EIO, "ibv_poll_cq");
    for (int i = 0; i < n; i++) {
      out.push_back(static_cast<double>(wc[i].wr_id));
      out.push_back(wc[i].status);
      out.push_back(wc[i].opcode);
      out.push_back(wc[i].byte_len);
      out.push_back(wc[i].vendor_err);
      out.push_back(wc[i].qp_num);
      out.push_back(wc[i].wc_flags);
      out.push_back(WcUnion(wc[i]));
      out.push_back(wc[i].src_qp);
      out.push_back(wc[i].sl);
    }
    if (n < want) break;
  }
  Napi::Float64Array a = Napi::Float64Array::New(env, out.size());
  if (!out.empty()) memcpy(a.Data(), out.data(), out.size() * sizeof(double));
  return a;
}

// Consumes the channel's events (if any) and re-arms the CQ when one came:
// the poll that follows then sees every completion the event could not
// announce. 0 or an errno.
int RdmaCq::Rearm() {
  bool evented = false;
  for (;;) {
    ibv_cq* cq;
    void* ctx;
    if (v_->get_cq_event(ch_, &cq, &ctx) != 0) break;  // EAGAIN: none left
    unacked_++;
    evented = true;
  }
  // Acking takes a lock: batch it.
  if (unacked_ >= 64) {
    v_->ack_cq_events(cq_, unacked_);
    unacked_ = 0;
  }
  return evented ? ibv_req_notify_cq(cq_, solicited_) : 0;
}

// drainInto(out: Float64Array, spinUs, rearm) -> count: as drain(), into
// the caller's buffer (kWcStride doubles per completion, allocated once per
// CQ), at most out.length / kWcStride; a full buffer means more may be
// left, and the caller calls again (with rearm false). With spinUs > 0 and
// an empty CQ it polls again in a loop for up to spinUs microseconds before
// returning 0: native busy-polling, no JS per empty poll.
Napi::Value RdmaCq::DrainInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) ThrowType(env, "out");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_float64_array) ThrowType(env, "out");
  double* out = static_cast<double*>(ta.ArrayBuffer().Data()) + ta.ByteOffset() / sizeof(double);
  size_t cap = ta.ElementLength() / kWcStride;
  if (cap < 1 || cap > 4096) ThrowRange(env, "out");
  uint32_t spinUs = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  if (cq_ == nullptr) ThrowSys(env, EBADF, "ibv_poll_cq");
  if (info[2].ToBoolean()) {
    int r = Rearm();
    if (r != 0) ThrowSys(env, r, "ibv_req_notify_cq");
  }
  ibv_wc wc[64];
  size_t got = 0;
  timespec start{};
  bool spun = false;
  while (got < cap) {
    int want = static_cast<int>(std::min<size_t>(cap - got, 64));
    int n = ibv_poll_cq(cq_, want, wc);
    if (n < 0) ThrowSys(env, -n > 0 ? -n : EIO, "ibv_poll_cq");
    for (int i = 0; i < n; i++, got++) {
      double* o = out + got * kWcStride;
      o[0] = static_cast<double>(wc[i].wr_id);
      o[1] = wc[i].status;
      o[2] = wc[i].opcode;
      o[3] = wc[i].byte_len;
      o[4] = wc[i].vendor_err;
      o[5] = wc[i].qp_num;
      o[6] = wc[i].wc_flags;
      o[7] = WcUnion(wc[i]);
      o[8] = wc[i].src_qp;
      o[9] = wc[i].sl;
    }
    if (n == want) continue;
    if (got > 0 || spinUs == 0) break;
    // Empty: spin (the latency path), then give the event loop its turn.
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!spun) {
      start = now;
      spun = true;
    } else if ((now.tv_sec - start.tv_sec) * 1000000 + (now.tv_nsec - start.tv_nsec) / 1000 >= spinUs) {
      break;
    }
  }
  return Napi::Number::New(env, static_cast<double>(got));
}

// ---------------------------------------------------------------------------
// QP

// new Qp(pd, sendCq, recvCq, { maxSendWr, maxRecvWr, maxSendSge, maxRecvSge, maxInlineData },
// qpType = IBV_QPT_RC, srq = null): an RC, UC or UD queue pair in RESET, its
// receives from `srq` when given. qp_context is unused: completions carry
// qp_num.
RdmaQp::RdmaQp(const Napi::CallbackInfo& info) : ResourceWrap<RdmaQp>(info) {
  Napi::Env env = info.Env();
  v_ = &VerbsOrThrow(env);
  RdmaPd* pd = OpenParent<RdmaPd>(info, 0, "ibv_create_qp");
  RdmaCq* scq = OpenParent<RdmaCq>(info, 1, "ibv_create_qp");
  RdmaCq* rcq = OpenParent<RdmaCq>(info, 2, "ibv_create_qp");
  if (!info[3].IsObject()) ThrowType(env, "cap");
  Napi::Object cap = info[3].As<Napi::Object>();
  ibv_qp_init_attr a = {};
  bool p;
  a.send_cq = scq->cq();
  a.recv_cq = rcq->cq();
  double type = info[4].IsNumber() ? info[4].As<Napi::Number>().DoubleValue() : static_cast<double>(IBV_QPT_RC);
  if (type != IBV_QPT_RC && type != IBV_QPT_UC && type != IBV_QPT_UD) ThrowRange(env, "qpType");
  RdmaSrq* srq = nullptr;
  if (!info[5].IsUndefined() && !info[5].IsNull()) srq = OpenParent<RdmaSrq>(info, 5, "ibv_create_qp");
  a.qp_type = static_cast<ibv_qp_type>(type);
  a.srq = srq != nullptr ? srq->srq() : nullptr;
  // Each WR says whether it is signaled (lib/rdma/qp.ts { signaled }).
  a.sq_sig_all = 0;
  a.cap.max_send_wr = U32Of(cap, "maxSendWr", &p);
  a.cap.max_recv_wr = U32Of(cap, "maxRecvWr", &p);
  a.cap.max_send_sge = U32Of(cap, "maxSendSge", &p);
  a.cap.max_recv_sge = U32Of(cap, "maxRecvSge", &p);
  a.cap.max_inline_data = U32Of(cap, "maxInlineData", &p);
  errno = 0;
  qp_ = v_->create_qp(pd->pd(), &a);
  if (qp_ == nullptr) ThrowSys(env, errno != 0 ? errno : EINVAL, "ibv_create_qp");
  cap_ = a.cap;  // what the provider granted
  qp_num_ = qp_->qp_num;
  AddParent(pd, info[0].As<Napi::Object>());
  AddParent(scq, info[1].As<Napi::Object>());
  if (rcq != scq) AddParent(rcq, info[2].As<Napi::Object>());
  if (srq != nullptr) AddParent(srq, info[5].As<Napi::Object>());
}

Napi::Function RdmaQp::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&RdmaQp::Modify>("modify"));
  props.push_back(InstanceMethod<&RdmaQp::Query>("query"));
  props.push_back(InstanceMethod<&RdmaQp::BindMw>("bindMw"));
  props.push_back(InstanceMethod<&RdmaQp::AttachMcast>("attachMcast"));
  props.push_back(InstanceMethod<&RdmaQp::DetachMcast>("detachMcast"));
  props.push_back(InstanceMethod<&RdmaQp::PostSend>("postSend"));
  props.push_back(InstanceMethod<&RdmaQp::PostRecv>("postRecv"));
  props.push_back(InstanceMethod<&RdmaQp::PostSendPacked>("postSendPacked"));
  props.push_back(InstanceMethod<&RdmaQp::PostRecvPacked>("postRecvPacked"));
  props.push_back(InstanceMethod<&RdmaQp::Prepare>("prepare"));
  props.push_back(InstanceMethod<&RdmaQp::Unprepare>("unprepare"));
  props.push_back(InstanceMethod<&RdmaQp::PostPrepared>("postPrepared"));
  props.push_back(InstanceAccessor<&RdmaQp::GetQpNum>("qpNum"));
  props.push_back(InstanceAccessor<&RdmaQp::GetCap>("cap"));
  return DefineClass(env, "RdmaQp", props);
}

int RdmaQp::Teardown() {
  int r = v_->destroy_qp(qp_);
  qp_ = nullptr;
  return r == 0 ? 0 : -r;
}

Napi::Value RdmaQp::GetQpNum(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), qp_num_); }

Napi::Value RdmaQp::GetCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("maxSendWr", cap_.max_send_wr);
  o.Set("maxRecvWr", cap_.max_recv_wr);
  o.Set("maxSendSge", cap_.max_send_sge);
  o.Set("maxRecvSge", cap_.max_recv_sge);
  o.Set("maxInlineData", cap_.max_inline_data);
  return o;
}

namespace {

// An address vector from { dlid, sl, portNum, dgid?: 16 bytes, sgidIndex, hopLimit = 64 }.
void AhAttrOf(Napi::Object ah, ibv_ah_attr* a) {
  bool p;
  a->dlid = static_cast<uint16_t>(U32Of(ah, "dlid", &p));
  a->sl = static_cast<uint8_t>(U32Of(ah, "sl", &p));
  a->port_num = static_cast<uint8_t>(U32Of(ah, "portNum", &p));
  Napi::Value gid = ah.Get("dgid");
  if (!gid.IsUndefined()) {
    uint8_t* d;
    size_t n;
    if (!BytesOf(gid, &d, &n) || n != 16) ThrowType(ah.Env(), "ah.dgid");
    a->is_global = 1;
    memcpy(a->grh.dgid.raw, d, 16);
    a->grh.sgid_index = static_cast<uint8_t>(U32Of(ah, "sgidIndex", &p));
    a->grh.hop_limit = static_cast<uint8_t>(U32Of(ah, "hopLimit", &p));
    if (!p) a->grh.hop_limit = 64;
  }
}

}  // namespace

// query() -> ibv_query_qp's attributes, raw (lib/rdma/qp.ts names them).
Napi::Value RdmaQp::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_query_qp");
  ibv_qp_attr a = {};
  ibv_qp_init_attr ia = {};
  int mask = IBV_QP_STATE | IBV_QP_CUR_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS | IBV_QP_QKEY | IBV_QP_AV |
             IBV_QP_PATH_MTU | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_RQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC |
             IBV_QP_MIN_RNR_TIMER | IBV_QP_SQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_DEST_QPN | IBV_QP_CAP;
  int r = v_->query_qp(qp_, &a, mask, &ia);
  if (r != 0) ThrowSys(env, r > 0 ? r : (errno != 0 ? errno : EINVAL), "ibv_query_qp");
  Napi::Object o = Napi::Object::New(env);
  o.Set("qpState", static_cast<int>(a.qp_state));
  o.Set("pathMtu", static_cast<int>(a.path_mtu));
  o.Set("destQpNum", a.dest_qp_num);
  o.Set("rqPsn", a.rq_psn);
  o.Set("sqPsn", a.sq_psn);
  o.Set("qpAccessFlags", a.qp_access_flags);
  o.Set("qkey", a.qkey);
  o.Set("pkeyIndex", a.pkey_index);
  o.Set("portNum", a.port_num);
  o.Set("timeout", a.timeout);
  o.Set("retryCnt", a.retry_cnt);
  o.Set("rnrRetry", a.rnr_retry);
  o.Set("minRnrTimer", a.min_rnr_timer);
  o.Set("maxRdAtomic", a.max_rd_atomic);
  o.Set("maxDestRdAtomic", a.max_dest_rd_atomic);
  o.Set("maxInlineData", ia.cap.max_inline_data);
  o.Set("maxSendWr", ia.cap.max_send_wr);
  o.Set("maxRecvWr", ia.cap.max_recv_wr);
  o.Set("sqSigAll", ia.sq_sig_all != 0);
  o.Set("qpType", static_cast<int>(ia.qp_type));
  if (a.ah_attr.is_global) {
    o.Set("dgid", Napi::Buffer<uint8_t>::Copy(env, a.ah_attr.grh.dgid.raw, 16));
    o.Set("sgidIndex", a.ah_attr.grh.sgid_index);
    o.Set("hopLimit", a.ah_attr.grh.hop_limit);
  }
  return o;
}

// modify(attrs) -> 0 or -errno: ibv_modify_qp with the mask of the fields
// present (names as ibv_qp_attr's, camel-cased; `ah` for the address vector).
Napi::Value RdmaQp::Modify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowType(env, "attrs");
  Napi::Object o = info[0].As<Napi::Object>();
  ibv_qp_attr a = {};
  int mask = 0;
  bool p;
  uint32_t v;
#define FIELD(key, field, bit)     \
  v = U32Of(o, key, &p);           \
  if (p) {                         \
    a.field = static_cast<decltype(a.field)>(v); \
    mask |= bit;                   \
  }
  FIELD("qpState", qp_state, IBV_QP_STATE)
  FIELD("pkeyIndex", pkey_index, IBV_QP_PKEY_INDEX)
  FIELD("portNum", port_num, IBV_QP_PORT)
  FIELD("qpAccessFlags", qp_access_flags, IBV_QP_ACCESS_FLAGS)
  FIELD("pathMtu", path_mtu, IBV_QP_PATH_MTU)
  FIELD("destQpNum", dest_qp_num, IBV_QP_DEST_QPN)
  FIELD("rqPsn", rq_psn, IBV_QP_RQ_PSN)
  FIELD("sqPsn", sq_psn, IBV_QP_SQ_PSN)
  FIELD("maxDestRdAtomic", max_dest_rd_atomic, IBV_QP_MAX_DEST_RD_ATOMIC)
  FIELD("maxRdAtomic", max_rd_atomic, IBV_QP_MAX_QP_RD_ATOMIC)
  FIELD("minRnrTimer", min_rnr_timer, IBV_QP_MIN_RNR_TIMER)
  FIELD("timeout", timeout, IBV_QP_TIMEOUT)
  FIELD("retryCnt", retry_cnt, IBV_QP_RETRY_CNT)
  FIELD("rnrRetry", rnr_retry, IBV_QP_RNR_RETRY)
  FIELD("qkey", qkey, IBV_QP_QKEY)
#undef FIELD
  Napi::Value ahv = o.Get("ah");
  if (ahv.IsObject()) {
    AhAttrOf(ahv.As<Napi::Object>(), &a.ah_attr);
    mask |= IBV_QP_AV;
  }
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  int r = v_->modify_qp(qp_, &a, mask);
  return Napi::Number::New(env, r == 0 ? 0 : -r);
}

namespace {

// One scatter/gather entry from (mr, offset, length): the MR must be open
// and registered, and the range inside it.
bool Sge(Napi::Value mrv, double off, double len, ibv_sge* sge) {
  RdmaMr* mr = UnwrapResource<RdmaMr>(mrv);
  if (mr == nullptr || !mr->IsOpen() || mr->mr() == nullptr) return false;
  double size = static_cast<double>(mr->mr()->length);
  if (!IsIntegerIn(off, 0, size) || !IsIntegerIn(len, 0, 4294967295.0) || off + len > size) return false;
  sge->addr = reinterpret_cast<uintptr_t>(mr->mr()->addr) + static_cast<uint64_t>(off);
  sge->length = static_cast<uint32_t>(len);
  sge->lkey = mr->mr()->lkey;
  return true;
}

bool Sge(Napi::Value mrv, Napi::Value offv, Napi::Value lenv, ibv_sge* sge) {
  if (!offv.IsNumber() || !lenv.IsNumber()) return false;
  return Sge(mrv, offv.As<Napi::Number>().DoubleValue(), lenv.As<Napi::Number>().DoubleValue(), sge);
}

// The local side of a work request: null (no SGE), an MR with (offset,
// length) in the next two slots, or an array of [mr, offset, length]
// triples (a scatter/gather list). Appends to `sges`, whose storage the
// caller reserved so pointers into it stay valid; returns the count, or -1.
int SgeList(Napi::Value mrv, Napi::Value offv, Napi::Value lenv, std::vector<ibv_sge>* sges) {
  if (mrv.IsNull() || mrv.IsUndefined()) return 0;
  if (!mrv.IsArray()) {
    ibv_sge one;
    if (sges->size() == sges->capacity() || !Sge(mrv, offv, lenv, &one)) return -1;
    sges->push_back(one);
    return 1;
  }
  Napi::Array list = mrv.As<Napi::Array>();
  uint32_t n = list.Length();
  if (n == 0 || n > 1024) return -1;
  for (uint32_t j = 0; j < n; j++) {
    Napi::Value tv = list.Get(j);
    if (!tv.IsArray()) return -1;
    Napi::Array t = tv.As<Napi::Array>();
    ibv_sge one;
    // Never grow past the reserve: earlier WRs point into it.
    if (sges->size() == sges->capacity() || !Sge(t.Get(0u), t.Get(1u), t.Get(2u), &one)) return -1;
    sges->push_back(one);
  }
  return static_cast<int>(n);
}

// A send or receive WR's scatter/gather list from entry slots `slot`
// (mr or list), slot + 1 (offset), slot + 2 (length).
template <typename Wr>
void SetSges(Napi::Env env, Napi::Array e, uint32_t slot, std::vector<ibv_sge>* sge, Wr* w) {
  size_t first = sge->size();
  int count = SgeList(e.Get(slot), e.Get(slot + 1), e.Get(slot + 2), sge);
  if (count < 0) ThrowRange(env, "local");
  w->num_sge = count;
  w->sg_list = count > 0 ? &(*sge)[first] : nullptr;
}

// SGEs a list of entries may need: one each, or its list's length.
size_t SgeCapacity(Napi::Array list, uint32_t mrSlot) {
  size_t total = 0;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value ev = list.Get(i);
    if (!ev.IsArray()) continue;
    Napi::Value mr = ev.As<Napi::Array>().Get(mrSlot);
    total += mr.IsArray() ? std::min<uint32_t>(mr.As<Napi::Array>().Length(), 1024) : 1;
  }
  return total;
}

// The send flags a WR may carry; lib/rdma/qp.ts sets IBV_SEND_SIGNALED
// on each request unless it asked for { signaled: false }.
constexpr unsigned kSendFlags = IBV_SEND_SIGNALED | IBV_SEND_INLINE | IBV_SEND_FENCE | IBV_SEND_SOLICITED;

bool SendFlagsOk(double f) { return IsIntegerIn(f, 0, kSendFlags) && (static_cast<unsigned>(f) & ~kSendFlags) == 0; }

double NumAt(Napi::Array a, uint32_t i) {
  Napi::Value v = a.Get(i);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
}

// [posted, -errno or 0]: WRs before the failed one were posted.
Napi::Value PostResult(Napi::Env env, size_t posted, int err) {
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, static_cast<double>(posted));
  r.Set(1u, -err);
  return r;
}

}  // namespace

// postSend([[wrId, opcode, mr, offset, length, remoteAddr(bigint) | null,
// rkey | null, immediate | null, sendFlags, compareAdd(bigint), swap(bigint),
// ah (RdmaAh, UD), remoteQpn, remoteQkey], ...]) -> [posted, 0 | -errno]:
// one chain. `immediate` is a host-order u32 (sent in network order, as
// ibv_wc gives it back), or the rkey to invalidate of SEND_WITH_INV and
// LOCAL_INV; sendFlags is kSendFlags' bits.
Napi::Value RdmaQp::PostSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowType(env, "wrs");
  Napi::Array list = info[0].As<Napi::Array>();
  uint32_t n = list.Length();
  if (n == 0) return PostResult(env, 0, 0);
  std::vector<ibv_send_wr> wr(n);
  std::vector<ibv_sge> sge;
  sge.reserve(SgeCapacity(list, 2));
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value ev = list.Get(i);
    if (!ev.IsArray()) ThrowType(env, "wr");
    Napi::Array e = ev.As<Napi::Array>();
    double id = NumAt(e, 0), op = NumAt(e, 1);
    if (!IsIntegerIn(id, 0, 9007199254740991.0)) ThrowRange(env, "wrId");
    if (op != IBV_WR_RDMA_WRITE && op != IBV_WR_RDMA_READ && op != IBV_WR_SEND && op != IBV_WR_RDMA_WRITE_WITH_IMM &&
        op != IBV_WR_SEND_WITH_IMM && op != IBV_WR_ATOMIC_CMP_AND_SWP && op != IBV_WR_ATOMIC_FETCH_AND_ADD &&
        op != IBV_WR_SEND_WITH_INV && op != IBV_WR_LOCAL_INV) {
      ThrowRange(env, "opcode");
    }
    bool atomic = op == IBV_WR_ATOMIC_CMP_AND_SWP || op == IBV_WR_ATOMIC_FETCH_AND_ADD;
    bool withImm = op == IBV_WR_RDMA_WRITE_WITH_IMM || op == IBV_WR_SEND_WITH_IMM;
    bool withInv = op == IBV_WR_SEND_WITH_INV || op == IBV_WR_LOCAL_INV;
    ibv_send_wr& w = wr[i];
    memset(&w, 0, sizeof(w));
    w.wr_id = static_cast<uint64_t>(id);
    w.opcode = static_cast<ibv_wr_opcode>(op);
    Napi::Value flagsV = e.Get(8u);
    double flags = flagsV.IsNumber() ? flagsV.As<Napi::Number>().DoubleValue() : 0;
    if (!SendFlagsOk(flags)) ThrowRange(env, "sendFlags");
    w.send_flags = static_cast<unsigned>(flags);
    Napi::Value ahv = e.Get(11u);
    if (!ahv.IsUndefined() && !ahv.IsNull()) {
      RdmaAh* ah = UnwrapResource<RdmaAh>(ahv);
      if (ah == nullptr || !ah->IsOpen()) ThrowType(env, "ah");
      double qpn = NumAt(e, 12), qkey = NumAt(e, 13);
      if (!IsIntegerIn(qpn, 0, 0xffffff)) ThrowRange(env, "remoteQpn");
      if (!IsIntegerIn(qkey, 0, 4294967295.0)) ThrowRange(env, "remoteQkey");
      w.wr.ud.ah = ah->ah();
      w.wr.ud.remote_qpn = static_cast<uint32_t>(qpn);
      w.wr.ud.remote_qkey = static_cast<uint32_t>(qkey);
    }
    if (withImm) {
      double imm = NumAt(e, 7);
      if (!IsIntegerIn(imm, 0, 4294967295.0)) ThrowRange(env, "immediate");
      w.imm_data = htonl(static_cast<uint32_t>(imm));
    }
    if (withInv) {
      // e[7]: the rkey to invalidate (the union's other member).
      double rk = NumAt(e, 7);
      if (!IsIntegerIn(rk, 0, 4294967295.0)) ThrowRange(env, "invalidateRkey");
      w.invalidate_rkey = static_cast<uint32_t>(rk);
    }
    w.next = i + 1 < n ? &wr[i + 1] : nullptr;
    SetSges(env, e, 2, &sge, &w);
    if (op != IBV_WR_SEND && op != IBV_WR_SEND_WITH_IMM && !withInv) {
      Napi::Value ra = e.Get(5u);
      if (!ra.IsBigInt()) ThrowType(env, "remoteAddr");
      bool lossless;
      uint64_t remote = ra.As<Napi::BigInt>().Uint64Value(&lossless);
      double rkey = NumAt(e, 6);
      if (!IsIntegerIn(rkey, 0, 4294967295.0)) ThrowRange(env, "rkey");
      if (atomic) {
        // compare_add (e[9]) and swap (e[10]): u64 bigints; the original
        // remote value lands in the 8-byte local SGE.
        Napi::Value ca = e.Get(9u), sw = e.Get(10u);
        if (!ca.IsBigInt() || !sw.IsBigInt()) ThrowType(env, "compareAdd/swap");
        w.wr.atomic.remote_addr = remote;
        w.wr.atomic.rkey = static_cast<uint32_t>(rkey);
        w.wr.atomic.compare_add = ca.As<Napi::BigInt>().Uint64Value(&lossless);
        w.wr.atomic.swap = sw.As<Napi::BigInt>().Uint64Value(&lossless);
      } else {
        w.wr.rdma.remote_addr = remote;
        w.wr.rdma.rkey = static_cast<uint32_t>(rkey);
      }
    }
  }
  if (!IsOpen()) return PostResult(env, 0, EBADF);
  ibv_send_wr* bad = nullptr;
  int r = ibv_post_send(qp_, wr.data(), &bad);
  if (r == 0) return PostResult(env, n, 0);
  return PostResult(env, bad != nullptr ? static_cast<size_t>(bad - wr.data()) : 0, r);
}

namespace {

// The packed form's stride: [wrId, opcode, sendFlags, mrSlot, offset,
// length, remoteAddr, rkey, immediate (or the rkey to invalidate), 0] per WR.
constexpr size_t kPackStride = 10;

// The Float64Array of a packed post, and the count it must hold.
const double* PackedArgs(const Napi::CallbackInfo& info, uint32_t* n) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) ThrowType(env, "desc");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_float64_array) ThrowType(env, "desc");
  double c = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  if (!IsIntegerIn(c, 1, static_cast<double>(ta.ElementLength() / kPackStride))) ThrowRange(env, "count");
  *n = static_cast<uint32_t>(c);
  return static_cast<const double*>(ta.ArrayBuffer().Data()) + ta.ByteOffset() / sizeof(double);
}

// The SGE of packed WR `d`: none (slot -1), or the MR in `mrs` (an RdmaMr,
// used for every slot, or an array indexed by slot) with the WR's range.
int PackedSge(Napi::Value mrs, const double* d, ibv_sge* sge) {
  double slot = d[3];
  if (slot == -1) return 0;
  if (!IsIntegerIn(slot, 0, 65535)) return -1;
  Napi::Value mrv = mrs;
  if (mrs.IsArray()) mrv = mrs.As<Napi::Array>().Get(static_cast<uint32_t>(slot));
  return Sge(mrv, d[4], d[5], sge) ? 1 : -1;
}

// posted, or -(errno + 4096 * posted) when ibv_post_* failed at `posted`.
Napi::Value PackedResult(Napi::Env env, size_t posted, size_t n, int err) {
  if (err == 0) return Napi::Number::New(env, static_cast<double>(n));
  return Napi::Number::New(env, -(static_cast<double>(err) + 4096.0 * static_cast<double>(posted)));
}

}  // namespace

namespace {

// One send WR from packed descriptor `d` (postSendPacked's layout) into `w`
// and `sge`, checked; throws on a bad field.
void PackedSendWr(Napi::Env env, const double* d, Napi::Value mrs, ibv_send_wr* wp, ibv_sge* sge) {
  double op = d[1];
  if (!IsIntegerIn(d[0], 0, 9007199254740991.0)) ThrowRange(env, "wrId");
  if (op != IBV_WR_RDMA_WRITE && op != IBV_WR_RDMA_READ && op != IBV_WR_SEND && op != IBV_WR_RDMA_WRITE_WITH_IMM &&
      op != IBV_WR_SEND_WITH_IMM && op != IBV_WR_SEND_WITH_INV && op != IBV_WR_LOCAL_INV) {
    ThrowRange(env, "opcode");
  }
  bool withInv = op == IBV_WR_SEND_WITH_INV || op == IBV_WR_LOCAL_INV;
  if (!SendFlagsOk(d[2])) ThrowRange(env, "sendFlags");
  ibv_send_wr& w = *wp;
  memset(&w, 0, sizeof(w));
  w.wr_id = static_cast<uint64_t>(d[0]);
  w.opcode = static_cast<ibv_wr_opcode>(op);
  w.send_flags = static_cast<unsigned>(d[2]);
  if (op == IBV_WR_RDMA_WRITE_WITH_IMM || op == IBV_WR_SEND_WITH_IMM) {
    if (!IsIntegerIn(d[8], 0, 4294967295.0)) ThrowRange(env, "immediate");
    w.imm_data = htonl(static_cast<uint32_t>(d[8]));
  }
  if (withInv) {
    // d[8]: the rkey to invalidate (the union's other member).
    if (!IsIntegerIn(d[8], 0, 4294967295.0)) ThrowRange(env, "invalidateRkey");
    w.invalidate_rkey = static_cast<uint32_t>(d[8]);
  }
  int count = PackedSge(mrs, d, sge);
  if (count < 0) ThrowRange(env, "local");
  w.num_sge = count;
  w.sg_list = count > 0 ? sge : nullptr;
  if (op != IBV_WR_SEND && op != IBV_WR_SEND_WITH_IMM && !withInv) {
    if (!IsIntegerIn(d[6], 0, 9007199254740991.0)) ThrowRange(env, "remoteAddr");
    if (!IsIntegerIn(d[7], 0, 4294967295.0)) ThrowRange(env, "rkey");
    w.wr.rdma.remote_addr = static_cast<uint64_t>(d[6]);
    w.wr.rdma.rkey = static_cast<uint32_t>(d[7]);
  }
}

}  // namespace

// postSendPacked(desc: Float64Array, mrs: RdmaMr | RdmaMr[], count) ->
// count | -(errno + 4096 * posted): the hot path of WRITE, READ and SEND
// with one local buffer (or none). One JS -> native call per chain, no JS
// array per request, the WRs in storage this QP reuses. remoteAddr is a
// double: lib/rdma/qp.ts sends only addresses below 2^53 this way.
Napi::Value RdmaQp::PostSendPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t n;
  const double* desc = PackedArgs(info, &n);
  if (swr_.size() < n) swr_.resize(n);
  if (sge_.size() < n) sge_.resize(n);
  for (uint32_t i = 0; i < n; i++) {
    PackedSendWr(env, desc + i * kPackStride, info[1], &swr_[i], &sge_[i]);
    swr_[i].next = i + 1 < n ? &swr_[i + 1] : nullptr;
  }
  if (!IsOpen()) return PackedResult(env, 0, n, EBADF);
  ibv_send_wr* bad = nullptr;
  int r = ibv_post_send(qp_, swr_.data(), &bad);
  return PackedResult(env, bad != nullptr && r != 0 ? static_cast<size_t>(bad - swr_.data()) : 0, n, r);
}

// prepare(desc, mr, 1) -> slot: one packed WR (postSendPacked's layout; its
// wrId and IBV_SEND_SIGNALED are set per post), checked once and kept for
// postPrepared. The MR stays registered while the slot lives: lib/rdma/
// prepared.ts holds it until unprepare().
Napi::Value RdmaQp::Prepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t n;
  const double* d = PackedArgs(info, &n);
  auto p = std::make_unique<PreparedWr>();
  PackedSendWr(env, d, info[1], &p->wr, &p->sge);
  if (p->wr.num_sge > 0) p->wr.sg_list = &p->sge;
  p->wr.send_flags &= ~static_cast<unsigned>(IBV_SEND_SIGNALED);
  if (!IsOpen()) ThrowSys(env, EBADF, "ibv_post_send");
  size_t slot = 0;
  while (slot < prep_.size() && prep_[slot] != nullptr) slot++;
  if (slot == prep_.size()) prep_.push_back(nullptr);
  prep_[slot] = std::move(p);
  return Napi::Number::New(env, static_cast<double>(slot));
}

// unprepare(slot): forgets a prepare()d WR.
Napi::Value RdmaQp::Unprepare(const Napi::CallbackInfo& info) {
  uint32_t slot = U32Arg(info, 0);
  if (slot < prep_.size()) prep_[slot].reset();
  return info.Env().Undefined();
}

// postPrepared(slot, count, firstWrId, signalEvery) -> count | -(errno +
// 4096 * posted): `count` copies of a prepare()d WR as one chain, wr_ids
// firstWrId.., the (i + 1)th signaled when signalEvery divides it (0: none).
// Numbers only: the cheapest call into the addon that posts (the latency
// path), and nothing built per request but the chain's links.
Napi::Value RdmaQp::PostPrepared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t slot = U32Arg(info, 0);
  uint32_t n = U32Arg(info, 1);
  double first = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  uint32_t every = U32Arg(info, 3);
  if (slot >= prep_.size() || prep_[slot] == nullptr) ThrowRange(env, "slot");
  if (n < 1 || n > 65536) ThrowRange(env, "count");
  if (!IsIntegerIn(first, 0, 9007199254740991.0 - n)) ThrowRange(env, "wrId");
  if (!IsOpen()) return PackedResult(env, 0, n, EBADF);
  const ibv_send_wr& tmpl = prep_[slot]->wr;
  if (swr_.size() < n) swr_.resize(n);
  uint64_t id = static_cast<uint64_t>(first);
  for (uint32_t i = 0; i < n; i++) {
    ibv_send_wr& w = swr_[i];
    w = tmpl;
    w.wr_id = id + i;
    if (every != 0 && (i + 1) % every == 0) w.send_flags |= IBV_SEND_SIGNALED;
    w.next = i + 1 < n ? &swr_[i + 1] : nullptr;
  }
  ibv_send_wr* bad = nullptr;
  int r = ibv_post_send(qp_, swr_.data(), &bad);
  return PackedResult(env, bad != nullptr && r != 0 ? static_cast<size_t>(bad - swr_.data()) : 0, n, r);
}

namespace {

// postRecv([[wrId, mr | [[mr, offset, length], ...] | null, offset, length], ...])
// -> [posted, 0 | -errno], through `post` (ibv_post_recv or ibv_post_srq_recv).
template <typename Post>
Napi::Value PostRecvList(const Napi::CallbackInfo& info, bool open, Post post) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowType(env, "wrs");
  Napi::Array list = info[0].As<Napi::Array>();
  uint32_t n = list.Length();
  if (n == 0) return PostResult(env, 0, 0);
  std::vector<ibv_recv_wr> wr(n);
  std::vector<ibv_sge> sge;
  sge.reserve(SgeCapacity(list, 1));
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value ev = list.Get(i);
    if (!ev.IsArray()) ThrowType(env, "wr");
    Napi::Array e = ev.As<Napi::Array>();
    double id = NumAt(e, 0);
    if (!IsIntegerIn(id, 0, 9007199254740991.0)) ThrowRange(env, "wrId");
    ibv_recv_wr& w = wr[i];
    memset(&w, 0, sizeof(w));
    w.wr_id = static_cast<uint64_t>(id);
    w.next = i + 1 < n ? &wr[i + 1] : nullptr;
    SetSges(env, e, 1, &sge, &w);
  }
  if (!open) return PostResult(env, 0, EBADF);
  ibv_recv_wr* bad = nullptr;
  int r = post(wr.data(), &bad);
  if (r == 0) return PostResult(env, n, 0);
  return PostResult(env, bad != nullptr ? static_cast<size_t>(bad - wr.data()) : 0, r);
}

// postRecvPacked(desc, mrs, count) -> as postSendPacked (slots 0, 3, 4, 5),
// in `rs`, through `post`.
template <typename Post>
Napi::Value PostRecvPackedIn(const Napi::CallbackInfo& info, RecvStorage* rs, bool open, Post post) {
  Napi::Env env = info.Env();
  uint32_t n;
  const double* desc = PackedArgs(info, &n);
  if (rs->wr.size() < n) rs->wr.resize(n);
  if (rs->sge.size() < n) rs->sge.resize(n);
  for (uint32_t i = 0; i < n; i++) {
    const double* d = desc + i * kPackStride;
    if (!IsIntegerIn(d[0], 0, 9007199254740991.0)) ThrowRange(env, "wrId");
    ibv_recv_wr& w = rs->wr[i];
    memset(&w, 0, sizeof(w));
    w.wr_id = static_cast<uint64_t>(d[0]);
    int count = PackedSge(info[1], d, &rs->sge[i]);
    if (count < 0) ThrowRange(env, "local");
    w.num_sge = count;
    w.sg_list = count > 0 ? &rs->sge[i] : nullptr;
    w.next = i + 1 < n ? &rs->wr[i + 1] : nullptr;
  }
  if (!open) return PackedResult(env, 0, n, EBADF);
  ibv_recv_wr* bad = nullptr;
  int r = post(rs->wr.data(), &bad);
  return PackedResult(env, bad != nullptr && r != 0 ? static_cast<size_t>(bad - rs->wr.data()) : 0, n, r);
}

}  // namespace

Napi::Value RdmaQp::PostRecv(const Napi::CallbackInfo& info) {
  return PostRecvList(info, IsOpen(), [this](ibv_recv_wr* wr, ibv_recv_wr** bad) { return ibv_post_recv(qp_, wr, bad); });
}

Napi::Value RdmaQp::PostRecvPacked(const Napi::CallbackInfo& info) {
  return PostRecvPackedIn(info, &rs_, IsOpen(), [this](ibv_recv_wr* wr, ibv_recv_wr** bad) { return ibv_post_recv(qp_, wr, bad); });
}

// ---------------------------------------------------------------------------
// SRQ

// new Srq(pd, { maxWr, maxSge }): a shared receive queue; QPs created with
// it take their receives from it.
RdmaSrq::RdmaSrq(const Napi::CallbackInfo& info) : ResourceWrap<RdmaSrq>(info) {
  Napi::Env env = info.Env();
  v_ = &VerbsOrThrow(env);
  RdmaPd* pd = OpenParent<RdmaPd>(info, 0, "ibv_create_srq");
  if (!info[1].IsObject()) ThrowType(env, "attr");
  Napi::Object o = info[1].As<Napi::Object>();
  ibv_srq_init_attr a = {};
  bool p;
  a.attr.max_wr = U32Of(o, "maxWr", &p);
  a.attr.max_sge = U32Of(o, "maxSge", &p);
  errno = 0;
  srq_ = v_->create_srq(pd->pd(), &a);
  if (srq_ == nullptr) ThrowSys(env, errno != 0 ? errno : EINVAL, "ibv_create_srq");
  max_wr_ = a.attr.max_wr;  // what the provider granted
  max_sge_ = a.attr.max_sge;
  handle_ = srq_->handle;
  AddParent(pd, info[0].As<Napi::Object>());
}

Napi::Function RdmaSrq::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&RdmaSrq::PostRecv>("postRecv"));
  props.push_back(InstanceMethod<&RdmaSrq::PostRecvPacked>("postRecvPacked"));
  props.push_back(InstanceMethod<&RdmaSrq::SetLimit>("setLimit"));
  props.push_back(InstanceAccessor<&RdmaSrq::GetAttr>("attr"));
  return DefineClass(env, "RdmaSrq", props);
}

int RdmaSrq::Teardown() {
  int r = v_->destroy_srq(srq_);
  srq_ = nullptr;
  return r == 0 ? 0 : -r;
}

Napi::Value RdmaSrq::GetAttr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("maxWr", max_wr_);
  o.Set("maxSge", max_sge_);
  o.Set("handle", handle_);
  return o;
}

// setLimit(n) -> 0 or -errno: arms IBV_EVENT_SRQ_LIMIT_REACHED for when
// fewer than n receives are left (ibv_modify_srq IBV_SRQ_LIMIT).
Napi::Value RdmaSrq::SetLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t limit = U32Arg(info, 0);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  ibv_srq_attr a = {};
  a.srq_limit = limit;
  int r = v_->modify_srq(srq_, &a, IBV_SRQ_LIMIT);
  return Napi::Number::New(env, r == 0 ? 0 : -(r > 0 ? r : errno));
}

Napi::Value RdmaSrq::PostRecv(const Napi::CallbackInfo& info) {
  return PostRecvList(info, IsOpen(), [this](ibv_recv_wr* wr, ibv_recv_wr** bad) { return ibv_post_srq_recv(srq_, wr, bad); });
}

Napi::Value RdmaSrq::PostRecvPacked(const Napi::CallbackInfo& info) {
  return PostRecvPackedIn(info, &rs_, IsOpen(), [this](ibv_recv_wr* wr, ibv_recv_wr** bad) { return ibv_post_srq_recv(srq_, wr, bad); });
}

// ---------------------------------------------------------------------------
// MW

// new Mw(pd, type = 1): a type 1 or type 2 memory window (ibv_alloc_mw, an
// inline verb through the provider's ops: EOPNOTSUPP where it has none).
RdmaMw::RdmaMw(const Napi::CallbackInfo& info) : ResourceWrap<RdmaMw>(info) {
  Napi::Env env = info.Env();
  VerbsOrThrow(env);
  double type = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 1;
  if (type != 1 && type != 2) ThrowRange(env, "type");
  RdmaPd* pd = OpenParent<RdmaPd>(info, 0, "ibv_alloc_mw");
  errno = 0;
  mw_ = ibv_alloc_mw(pd->pd(), type == 2 ? IBV_MW_TYPE_2 : IBV_MW_TYPE_1);
  if (mw_ == nullptr) ThrowSys(env, errno != 0 ? errno : EOPNOTSUPP, "ibv_alloc_mw");
  AddParent(pd, info[0].As<Napi::Object>());
}

Napi::Function RdmaMw::Define(Napi::Env env) { return DefineClass(env, "RdmaMw", ResourceMethods()); }

int RdmaMw::Teardown() {
  int r = ibv_dealloc_mw(mw_);
  mw_ = nullptr;
  return r == 0 ? 0 : -r;
}

// bindMw(mw, mr, wrId, offset, length, access) -> the window's new rkey, or
// -errno: a signaled bind WR on this QP. Type 1: ibv_bind_mw. Type 2: an
// IBV_WR_BIND_MW through ibv_post_send with the next rkey (ibv_inc_rkey);
// the ibv_mw keeps it, as the provider reads the current one from there.
Napi::Value RdmaQp::BindMw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RdmaMw* mw = UnwrapResource<RdmaMw>(info[0]);
  if (mw == nullptr || !mw->IsOpen()) ThrowType(env, "mw");
  RdmaMr* mr = UnwrapResource<RdmaMr>(info[1]);
  if (mr == nullptr || !mr->IsOpen() || mr->mr() == nullptr) ThrowType(env, "mr");
  double id = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  double off = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : -1;
  double len = info[4].IsNumber() ? info[4].As<Napi::Number>().DoubleValue() : -1;
  if (!IsIntegerIn(id, 0, 9007199254740991.0)) ThrowRange(env, "wrId");
  double size = static_cast<double>(mr->mr()->length);
  if (!IsIntegerIn(off, 0, size) || !IsIntegerIn(len, 0, size) || off + len > size) ThrowRange(env, "length");
  ibv_mw_bind b = {};
  b.wr_id = static_cast<uint64_t>(id);
  b.send_flags = IBV_SEND_SIGNALED;
  b.bind_info.mr = mr->mr();
  b.bind_info.addr = reinterpret_cast<uintptr_t>(mr->mr()->addr) + static_cast<uint64_t>(off);
  b.bind_info.length = static_cast<uint64_t>(len);
  b.bind_info.mw_access_flags = U32Arg(info, 5);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  if (mw->mw()->type == IBV_MW_TYPE_2) {
    ibv_send_wr w = {};
    w.wr_id = b.wr_id;
    w.opcode = IBV_WR_BIND_MW;
    w.send_flags = IBV_SEND_SIGNALED;
    w.bind_mw.mw = mw->mw();
    w.bind_mw.rkey = ibv_inc_rkey(mw->mw()->rkey);
    w.bind_mw.bind_info = b.bind_info;
    ibv_send_wr* bad = nullptr;
    int r = ibv_post_send(qp_, &w, &bad);
    if (r != 0) return Napi::Number::New(env, -static_cast<double>(r));
    mw->mw()->rkey = w.bind_mw.rkey;
    return Napi::Number::New(env, static_cast<double>(w.bind_mw.rkey));
  }
  int r = ibv_bind_mw(qp_, mw->mw(), &b);
  return Napi::Number::New(env, r == 0 ? static_cast<double>(mw->mw()->rkey) : -static_cast<double>(r));
}

// ---------------------------------------------------------------------------
// AH

// attachMcast(gid: 16 bytes, lid) / detachMcast -> 0 or -errno: a UD QP
// joins (leaves) a multicast group's receives (ibv_attach_mcast). rdma_cm
// attaches only a QP it made itself; ours are attached here.
Napi::Value RdmaQp::AttachMcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* d;
  size_t n;
  if (!BytesOf(info[0], &d, &n) || n != 16) ThrowType(env, "gid");
  uint32_t lid = U32Arg(info, 1);
  if (lid > 0xffff) ThrowRange(env, "lid");
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  ibv_gid gid;
  memcpy(gid.raw, d, 16);
  int r = v_->attach_mcast(qp_, &gid, static_cast<uint16_t>(lid));
  return Napi::Number::New(env, r == 0 ? 0 : -(r > 0 ? r : errno));
}

Napi::Value RdmaQp::DetachMcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* d;
  size_t n;
  if (!BytesOf(info[0], &d, &n) || n != 16) ThrowType(env, "gid");
  uint32_t lid = U32Arg(info, 1);
  if (lid > 0xffff) ThrowRange(env, "lid");
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  ibv_gid gid;
  memcpy(gid.raw, d, 16);
  int r = v_->detach_mcast(qp_, &gid, static_cast<uint16_t>(lid));
  return Napi::Number::New(env, r == 0 ? 0 : -(r > 0 ? r : errno));
}

// new Ah(pd, { dlid, sl, portNum, dgid, sgidIndex, hopLimit }): an address
// handle, the destination of UD sends. new Ah(pd, { grh: 40 bytes,
// portNum, sl, flags }): the way back to a UD message's sender
// (ibv_create_ah_from_wc, from the GRH that preceded it and its completion).
RdmaAh::RdmaAh(const Napi::CallbackInfo& info) : ResourceWrap<RdmaAh>(info) {
  Napi::Env env = info.Env();
  v_ = &VerbsOrThrow(env);
  RdmaPd* pd = OpenParent<RdmaPd>(info, 0, "ibv_create_ah");
  if (!info[1].IsObject()) ThrowType(env, "attr");
  Napi::Object o = info[1].As<Napi::Object>();
  Napi::Value grhv = o.Get("grh");
  errno = 0;
  if (!grhv.IsUndefined()) {
    uint8_t* d;
    size_t n;
    if (!BytesOf(grhv, &d, &n) || n < sizeof(ibv_grh)) ThrowType(env, "grh");
    bool p;
    uint32_t port = U32Of(o, "portNum", &p);
    if (port < 1 || port > 255) ThrowRange(env, "portNum");
    ibv_grh grh;
    memcpy(&grh, d, sizeof grh);
    ibv_wc wc = {};
    wc.wc_flags = U32Of(o, "flags", &p);
    wc.sl = static_cast<uint8_t>(U32Of(o, "sl", &p));
    ah_ = v_->create_ah_from_wc(pd->pd(), &wc, &grh, static_cast<uint8_t>(port));
    if (ah_ == nullptr) ThrowSys(env, errno != 0 ? errno : EINVAL, "ibv_create_ah_from_wc");
    AddParent(pd, info[0].As<Napi::Object>());
    return;
  }
  ibv_ah_attr a = {};
  AhAttrOf(o, &a);
  ah_ = v_->create_ah(pd->pd(), &a);
  if (ah_ == nullptr) ThrowSys(env, errno != 0 ? errno : EINVAL, "ibv_create_ah");
  AddParent(pd, info[0].As<Napi::Object>());
}

Napi::Function RdmaAh::Define(Napi::Env env) { return DefineClass(env, "RdmaAh", ResourceMethods()); }

int RdmaAh::Teardown() {
  int r = v_->destroy_ah(ah_);
  ah_ = nullptr;
  return r == 0 ? 0 : -r;
}

// ---------------------------------------------------------------------------
// Module

namespace {

std::string Guid(__be64 g) {
  uint64_t v = be64toh(g);
  char s[20];
  snprintf(s, sizeof s, "%04x:%04x:%04x:%04x", static_cast<unsigned>(v >> 48), static_cast<unsigned>((v >> 32) & 0xffff),
           static_cast<unsigned>((v >> 16) & 0xffff), static_cast<unsigned>(v & 0xffff));
  return s;
}

// rdmaDevices() -> [{ name, guid, nodeType, transportType }] as libibverbs
// sees them (it needs the provider of each device).
Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Verbs& v = VerbsOrThrow(env);
  int n = 0;
  ibv_device** list = v.get_device_list(&n);
  if (list == nullptr) ThrowSys(env, errno, "ibv_get_device_list");
  Napi::Array out = Napi::Array::New(env, n);
  for (int i = 0; i < n; i++) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", v.get_device_name(list[i]));
    d.Set("guid", Guid(v.get_device_guid(list[i])));
    d.Set("nodeType", static_cast<int>(list[i]->node_type));
    d.Set("transportType", static_cast<int>(list[i]->transport_type));
    out.Set(static_cast<uint32_t>(i), d);
  }
  v.free_device_list(list);
  return out;
}

// rdmaLibrary(which) -> { ok, dmabuf } | { ok: false, library, symbol, dlerror }
Napi::Value Library(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string which = info[0].ToString();
  std::string lib, sym, err;
  Napi::Object o = Napi::Object::New(env);
  bool ok;
  if (which == "rdmacm") {
    ok = LoadRdmaCm(&lib, &sym, &err) != nullptr;
  } else {
    const Verbs* v = LoadVerbs(&lib, &sym, &err);
    ok = v != nullptr;
    if (ok) o.Set("dmabuf", v->reg_dmabuf_mr != nullptr);
  }
  o.Set("ok", ok);
  if (!ok) {
    o.Set("library", lib);
    if (!sym.empty()) o.Set("symbol", sym);
    o.Set("dlerror", err);
  }
  return o;
}

Napi::Value WcStatusStr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Verbs& v = VerbsOrThrow(env);
  return Napi::String::New(env, v.wc_status_str(static_cast<ibv_wc_status>(U32Arg(info, 0))));
}

}  // namespace

void InitRdma(Napi::Env env, Napi::Object exports) {
  exports.Set("RdmaContext", RdmaContext::Define(env));
  exports.Set("RdmaPd", RdmaPd::Define(env));
  exports.Set("RdmaMr", RdmaMr::Define(env));
  exports.Set("RdmaCq", RdmaCq::Define(env));
  exports.Set("RdmaQp", RdmaQp::Define(env));
  exports.Set("RdmaSrq", RdmaSrq::Define(env));
  exports.Set("RdmaAh", RdmaAh::Define(env));
  exports.Set("RdmaMw", RdmaMw::Define(env));
  exports.Set("rdmaDevices", Napi::Function::New(env, Devices, "rdmaDevices"));
  exports.Set("rdmaLibrary", Napi::Function::New(env, Library, "rdmaLibrary"));
  exports.Set("rdmaWcStatusStr", Napi::Function::New(env, WcStatusStr, "rdmaWcStatusStr"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("IBV_ACCESS_LOCAL_WRITE", static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  c.Set("IBV_ACCESS_REMOTE_WRITE", static_cast<int>(IBV_ACCESS_REMOTE_WRITE));
  c.Set("IBV_ACCESS_REMOTE_READ", static_cast<int>(IBV_ACCESS_REMOTE_READ));
  c.Set("IBV_ACCESS_REMOTE_ATOMIC", static_cast<int>(IBV_ACCESS_REMOTE_ATOMIC));
  c.Set("IBV_WR_RDMA_WRITE", static_cast<int>(IBV_WR_RDMA_WRITE));
  c.Set("IBV_WR_RDMA_READ", static_cast<int>(IBV_WR_RDMA_READ));
  c.Set("IBV_WR_SEND", static_cast<int>(IBV_WR_SEND));
  c.Set("IBV_WR_RDMA_WRITE_WITH_IMM", static_cast<int>(IBV_WR_RDMA_WRITE_WITH_IMM));
  c.Set("IBV_WR_SEND_WITH_IMM", static_cast<int>(IBV_WR_SEND_WITH_IMM));
  c.Set("IBV_SEND_INLINE", static_cast<int>(IBV_SEND_INLINE));
  c.Set("IBV_SEND_SIGNALED", static_cast<int>(IBV_SEND_SIGNALED));
  c.Set("IBV_SEND_FENCE", static_cast<int>(IBV_SEND_FENCE));
  c.Set("IBV_SEND_SOLICITED", static_cast<int>(IBV_SEND_SOLICITED));
  c.Set("IBV_QPT_RC", static_cast<int>(IBV_QPT_RC));
  c.Set("IBV_QPT_UD", static_cast<int>(IBV_QPT_UD));
  c.Set("IBV_QPT_UC", static_cast<int>(IBV_QPT_UC));
  c.Set("IBV_WC_GRH", static_cast<int>(IBV_WC_GRH));
  c.Set("IBV_ACCESS_ON_DEMAND", static_cast<int>(IBV_ACCESS_ON_DEMAND));
  c.Set("IBV_ACCESS_MW_BIND", static_cast<int>(IBV_ACCESS_MW_BIND));
  c.Set("IBV_WR_ATOMIC_CMP_AND_SWP", static_cast<int>(IBV_WR_ATOMIC_CMP_AND_SWP));
  c.Set("IBV_WR_ATOMIC_FETCH_AND_ADD", static_cast<int>(IBV_WR_ATOMIC_FETCH_AND_ADD));
  c.Set("IBV_WC_WITH_IMM", static_cast<int>(IBV_WC_WITH_IMM));
  c.Set("IBV_WC_WITH_INV", static_cast<int>(IBV_WC_WITH_INV));
  c.Set("IBV_WC_IP_CSUM_OK", static_cast<int>(IBV_WC_IP_CSUM_OK));
  c.Set("IBV_WR_SEND_WITH_INV", static_cast<int>(IBV_WR_SEND_WITH_INV));
  c.Set("IBV_WR_LOCAL_INV", static_cast<int>(IBV_WR_LOCAL_INV));
  c.Set("RDMA_PS_TCP", static_cast<int>(RDMA_PS_TCP));
  c.Set("RDMA_PS_UDP", static_cast<int>(RDMA_PS_UDP));
  c.Set("IBV_WC_RECV_RDMA_WITH_IMM", static_cast<int>(IBV_WC_RECV_RDMA_WITH_IMM));
  c.Set("IBV_QPS_RESET", static_cast<int>(IBV_QPS_RESET));
  c.Set("IBV_QPS_INIT", static_cast<int>(IBV_QPS_INIT));
  c.Set("IBV_QPS_RTR", static_cast<int>(IBV_QPS_RTR));
  c.Set("IBV_QPS_RTS", static_cast<int>(IBV_QPS_RTS));
  c.Set("IBV_QPS_ERR", static_cast<int>(IBV_QPS_ERR));
  exports.Set("rdmaConstants", c);
}

}  // namespace p2pdma
