// NetEnforcer: the compat network enforcer (bpf/net_enforcer.bpf.c).
//
// Loads the cgroup-bpf programs with the shared event ring's maps, attaches
// them to a cgroup v2 directory through bpf_links (links always attach with
// BPF_F_ALLOW_MULTI semantics: programs Docker or systemd put on the same
// cgroup keep running, and programs attached to descendants cannot override
// ours), and keeps the `net_rules` map in step with the rule set JS gives and
// the `workloads` map with the containers (rules name workloads: 0 the host).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "edgeward_abi.h"
#include "ew_workload_abi.h"
#include "event_ring.h"
#include "js_reader.h"
#include "modules.h"
#include "net_enforcer.skel.h"
#include "workload_table.h"

namespace edgeward {

namespace {

using js::ErrnoText;

// Map keys compared field by field (the struct has padding).
struct RuleKeyLess {
  bool operator()(const ew_net_rule_key& a, const ew_net_rule_key& b) const {
    return std::tie(a.workload, a.src_dev, a.src_ino, a.proto_class) <
           std::tie(b.workload, b.src_dev, b.src_ino, b.proto_class);
  }
};
using RuleSet = std::map<ew_net_rule_key, ew_net_rule_value, RuleKeyLess>;

// Every program of the skeleton with its name, in attach order: the
// use-time hooks first, creation last, so that once sockets can no longer be
// made every way of using one is already covered.
std::vector<std::pair<const char*, bpf_program*>> Programs(net_enforcer* skel) {
  return {
      {"connect4", skel->progs.ew_net_connect4}, {"connect6", skel->progs.ew_net_connect6},
      {"bind4", skel->progs.ew_net_bind4},       {"bind6", skel->progs.ew_net_bind6},
      {"sendmsg4", skel->progs.ew_net_sendmsg4}, {"sendmsg6", skel->progs.ew_net_sendmsg6},
      {"sock_create", skel->progs.ew_net_sock_create},
  };
}

}  // namespace

class NetEnforcer {
 public:
  // Throws std::runtime_error naming the step that failed.
  NetEnforcer(std::shared_ptr<EventRing> ring, const std::string& cgroup_path) : ring_(std::move(ring)) {
    try {
      Open(cgroup_path);
    } catch (...) {
      Close();
      throw;
    }
  }
  ~NetEnforcer() { Close(); }

  // Replaces the rule set. Keys of the new set are inserted or overwritten
  // first, then keys not in it are deleted: during the change every rule of
  // the old or the new set is in force, never neither.
  void SetRules(const RuleSet& rules) {
    if (rules.size() > EW_MAX_NET_RULES) {
      throw std::range_error("NetEnforcer.setRules: " + std::to_string(rules.size()) + " rules, at most " +
                             std::to_string(EW_MAX_NET_RULES) + " are supported; the rule set was not changed");
    }
    int fd = RulesFd();
    for (const auto& [key, value] : rules) {
      if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
        throw std::runtime_error("NetEnforcer.setRules: updating rule " + std::to_string(value.rule_id) +
                                 " failed: " + ErrnoText(errno) +
                                 "; the old rules and part of the new ones are in force");
      }
    }
    for (const ew_net_rule_key& key : Keys()) {
      if (rules.count(key) != 0) continue;
      if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
        throw std::runtime_error("NetEnforcer.setRules: removing a stale rule failed: " + ErrnoText(errno));
      }
    }
  }

  // Replaces the containers: new and changed entries first, then stale ones
  // deleted (a container that stays keeps its entry throughout).
  void SetWorkloads(const WorkloadSet& workloads) { SyncWorkloads(bpf_map__fd(skel_->maps.workloads), workloads, "NetEnforcer"); }

  size_t RuleCount() { return Keys().size(); }

  bool closed() const { return skel_ == nullptr; }

  // Detaches every program (sockets are no longer checked), then frees the
  // object and its maps. Idempotent.
  void Close() {
    for (bpf_link* link : links_) bpf_link__destroy(link);
    links_.clear();
    if (skel_ != nullptr) net_enforcer::destroy(skel_);
    skel_ = nullptr;
    if (cgroup_fd_ >= 0) close(cgroup_fd_);
    cgroup_fd_ = -1;
    ring_.reset();
  }

 private:
  void Open(const std::string& cgroup_path) {
    cgroup_fd_ = open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd_ < 0) {
      throw std::runtime_error("NetEnforcer: cannot open the cgroup directory " + cgroup_path + ": " +
                               ErrnoText(errno));
    }
    struct statfs fs = {};
    if (fstatfs(cgroup_fd_, &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
      throw std::runtime_error("NetEnforcer: " + cgroup_path +
                               " is not a cgroup v2 directory (find the cgroup2 mount in /proc/self/mounts)");
    }
    skel_ = net_enforcer::open();
    if (skel_ == nullptr) throw std::runtime_error("NetEnforcer: opening the BPF object failed: " + ErrnoText(errno));
    int err = ring_->ReuseMaps(skel_->obj);
    if (err != 0) throw std::runtime_error("NetEnforcer: reusing the event ring's maps failed: " + ErrnoText(-err));
    err = net_enforcer::load(skel_);
    if (err != 0) {
      throw std::runtime_error("NetEnforcer: loading the cgroup-bpf programs failed: " + ErrnoText(-err) +
                               " (needs root, BTF and cgroup-bpf; libbpf logs the verifier's reason on stderr)");
    }
    for (const auto& [name, prog] : Programs(skel_)) {
      bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd_);
      if (link == nullptr) {
        throw std::runtime_error(std::string("NetEnforcer: attaching cgroup/") + name + " to " + cgroup_path +
                                 " failed: " + ErrnoText(errno) +
                                 (errno == EPERM ? " (a program attached there without BPF_F_ALLOW_MULTI refuses others)"
                                                 : ""));
      }
      links_.push_back(link);
    }
  }

  int RulesFd() const { return bpf_map__fd(skel_->maps.net_rules); }

  std::vector<ew_net_rule_key> Keys() const {
    std::vector<ew_net_rule_key> keys;
    int fd = RulesFd();
    ew_net_rule_key key = {}, next = {};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      keys.push_back(next);
      key = next;
      prev = &key;
    }
    return keys;
  }

  std::shared_ptr<EventRing> ring_;  // keeps the ring's maps alive while we write to them
  net_enforcer* skel_ = nullptr;
  int cgroup_fd_ = -1;
  std::vector<bpf_link*> links_;
};

// JS wrapper ------------------------------------------------------------------

namespace {

const char kUsage[] = "NetEnforcer(ring: EventRing, {cgroupPath: string})";

// Validates one JS NativeNetRule into a map key and value.
std::pair<ew_net_rule_key, ew_net_rule_value> ReadRule(Napi::Env env, Napi::Value item, uint32_t index) {
  js::Reader r(env, "NetEnforcer.setRules: rules[" + std::to_string(index) + "]");
  Napi::Object o = r.Object(item);
  ew_net_rule_key key = {};
  ew_net_rule_value value = {};
  value.rule_id = r.U32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
  value.action = r.U32(o, "action", EW_ACTION_AUDIT, EW_ACTION_ALLOW, "1 (Audit), 2 (Block) or 3 (Allow)");
  key.proto_class = r.U32(o, "protoClass", EW_NET_POSTURE_CLASS, EW_PROTO_RAW,
                             "an integer in 0..5 (0: the workload's posture; tcp, udp, icmp, icmpv6, raw)");
  key.workload = r.BigU64(o, "workload");
  key.src_dev = r.BigU64(o, "srcDev");
  key.src_ino = r.BigU64(o, "srcIno");
  if (key.src_dev > UINT32_MAX) {
    r.Fail("srcDev", "a kernel dev_t (major << 20 | minor, below 2n**32n)", o.Get("srcDev"));
  }
  if ((key.src_dev == 0) != (key.src_ino == 0)) {
    r.Fail(key.src_dev == 0 ? "srcDev" : "srcIno", "non-zero when the other of srcDev/srcIno is (both 0n: any source)",
           o.Get(key.src_dev == 0 ? "srcDev" : "srcIno"));
  }
  if (key.proto_class == EW_NET_POSTURE_CLASS) {
    // A posture entry: per workload, any source, and it refuses or reports.
    if (key.src_dev != 0) r.Fail("srcDev", "0n for a posture entry (protoClass 0)", o.Get("srcDev"));
    if (value.action == EW_ACTION_ALLOW) r.Fail("action", "1 (Audit) or 2 (Block) for a posture entry (protoClass 0)", o.Get("action"));
  }
  return {key, value};
}

// Which of two rules on one key stays: Block, then Allow, then Audit.
int ActionRank(uint32_t action) {
  return action == EW_ACTION_BLOCK ? 3 : action == EW_ACTION_ALLOW ? 2 : action == EW_ACTION_AUDIT ? 1 : 0;
}

}  // namespace

class NetEnforcerWrap : public Napi::ObjectWrap<NetEnforcerWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "NetEnforcer",
                                    {InstanceMethod("setRules", &NetEnforcerWrap::SetRules),
                                     InstanceMethod("setWorkloads", &NetEnforcerWrap::SetWorkloads),
                                     InstanceMethod("ruleCount", &NetEnforcerWrap::RuleCount),
                                     InstanceMethod("close", &NetEnforcerWrap::Close)});
    exports.Set("NetEnforcer", fn);
  }

  explicit NetEnforcerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetEnforcerWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, kUsage);
    std::shared_ptr<EventRing> ring = EventRingWrap::Unwrap(info[0]);
    Napi::Value path = info[1].As<Napi::Object>().Get("cgroupPath");
    if (!path.IsString() || path.As<Napi::String>().Utf8Value().empty()) {
      throw Napi::TypeError::New(env, std::string(kUsage) + ": options.cgroupPath must be a non-empty string");
    }
    js::Rethrown(env, [&] { enforcer_ = std::make_unique<NetEnforcer>(ring, path.As<Napi::String>().Utf8Value()); });
  }

 private:
  NetEnforcer& Open(Napi::Env env) {
    if (!enforcer_) throw Napi::Error::New(env, "NetEnforcer is closed");
    return *enforcer_;
  }

  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NetEnforcer& enforcer = Open(env);
    if (info.Length() < 1 || !info[0].IsArray()) {
      throw Napi::TypeError::New(env, "NetEnforcer.setRules(rules: NativeNetRule[])");
    }
    Napi::Array arr = info[0].As<Napi::Array>();
    if (arr.Length() > EW_MAX_NET_RULES) {
      throw Napi::RangeError::New(env, "NetEnforcer.setRules: " + std::to_string(arr.Length()) +
                                           " rules, at most " + std::to_string(EW_MAX_NET_RULES) +
                                           " are supported; the rule set was not changed");
    }
    // Every rule is validated before the map is touched.
    RuleSet rules;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      auto [key, value] = ReadRule(env, arr.Get(i), i);
      // Two rules on one key (same source and protocol): Block wins, as in the kernel, then Allow.
      auto [it, inserted] = rules.emplace(key, value);
      if (!inserted && ActionRank(value.action) > ActionRank(it->second.action)) it->second = value;
    }
    js::Rethrown(env, [&] { enforcer.SetRules(rules); });
    return env.Undefined();
  }

  Napi::Value SetWorkloads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NetEnforcer& enforcer = Open(env);
    // Every entry is validated before the map is touched.
    WorkloadSet set = ParseWorkloads(env, info.Length() > 0 ? info[0] : env.Undefined(), "NetEnforcer");
    js::Rethrown(env, [&] { enforcer.SetWorkloads(set); });
    return env.Undefined();
  }

  Napi::Value RuleCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(Open(info.Env()).RuleCount()));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    enforcer_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<NetEnforcer> enforcer_;
};

void InitNetEnforcer(Napi::Env env, Napi::Object exports) { NetEnforcerWrap::Init(env, exports); }

}  // namespace edgeward
