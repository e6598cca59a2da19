// RDMA verbs objects (behind lib/rdma/): device context, protection
// domain, memory region, completion queue with its channel, RC queue pair.
// Each is a Resource whose parents outlive it (MR -> PD -> context, QP ->
// PD and CQs, CQ -> context), so the close order is enforced here: closing
// a parent with open children defers its teardown until theirs has run.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "rdma_lib.h"
#include "../core/resource.h"

namespace p2pdma {

class RdmaContext : public ResourceWrap<RdmaContext> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'6374'7801ULL, 0x51c2'9e04'7ab3'd611ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaContext(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_context* ctx() const { return ctx_; }

 protected:
  int Teardown() override;

 private:
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value QueryEx(const Napi::CallbackInfo& info);
  Napi::Value QueryPort(const Napi::CallbackInfo& info);
  Napi::Value QueryGid(const Napi::CallbackInfo& info);
  Napi::Value QueryGidTable(const Napi::CallbackInfo& info);
  Napi::Value GetAsyncEvent(const Napi::CallbackInfo& info);
  Napi::Value GetAsyncFd(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  ibv_context* ctx_ = nullptr;
  int async_fd_ = -1;
};

class RdmaPd : public ResourceWrap<RdmaPd> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'7064'0002ULL, 0x0a6e'f3b1'92d4'c7e2ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaPd(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_pd* pd() const { return pd_; }

 protected:
  int Teardown() override;

 private:
  const Verbs* v_ = nullptr;
  ibv_pd* pd_ = nullptr;
};

class RdmaMr : public ResourceWrap<RdmaMr> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'6d72'0003ULL, 0xd93a'5e17'c0b2'48f4ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaMr(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_mr* mr() const { return mr_; }
  // Set by the registration worker on the JS thread.
  void Adopt(ibv_mr* mr) { mr_ = mr; }
  ibv_pd* pd() const { return pd_; }
  const Verbs* verbs() const { return v_; }

 protected:
  int Teardown() override;

 private:
  Napi::Value Register(const Napi::CallbackInfo& info);
  Napi::Value RegisterAsync(const Napi::CallbackInfo& info);
  Napi::Value RegisterDmaBuf(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value PollByte(const Napi::CallbackInfo& info);
  void KeepTarget(Napi::Value v);
  const Verbs* v_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_mr* mr_ = nullptr;
  // mr_->addr is this process's address of the memory (not a dma-buf's iova).
  bool cpu_ = false;
  Napi::ObjectReference target_;
};

class RdmaCq : public ResourceWrap<RdmaCq> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'6371'0004ULL, 0x6b0f'd2a8'13e5'9c77ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaCq(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_cq* cq() const { return cq_; }

 protected:
  int Teardown() override;

 private:
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value DrainInto(const Napi::CallbackInfo& info);
  int Rearm();
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetCqe(const Napi::CallbackInfo& info);
  Napi::Value GetHandle(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  ibv_comp_channel* ch_ = nullptr;
  ibv_cq* cq_ = nullptr;  // null once torn down
  unsigned unacked_ = 0;
  int fd_ = -1;
  int cqe_ = 0;
  uint32_t handle_ = 0;
  int solicited_ = 0;
};

// The receive-posting storage of a QP or SRQ: grown to the largest batch
// and reused, nothing allocated per request.
struct RecvStorage {
  std::vector<ibv_recv_wr> wr;
  std::vector<ibv_sge> sge;
};

class RdmaSrq : public ResourceWrap<RdmaSrq> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'7372'0006ULL, 0x8c41'0e9b'57d2'a3f1ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaSrq(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_srq* srq() const { return srq_; }

 protected:
  int Teardown() override;

 private:
  Napi::Value PostRecv(const Napi::CallbackInfo& info);
  Napi::Value PostRecvPacked(const Napi::CallbackInfo& info);
  Napi::Value SetLimit(const Napi::CallbackInfo& info);
  Napi::Value GetAttr(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  ibv_srq* srq_ = nullptr;
  uint32_t max_wr_ = 0, max_sge_ = 0, handle_ = 0;
  RecvStorage rs_;
};

class RdmaMw : public ResourceWrap<RdmaMw> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'6d77'0008ULL, 0x6e15'c3a0'9d42'7b8eULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaMw(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_mw* mw() const { return mw_; }

 protected:
  int Teardown() override;

 private:
  ibv_mw* mw_ = nullptr;
};

class RdmaAh : public ResourceWrap<RdmaAh> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'6168'0007ULL, 0x2d97'b4e0'31fa'6c58ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaAh(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_ah* ah() const { return ah_; }

 protected:
  int Teardown() override;

 private:
  const Verbs* v_ = nullptr;
  ibv_ah* ah_ = nullptr;
};

class RdmaQp : public ResourceWrap<RdmaQp> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x7264'6d61'7170'0005ULL, 0x3fe1'7c90'a45b'2d08ULL};
  static Napi::Function Define(Napi::Env env);
  explicit RdmaQp(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env) override { FinalizeResource(); }
  ibv_qp* qp() const { return qp_; }
  const Verbs* verbs() const { return v_; }

 protected:
  int Teardown() override;

 private:
  Napi::Value Modify(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value BindMw(const Napi::CallbackInfo& info);
  Napi::Value AttachMcast(const Napi::CallbackInfo& info);
  Napi::Value DetachMcast(const Napi::CallbackInfo& info);
  Napi::Value PostSend(const Napi::CallbackInfo& info);
  Napi::Value PostRecv(const Napi::CallbackInfo& info);
  Napi::Value PostSendPacked(const Napi::CallbackInfo& info);
  Napi::Value PostRecvPacked(const Napi::CallbackInfo& info);
  Napi::Value Prepare(const Napi::CallbackInfo& info);
  Napi::Value Unprepare(const Napi::CallbackInfo& info);
  Napi::Value PostPrepared(const Napi::CallbackInfo& info);
  Napi::Value GetQpNum(const Napi::CallbackInfo& info);
  Napi::Value GetCap(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  ibv_qp* qp_ = nullptr;
  ibv_qp_cap cap_ = {};
  uint32_t qp_num_ = 0;
  // The packed posting path's WRs and SGEs, grown to the largest batch and
  // reused: nothing is allocated per request.
  std::vector<ibv_send_wr> swr_;
  std::vector<ibv_sge> sge_;
  RecvStorage rs_;
  // prepare()d WRs, by slot (null: free); the SGE lives beside its WR.
  struct PreparedWr {
    ibv_send_wr wr;
    ibv_sge sge;
  };
  std::vector<std::unique_ptr<PreparedWr>> prep_;
};

}  // namespace p2pdma
