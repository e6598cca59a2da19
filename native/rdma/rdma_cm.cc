// rdma_cm behind lib/rdma/cm.ts: an event channel (its fd polled by
// lib/core/poll.ts on the event loop, never a pool thread) and the ids on it.
//
// Our QPs are created on our own ibv_context (lib/rdma/), not by
// rdma_create_qp on librdmacm's: the ids only carry the connection, and
// their QP attributes go to our QP through rdma_init_qp_attr, as librdmacm
// documents for users that create their own QPs. Events are acked as soon
// as they are copied out, so rdma_destroy_id never waits on one.
#include <arpa/inet.h>
#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include <algorithm>

#include "../core/errors.h"
#include "../core/modules.h"
#include "rdma.h"
#include "../core/resource.h"

namespace p2pdma {
namespace {

class CmChannel : public ResourceWrap<CmChannel> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'636d'6301ULL, 0x8e27'b4c1'f03d'5a96ULL};
  static Napi::Function Define(Napi::Env env);
  explicit CmChannel(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  rdma_event_channel* ch() const { return ch_; }

 protected:
  int Teardown() override {
    c_->destroy_event_channel(ch_);
    ch_ = nullptr;
    return 0;
  }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetEvent(const Napi::CallbackInfo& info);
  const RdmaCm* c_ = nullptr;
  rdma_event_channel* ch_ = nullptr;
  int fd_ = -1;
};

class CmId : public ResourceWrap<CmId> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'636d'6902ULL, 0x1d94'60ea'7b38'c2f5ULL};
  static Napi::Function Define(Napi::Env env);
  // new CmId(channel) creates an id; new CmId(channel, external) adopts
  // one librdmacm made for a connect request.
  explicit CmId(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }

 protected:
  int Teardown() override {
    int r = c_->destroy_id(id_);
    return r == 0 ? 0 : -errno;
  }

 private:
  Napi::Value Bind(const Napi::CallbackInfo& info);
  Napi::Value Listen(const Napi::CallbackInfo& info);
  Napi::Value ResolveAddr(const Napi::CallbackInfo& info);
  Napi::Value ResolveRoute(const Napi::CallbackInfo& info);
  Napi::Value InitQp(const Napi::CallbackInfo& info);
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value Accept(const Napi::CallbackInfo& info);
  Napi::Value Reject(const Napi::CallbackInfo& info);
  Napi::Value Establish(const Napi::CallbackInfo& info);
  Napi::Value Disconnect(const Napi::CallbackInfo& info);
  Napi::Value JoinMulticast(const Napi::CallbackInfo& info);
  Napi::Value LeaveMulticast(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  const RdmaCm* c_ = nullptr;
  const Verbs* v_ = nullptr;
  rdma_cm_id* id_ = nullptr;
};

// An IPv4 or IPv6 literal and a port as a sockaddr; false if not a literal.
bool ToSockaddr(const std::string& addr, uint32_t port, sockaddr_storage* ss) {
  memset(ss, 0, sizeof *ss);
  auto* in4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, addr.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    return true;
  }
  if (inet_pton(AF_INET6, addr.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    return true;
  }
  return false;
}

Napi::Value FromSockaddr(Napi::Env env, const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  Napi::Object o = Napi::Object::New(env);
  if (sa->sa_family == AF_INET) {
    auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf);
    o.Set("address", buf);
    o.Set("port", ntohs(in4->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    o.Set("address", buf);
    o.Set("port", ntohs(in6->sin6_port));
  } else {
    return env.Undefined();
  }
  return o;
}

Napi::Value Result(Napi::Env env, int r) { return Napi::Number::New(env, r == 0 ? 0 : -(errno != 0 ? errno : EINVAL)); }

// A UD event's peer or group: { ah: as RdmaAh takes it, qpNum, qkey }.
Napi::Object UdParam(Napi::Env env, const rdma_ud_param& ud) {
  Napi::Object ah = Napi::Object::New(env);
  const ibv_ah_attr& a = ud.ah_attr;
  ah.Set("dlid", a.dlid);
  ah.Set("sl", a.sl);
  ah.Set("portNum", a.port_num);
  if (a.is_global) {
    ah.Set("dgid", Napi::Buffer<uint8_t>::Copy(env, a.grh.dgid.raw, 16));
    ah.Set("sgidIndex", a.grh.sgid_index);
    ah.Set("hopLimit", a.grh.hop_limit);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("ah", ah);
  o.Set("qpNum", ud.qp_num);
  o.Set("qkey", ud.qkey);
  return o;
}

// ---------------------------------------------------------------------------

CmChannel::CmChannel(const Napi::CallbackInfo& info) : ResourceWrap<CmChannel>(info) {
  Napi::Env env = info.Env();
  c_ = &RdmaCmOrThrow(env);
  errno = 0;
  ch_ = c_->create_event_channel();
  if (ch_ == nullptr) ThrowSys(env, errno != 0 ? errno : ENODEV, "rdma_create_event_channel");
  int fl = ::fcntl(ch_->fd, F_GETFL);
  if (fl == -1 || ::fcntl(ch_->fd, F_SETFL, fl | O_NONBLOCK) == -1) {
    int err = errno;
    c_->destroy_event_channel(ch_);
    ThrowSys(env, err, "fcntl");
  }
  fd_ = ch_->fd;
}

Napi::Function CmChannel::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceAccessor<&CmChannel::GetFd>("fd"));
  props.push_back(InstanceMethod<&CmChannel::GetEvent>("getEvent"));
  return DefineClass(env, "CmChannel", props);
}

// getEvent() -> undefined (none pending) or { event, name, status, id,
// listenId?, privateData? }. A connect request's new id comes as a new CmId
// (child of this channel) in `id`. Works after close() until the teardown:
// ids still on the channel get their events (DISCONNECTED).
Napi::Value CmChannel::GetEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ch_ == nullptr) ThrowSys(env, EBADF, "rdma_get_cm_event");
  rdma_cm_event* ev = nullptr;
  if (c_->get_cm_event(ch_, &ev) != 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Undefined();
    ThrowSys(env, errno, "rdma_get_cm_event", ch_->fd);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("event", static_cast<int>(ev->event));
  o.Set("name", c_->event_str(ev->event));
  o.Set("status", ev->status);
  const rdma_conn_param& cp = ev->param.conn;
  if (cp.private_data != nullptr && cp.private_data_len > 0)
    o.Set("privateData", Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(cp.private_data), cp.private_data_len));
  o.Set("responderResources", cp.responder_resources);
  o.Set("initiatorDepth", cp.initiator_depth);
  // UD (RDMA_PS_UDP): the peer's QP, Q_Key and route (SIDR's ESTABLISHED), or the group's.
  if (ev->id != nullptr && ev->id->ps == RDMA_PS_UDP &&
      (ev->event == RDMA_CM_EVENT_ESTABLISHED || ev->event == RDMA_CM_EVENT_MULTICAST_JOIN))
    o.Set("ud", UdParam(env, ev->param.ud));
  rdma_cm_id* id = ev->id;
  rdma_cm_id* listen = ev->listen_id;
  bool incoming = ev->event == RDMA_CM_EVENT_CONNECT_REQUEST;
  c_->ack_cm_event(ev);
  if (incoming) {
    try {
      o.Set("id", EnvState::Get(env)->rdma_cm_id_class.New({info.This(), Napi::External<rdma_cm_id>::New(env, id)}));
    } catch (...) {
      c_->reject(id, nullptr, 0);
      c_->destroy_id(id);
      throw;
    }
  } else if (id != nullptr && id->context != nullptr) {
    o.Set("id", static_cast<CmId*>(id->context)->Value());
  }
  if (listen != nullptr && listen->context != nullptr) o.Set("listenId", static_cast<CmId*>(listen->context)->Value());
  return o;
}

// ---------------------------------------------------------------------------

CmId::CmId(const Napi::CallbackInfo& info) : ResourceWrap<CmId>(info) {
  Napi::Env env = info.Env();
  c_ = &RdmaCmOrThrow(env);
  v_ = &VerbsOrThrow(env);
  CmChannel* ch = UnwrapResource<CmChannel>(info[0]);
  if (ch == nullptr) ThrowType(env, "channel");
  if (info[1].IsExternal()) {
    id_ = info[1].As<Napi::External<rdma_cm_id>>().Data();
  } else {
    // info[1]: the port space, RDMA_PS_TCP (RC, the default) or RDMA_PS_UDP (UD, multicast).
    double ps = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : static_cast<double>(RDMA_PS_TCP);
    if (ps != RDMA_PS_TCP && ps != RDMA_PS_UDP) ThrowRange(env, "portSpace");
    if (!ch->IsOpen()) ThrowSys(env, EBADF, "rdma_create_id");
    if (c_->create_id(ch->ch(), &id_, nullptr, static_cast<rdma_port_space>(ps)) != 0) ThrowSys(env, errno, "rdma_create_id");
  }
  id_->context = this;
  AddParent(ch, info[0].As<Napi::Object>());
}

Napi::Function CmId::Define(Napi::Env env) {
  auto props = ResourceMethods();
  props.push_back(InstanceMethod<&CmId::Bind>("bind"));
  props.push_back(InstanceMethod<&CmId::Listen>("listen"));
  props.push_back(InstanceMethod<&CmId::ResolveAddr>("resolveAddr"));
  props.push_back(InstanceMethod<&CmId::ResolveRoute>("resolveRoute"));
  props.push_back(InstanceMethod<&CmId::InitQp>("initQp"));
  props.push_back(InstanceMethod<&CmId::Connect>("connect"));
  props.push_back(InstanceMethod<&CmId::Accept>("accept"));
  props.push_back(InstanceMethod<&CmId::Reject>("reject"));
  props.push_back(InstanceMethod<&CmId::Establish>("establish"));
  props.push_back(InstanceMethod<&CmId::Disconnect>("disconnect"));
  props.push_back(InstanceMethod<&CmId::JoinMulticast>("joinMulticast"));
  props.push_back(InstanceMethod<&CmId::LeaveMulticast>("leaveMulticast"));
  props.push_back(InstanceMethod<&CmId::Info>("info"));
  return DefineClass(env, "CmId", props);
}

// bind(address, port) -> 0 | -errno (-EINVAL: not an IP literal).
Napi::Value CmId::Bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string addr = info[0].ToString();
  uint32_t port = U32Arg(info, 1);
  sockaddr_storage ss;
  if (port > 65535 || !ToSockaddr(addr, port, &ss)) return Napi::Number::New(env, -EINVAL);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  errno = 0;
  return Result(env, c_->bind_addr(id_, reinterpret_cast<sockaddr*>(&ss)));
}

Napi::Value CmId::Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int backlog = static_cast<int>(U32Arg(info, 0));
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  errno = 0;
  return Result(env, c_->listen(id_, backlog));
}

// resolveAddr(address, port, timeoutMs) -> 0 | -errno; ADDR_RESOLVED follows.
Napi::Value CmId::ResolveAddr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string addr = info[0].ToString();
  uint32_t port = U32Arg(info, 1);
  uint32_t ms = U32Arg(info, 2);
  sockaddr_storage ss;
  if (port > 65535 || !ToSockaddr(addr, port, &ss)) return Napi::Number::New(env, -EINVAL);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  errno = 0;
  return Result(env, c_->resolve_addr(id_, nullptr, reinterpret_cast<sockaddr*>(&ss), static_cast<int>(ms)));
}

Napi::Value CmId::ResolveRoute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ms = U32Arg(info, 0);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  errno = 0;
  return Result(env, c_->resolve_route(id_, static_cast<int>(ms)));
}

// initQp(qp, state, arg?) -> 0 | -errno: rdma_init_qp_attr for `state`,
// then ibv_modify_qp on our QP. `arg`: INIT's access flags, RTR's
// max_dest_rd_atomic or RTS's max_rd_atomic, when given.
Napi::Value CmId::InitQp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RdmaQp* qp = UnwrapResource<RdmaQp>(info[0]);
  if (qp == nullptr) ThrowType(env, "qp");
  uint32_t state = U32Arg(info, 1);
  if (!IsOpen() || !qp->IsOpen()) return Napi::Number::New(env, -EBADF);
  ibv_qp_attr a = {};
  int mask = 0;
  a.qp_state = static_cast<ibv_qp_state>(state);
  errno = 0;
  if (c_->init_qp_attr(id_, &a, &mask) != 0) return Result(env, -1);
  if (state == IBV_QPS_INIT && info[2].IsNumber()) a.qp_access_flags = U32Arg(info, 2);
  // RTR/RTS: the accepting side's agreed depths, as librdmacm's rdma_accept
  // sets them on its own QPs: the id still holds the REQ's until rdma_accept.
  if (state == IBV_QPS_RTR && info[2].IsNumber() && (mask & IBV_QP_MAX_DEST_RD_ATOMIC))
    a.max_dest_rd_atomic = static_cast<uint8_t>(U32Arg(info, 2));
  if (state == IBV_QPS_RTS && info[2].IsNumber() && (mask & IBV_QP_MAX_QP_RD_ATOMIC))
    a.max_rd_atomic = static_cast<uint8_t>(U32Arg(info, 2));
  int r = qp->verbs()->modify_qp(qp->qp(), &a, mask);
  return Napi::Number::New(env, r == 0 ? 0 : -r);
}

namespace {
// info[3]: private data, a Uint8Array (lib/ checks its size against the
// CM message's limit); librdmacm copies it during the call.
rdma_conn_param ConnParam(const Napi::CallbackInfo& info) {
  rdma_conn_param p = {};
  p.qp_num = U32Arg(info, 0);
  p.responder_resources = static_cast<uint8_t>(U32Arg(info, 1));
  p.initiator_depth = static_cast<uint8_t>(U32Arg(info, 2));
  // info[4], info[5]: retry and RNR retry counts, 0-7 (lib/ checks them).
  p.retry_count = static_cast<uint8_t>(info.Length() > 4 && info[4].IsNumber() ? std::min(info[4].As<Napi::Number>().Uint32Value(), 7u) : 7);
  p.rnr_retry_count = static_cast<uint8_t>(info.Length() > 5 && info[5].IsNumber() ? std::min(info[5].As<Napi::Number>().Uint32Value(), 7u) : 7);
  p.flow_control = 1;
  if (info.Length() > 3 && info[3].IsTypedArray()) {
    Napi::Uint8Array d = info[3].As<Napi::Uint8Array>();
    if (d.TypedArrayType() != napi_uint8_array || d.ByteLength() > 255) ThrowRange(info.Env(), "privateData");
    if (d.ByteLength() > 0) {
      p.private_data = d.Data();
      p.private_data_len = static_cast<uint8_t>(d.ByteLength());
    }
  }
  return p;
}
}  // namespace

// connect(qpNum, responderResources, initiatorDepth, privateData?, retryCount = 7, rnrRetryCount = 7) -> 0 | -errno.
Napi::Value CmId::Connect(const Napi::CallbackInfo& info) {
  rdma_conn_param p = ConnParam(info);
  if (!IsOpen()) return Napi::Number::New(info.Env(), -EBADF);
  errno = 0;
  return Result(info.Env(), c_->connect(id_, &p));
}

Napi::Value CmId::Accept(const Napi::CallbackInfo& info) {
  rdma_conn_param p = ConnParam(info);
  if (!IsOpen()) return Napi::Number::New(info.Env(), -EBADF);
  errno = 0;
  return Result(info.Env(), c_->accept(id_, &p));
}

Napi::Value CmId::Reject(const Napi::CallbackInfo& info) {
  if (!IsOpen()) return Napi::Number::New(info.Env(), -EBADF);
  errno = 0;
  return Result(info.Env(), c_->reject(id_, nullptr, 0));
}

Napi::Value CmId::Establish(const Napi::CallbackInfo& info) {
  if (!IsOpen()) return Napi::Number::New(info.Env(), -EBADF);
  errno = 0;
  return Result(info.Env(), c_->establish(id_));
}

Napi::Value CmId::Disconnect(const Napi::CallbackInfo& info) {
  if (!IsOpen()) return Napi::Number::New(info.Env(), -EBADF);
  errno = 0;
  return Result(info.Env(), c_->disconnect(id_));
}

// joinMulticast(address) / leaveMulticast(address) -> 0 | -errno (-EINVAL:
// not an IP literal). MULTICAST_JOIN (or MULTICAST_ERROR) follows a join;
// lib/ attaches its own QP then, and detaches it before leaving.
Napi::Value CmId::JoinMulticast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string addr = info[0].ToString();
  sockaddr_storage ss;
  if (!ToSockaddr(addr, 0, &ss)) return Napi::Number::New(env, -EINVAL);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  errno = 0;
  return Result(env, c_->join_multicast(id_, reinterpret_cast<sockaddr*>(&ss), nullptr));
}

Napi::Value CmId::LeaveMulticast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string addr = info[0].ToString();
  sockaddr_storage ss;
  if (!ToSockaddr(addr, 0, &ss)) return Napi::Number::New(env, -EINVAL);
  if (!IsOpen()) return Napi::Number::New(env, -EBADF);
  errno = 0;
  return Result(env, c_->leave_multicast(id_, reinterpret_cast<sockaddr*>(&ss)));
}

// info() -> { device?, portNum, local?, remote? }
Napi::Value CmId::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (!IsOpen()) return o;
  if (id_->verbs != nullptr) o.Set("device", v_->get_device_name(id_->verbs->device));
  o.Set("portNum", id_->port_num);
  o.Set("local", FromSockaddr(env, &id_->route.addr.src_addr));
  o.Set("remote", FromSockaddr(env, &id_->route.addr.dst_addr));
  return o;
}

// rdmaGetAddrInfo(node | null, service | null, passive) -> [{ family,
// qpType, portSpace, src?, dst? }], or { gai, errno, message } when
// rdma_getaddrinfo fails (lib/rdma/cm.ts makes the error).
Napi::Value GetAddrInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const RdmaCm& c = RdmaCmOrThrow(env);
  std::string node, service;
  bool hasNode = info[0].IsString(), hasService = info[1].IsString();
  if (hasNode) node = info[0].As<Napi::String>();
  if (hasService) service = info[1].As<Napi::String>();
  rdma_addrinfo hints = {};
  hints.ai_port_space = RDMA_PS_TCP;
  if (info[2].ToBoolean()) hints.ai_flags = RAI_PASSIVE;
  rdma_addrinfo* res = nullptr;
  errno = 0;
  int r = c.getaddrinfo(hasNode ? node.c_str() : nullptr, hasService ? service.c_str() : nullptr, &hints, &res);
  if (r != 0) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("gai", r);
    e.Set("errno", errno);
    e.Set("message", gai_strerror(r));
    return e;
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (rdma_addrinfo* a = res; a != nullptr; a = a->ai_next) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", a->ai_family);
    o.Set("qpType", a->ai_qp_type);
    o.Set("portSpace", a->ai_port_space);
    if (a->ai_src_addr != nullptr) o.Set("src", FromSockaddr(env, a->ai_src_addr));
    if (a->ai_dst_addr != nullptr) o.Set("dst", FromSockaddr(env, a->ai_dst_addr));
    out.Set(i++, o);
  }
  c.freeaddrinfo(res);
  return out;
}

}  // namespace

void InitRdmaCm(Napi::Env env, Napi::Object exports) {
  exports.Set("CmChannel", CmChannel::Define(env));
  Napi::Function id = CmId::Define(env);
  EnvState::Get(env)->rdma_cm_id_class = Napi::Persistent(id);
  exports.Set("CmId", id);
  exports.Set("rdmaGetAddrInfo", Napi::Function::New(env, GetAddrInfo, "rdmaGetAddrInfo"));
}

}  // namespace p2pdma
