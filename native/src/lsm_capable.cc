// LsmCapable: capability rules on bpf-lsm (bpf/lsm_capable.bpf.c).
//
// Loads and attaches lsm/capable (not pinned: the rules end with this
// process), writes decisions to the shared event ring. setRules() replaces
// the rule set as one generation switch (include/ew_capable_abi.h): the new
// entries are written beside the ones in force, the active index flips, then
// the old entries go. setWorkloads() fills the object's `workloads` map
// (containers told apart from the host, include/ew_workload_abi.h).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "event_ring.h"
#include "ew_capable_abi.h"
#include "ew_workload_abi.h"
#include "lsm_capable.skel.h"
#include "modules.h"

namespace edgeward {

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "E?") + ": " + strerror(err);
}

struct CapKeyLess {
  bool operator()(const ew_cap_key& a, const ew_cap_key& b) const {
    return std::tie(a.workload, a.src_dev, a.src_ino, a.cap) < std::tie(b.workload, b.src_dev, b.src_ino, b.cap);
  }
};
using CapRuleSet = std::map<ew_cap_key, ew_cap_value, CapKeyLess>;  // keys with gen 0

struct WorkloadKeyLess {
  bool operator()(const ew_workload_key& a, const ew_workload_key& b) const {
    return std::tie(a.ns_kind, a.ns_inum) < std::tie(b.ns_kind, b.ns_inum);
  }
};
using WorkloadSet = std::map<ew_workload_key, ew_workload_value, WorkloadKeyLess>;

const char kUsage[] = "LsmCapable(ring: EventRing, options: {agentPid: number})";

// Reads fields of element `index` of an array argument; errors name both.
class Reader {
 public:
  Reader(Napi::Env env, std::string where) : env_(env), where_(std::move(where)) {}

  [[noreturn]] void Fail(const char* field, const std::string& want, Napi::Value got) const {
    std::string shown = got.IsUndefined() ? "undefined" : got.IsBigInt() ? got.ToString().Utf8Value() + "n" : got.ToString().Utf8Value();
    throw Napi::TypeError::New(env_, where_ + "." + field + " must be " + want + ", got " + shown);
  }

  uint64_t BigU64(Napi::Object o, const char* field) const {
    Napi::Value v = o.Get(field);
    bool lossless = false;
    uint64_t n = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    if (!v.IsBigInt() || !lossless) Fail(field, "a bigint in 0n..2n**64n-1n", v);
    return n;
  }

  uint32_t U32(Napi::Object o, const char* field, double lo, double hi, const std::string& want) const {
    Napi::Value v = o.Get(field);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!v.IsNumber() || !(d >= lo && d <= hi) || d != static_cast<double>(static_cast<uint32_t>(d))) Fail(field, want, v);
    return static_cast<uint32_t>(d);
  }

 private:
  Napi::Env env_;
  std::string where_;
};

}  // namespace

class LsmCapable {
 public:
  LsmCapable(std::shared_ptr<EventRing> ring, uint32_t agent_tgid) : ring_(std::move(ring)) {
    try {
      Open(agent_tgid);
    } catch (...) {
      Destroy();
      throw;
    }
  }
  ~LsmCapable() { Destroy(); }

  void SetRules(const CapRuleSet& rules) {
    if (rules.size() > EW_CAP_MAX_ENTRIES) {
      throw std::range_error("LsmCapable.setRules: " + std::to_string(rules.size()) + " entries, at most " +
                             std::to_string(EW_CAP_MAX_ENTRIES) + "; nothing changed");
    }
    const uint32_t next = gen_ ^ 1;
    const int fd = bpf_map__fd(skel_->maps.cap_rules);
    if (stale_) {
      // entries of the generation about to be written, left by a switch whose wait failed
      for (const auto& [k, v] : previous_) {
        ew_cap_key key = k;
        key.gen = next;
        bpf_map_delete_elem(fd, &key);
      }
      stale_ = false;
    }
    ew_cap_gen_info info = {};
    std::vector<ew_cap_key> written;
    for (const auto& [k, v] : rules) {
      ew_cap_key key = k;
      key.gen = next;
      if (bpf_map_update_elem(fd, &key, &v, BPF_ANY) != 0) {
        int err = errno;
        for (const ew_cap_key& w : written) bpf_map_delete_elem(fd, &w);  // the set in force stays
        throw std::runtime_error("LsmCapable.setRules: writing an entry failed: " + ErrnoText(err) + "; nothing changed");
      }
      written.push_back(key);
      info.caps |= 1ULL << key.cap;
      if (key.src_ino != 0) info.sourced |= 1ULL << key.cap;
    }
    info.entries = static_cast<uint32_t>(rules.size());
    info.generation = ++generation_;
    const uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.cap_gen_info), &next, &info, BPF_ANY) != 0 ||
        bpf_map_update_elem(bpf_map__fd(skel_->maps.cap_active), &zero, &next, BPF_ANY) != 0) {
      int err = errno;
      for (const ew_cap_key& w : written) bpf_map_delete_elem(fd, &w);
      throw std::runtime_error("LsmCapable.setRules: switching to the new rules failed: " + ErrnoText(err) + "; nothing changed");
    }
    gen_ = next;
    // New checks read the new generation; wait for the ones in flight (see
    // cap_sync in the program) before the old generation's entries go.
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.cap_sync), &zero, &sync_inner_fd_, BPF_ANY) != 0) {
      // keep the old entries rather than risk a check missing them; the next switch overwrites them
      previous_ = current_;
      current_ = rules;
      stale_ = true;
      return;
    }
    for (const auto& [k, v] : current_) {
      ew_cap_key key = k;
      key.gen = next ^ 1;
      bpf_map_delete_elem(fd, &key);
    }
    previous_.clear();
    current_ = rules;
  }

  // New and changed entries first, then stale ones (a container that stays keeps its entry).
  void SetWorkloads(const WorkloadSet& workloads) {
    const int fd = bpf_map__fd(skel_->maps.workloads);
    for (const auto& [key, value] : workloads) {
      if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
        throw std::runtime_error("LsmCapable.setWorkloads: adding namespace " + std::to_string(key.ns_inum) + " failed: " + ErrnoText(errno));
      }
    }
    for (const auto& [key, value] : workloads_) {
      if (workloads.count(key) == 0 && bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
        throw std::runtime_error("LsmCapable.setWorkloads: removing a stale namespace failed: " + ErrnoText(errno));
      }
    }
    workloads_ = workloads;
  }

  size_t RuleCount() const { return current_.size(); }
  uint64_t Generation() const { return generation_; }
  size_t WorkloadCount() const { return workloads_.size(); }
  const std::vector<uint32_t>& MapIds() const { return map_ids_; }
  bool Attached() const { return link_ != nullptr; }

 private:
  void Open(uint32_t agent_tgid) {
    skel_ = lsm_capable::open();
    if (skel_ == nullptr) throw std::runtime_error("LsmCapable: opening the BPF object failed: " + ErrnoText(errno));
    int err = ring_->ReuseMaps(skel_->obj);
    if (err != 0) throw std::runtime_error("LsmCapable: reusing the event ring's maps failed: " + ErrnoText(-err));
    err = lsm_capable::load(skel_);
    if (err != 0) {
      throw std::runtime_error("LsmCapable: loading the program failed: " + ErrnoText(-err) +
                               " (needs root, BTF and a kernel booted with bpf in lsm=)");
    }
    const uint32_t zero = 0;
    ew_cap_config cfg = {};
    cfg.agent_tgid = agent_tgid;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.cap_config), &zero, &cfg, BPF_ANY) != 0) {
      throw std::runtime_error("LsmCapable: writing its configuration failed: " + ErrnoText(errno));
    }
    sync_inner_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "ew_cap_sync", sizeof(uint32_t), sizeof(uint32_t), 1, nullptr);
    if (sync_inner_fd_ < 0) throw std::runtime_error("LsmCapable: creating its sync map failed: " + ErrnoText(errno));
    link_ = bpf_program__attach_lsm(skel_->progs.ew_cap_capable);
    if (link_ == nullptr) throw std::runtime_error("LsmCapable: attaching lsm/capable failed: " + ErrnoText(errno));
    for (bpf_map* m : {skel_->maps.cap_active, skel_->maps.cap_gen_info, skel_->maps.cap_rules, skel_->maps.cap_config,
                       skel_->maps.workloads}) {
      bpf_map_info mi = {};
      uint32_t len = sizeof(mi);
      if (bpf_obj_get_info_by_fd(bpf_map__fd(m), &mi, &len) != 0) {
        throw std::runtime_error("LsmCapable: reading its map ids failed: " + ErrnoText(errno));
      }
      map_ids_.push_back(mi.id);
    }
  }

  void Destroy() {
    if (link_ != nullptr) bpf_link__destroy(link_);
    link_ = nullptr;
    if (skel_ != nullptr) lsm_capable::destroy(skel_);
    skel_ = nullptr;
    if (sync_inner_fd_ >= 0) close(sync_inner_fd_);
    sync_inner_fd_ = -1;
  }

  std::shared_ptr<EventRing> ring_;
  lsm_capable* skel_ = nullptr;
  bpf_link* link_ = nullptr;
  uint32_t gen_ = 0;  // the generation in force (the maps start with generation 0, empty)
  uint64_t generation_ = 0;
  CapRuleSet current_;
  CapRuleSet previous_;  // the old generation's entries, while stale_
  bool stale_ = false;
  int sync_inner_fd_ = -1;
  WorkloadSet workloads_;
  std::vector<uint32_t> map_ids_;
};

class LsmCapableWrap : public Napi::ObjectWrap<LsmCapableWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "LsmCapable",
                                    {InstanceMethod("setRules", &LsmCapableWrap::SetRules),
                                     InstanceMethod("setWorkloads", &LsmCapableWrap::SetWorkloads),
                                     InstanceMethod("stats", &LsmCapableWrap::Stats),
                                     InstanceMethod("attached", &LsmCapableWrap::Attached),
                                     InstanceMethod("mapIds", &LsmCapableWrap::MapIds),
                                     InstanceMethod("close", &LsmCapableWrap::Close)});
    exports.Set("LsmCapable", fn);
  }

  explicit LsmCapableWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LsmCapableWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, kUsage);
    std::shared_ptr<EventRing> ring = EventRingWrap::Unwrap(info[0]);
    uint32_t agent = Reader(env, std::string(kUsage) + ": options")
                         .U32(info[1].As<Napi::Object>(), "agentPid", 1, 4194304, "a process id (the agent, never refused)");
    try {
      cap_ = std::make_unique<LsmCapable>(ring, agent);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

 private:
  LsmCapable& Open(Napi::Env env) {
    if (!cap_) throw Napi::Error::New(env, "LsmCapable is closed");
    return *cap_;
  }

  // setRules(rules: {ruleId, action, cap, workload, srcDev, srcIno}[]): every entry is checked before the map is touched.
  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmCapable& cap = Open(env);
    if (info.Length() < 1 || !info[0].IsArray()) {
      throw Napi::TypeError::New(env, "LsmCapable.setRules(rules: Array<{ruleId, action, cap, workload, srcDev, srcIno}>)");
    }
    Napi::Array arr = info[0].As<Napi::Array>();
    CapRuleSet set;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      const std::string where = "LsmCapable.setRules: rules[" + std::to_string(i) + "]";
      Napi::Value item = arr.Get(i);
      if (!item.IsObject() || item.IsArray()) throw Napi::TypeError::New(env, where + " must be an object");
      Napi::Object o = item.As<Napi::Object>();
      Reader r(env, where);
      ew_cap_key key = {};
      ew_cap_value value = {};
      value.rule_id = r.U32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
      value.action = r.U32(o, "action", EW_ACTION_AUDIT, EW_ACTION_BLOCK, "1 (Audit) or 2 (Block)");
      key.cap = r.U32(o, "cap", 0, EW_CAP_MAX, "a capability number in 0.." + std::to_string(EW_CAP_MAX));
      key.workload = r.BigU64(o, "workload");
      key.src_dev = r.BigU64(o, "srcDev");
      key.src_ino = r.BigU64(o, "srcIno");
      if (key.src_ino == 0 && key.src_dev != 0) r.Fail("srcDev", "0n when srcIno is 0n (any source)", o.Get("srcDev"));
      auto [it, fresh] = set.emplace(key, value);
      if (!fresh && value.action > it->second.action) it->second = value;  // Block wins over Audit
    }
    try {
      cap.SetRules(set);
    } catch (const std::range_error& e) {
      throw Napi::RangeError::New(env, e.what());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }

  Napi::Value SetWorkloads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmCapable& cap = Open(env);
    if (info.Length() < 1 || !info[0].IsArray()) {
      throw Napi::TypeError::New(env, "LsmCapable.setWorkloads(workloads: Array<{workload, mntNs, pidNs}>)");
    }
    Napi::Array arr = info[0].As<Napi::Array>();
    if (arr.Length() > EW_MAX_WORKLOADS) {
      throw Napi::RangeError::New(env, "LsmCapable.setWorkloads: " + std::to_string(arr.Length()) + " workloads, at most " +
                                           std::to_string(EW_MAX_WORKLOADS) + "; nothing changed");
    }
    WorkloadSet set;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      const std::string where = "LsmCapable.setWorkloads: workloads[" + std::to_string(i) + "]";
      Napi::Value item = arr.Get(i);
      if (!item.IsObject() || item.IsArray()) throw Napi::TypeError::New(env, where + " must be an object {workload, mntNs, pidNs}");
      Napi::Object o = item.As<Napi::Object>();
      Reader r(env, where);
      ew_workload_value value = {};
      value.workload = r.BigU64(o, "workload");
      if (value.workload == 0) r.Fail("workload", "a bigint other than 0n (0n is the host)", o.Get("workload"));
      uint32_t mnt = r.U32(o, "mntNs", 1, UINT32_MAX, "a mount namespace inode number");
      uint32_t pid = r.U32(o, "pidNs", 0, UINT32_MAX, "a pid namespace inode number (0: none)");
      ew_workload_key mkey = {};
      mkey.ns_inum = mnt;
      mkey.ns_kind = EW_NS_MNT;
      if (!set.emplace(mkey, value).second) r.Fail("mntNs", "named once only", o.Get("mntNs"));
      if (pid != 0) {
        ew_workload_key pkey = {};
        pkey.ns_inum = pid;
        pkey.ns_kind = EW_NS_PID;
        set.emplace(pkey, value);  // a shared pid namespace: the first container keeps it
      }
    }
    try {
      cap.SetWorkloads(set);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmCapable& cap = Open(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("entries", static_cast<double>(cap.RuleCount()));
    o.Set("generation", static_cast<double>(cap.Generation()));
    o.Set("workloads", static_cast<double>(cap.WorkloadCount()));
    return o;
  }

  Napi::Value Attached(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env);
    if (Open(env).Attached()) a.Set(0u, "capable");
    return a;
  }

  Napi::Value MapIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::vector<uint32_t>& ids = Open(env).MapIds();
    Napi::Array a = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) a.Set(static_cast<uint32_t>(i), ids[i]);
    return a;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    cap_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<LsmCapable> cap_;
};

void InitLsmCapable(Napi::Env env, Napi::Object exports) { LsmCapableWrap::Init(env, exports); }

}  // namespace edgeward
