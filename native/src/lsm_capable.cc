// LsmCapable: capability rules on bpf-lsm (bpf/lsm_capable.bpf.c).
//
// Loads and attaches lsm/capable, writes decisions to the shared event ring.
// setRules() replaces the rules and the allow-list postures as one
// generation switch (include/ew_capable_abi.h): the new entries are written
// beside the ones in force, the active index flips, then the old entries go.
// setWorkloads() fills the object's `workloads` map (containers told apart
// from the host, workload_table.h).
//
// With a pin directory the rule maps and the link are pinned there, so the
// rules keep enforcing after this process ends (crash included), and a later
// process adopts them: it reuses the pinned maps (the rules stay in force
// throughout) and swaps its link in over the old one. Pinned state of
// another layout is replaced. Only close() removes the pins.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <napi.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "event_ring.h"
#include "ew_capable_abi.h"
#include "js_reader.h"
#include "lsm_capable.skel.h"
#include "modules.h"
#include "workload_table.h"

namespace edgeward {

namespace {

using js::ErrnoText;

struct CapKeyLess {
  bool operator()(const ew_cap_key& a, const ew_cap_key& b) const {
    return std::tie(a.workload, a.src_dev, a.src_ino, a.cap) < std::tie(b.workload, b.src_dev, b.src_ino, b.cap);
  }
};
using CapRuleSet = std::map<ew_cap_key, ew_cap_value, CapKeyLess>;  // keys with gen 0

const char kUsage[] = "LsmCapable(ring: EventRing, options: {agentPid: number, pinDir?: string})";
const char kRulesUsage[] =
    "LsmCapable.setRules(rules: Array<{ruleId, action, cap, workload, srcDev, srcIno}>, postures?: Array<{workload, ruleId, action}>)";

// Adds rule `id` with `action` (EW_ACTION_*) to a key's value; the lowest id of an action is kept.
void AddAction(ew_cap_value& v, uint32_t action, uint32_t id) {
  const uint32_t bit = 1u << action;
  uint32_t* slot = action == EW_ACTION_BLOCK ? &v.block_rule : action == EW_ACTION_AUDIT ? &v.audit_rule : &v.allow_rule;
  if (!(v.actions & bit) || id < *slot) *slot = id;
  v.actions |= bit;
}

// The process's start in clock ticks since boot (/proc/PID/stat field 22).
uint64_t ProcessStartTicks(uint32_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  size_t paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (!in || paren == std::string::npos) throw std::runtime_error("LsmCapable: cannot read /proc/" + std::to_string(pid) + "/stat (is agentPid a live process?)");
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  for (int i = 3; i <= 22 && (fields >> field); i++) {
    if (i == 22) return std::stoull(field);
  }
  throw std::runtime_error("LsmCapable: /proc/" + std::to_string(pid) + "/stat has no start time");
}

// The pinned maps, by pin file name (cap_sync and the scratch map are the program's own).
std::vector<std::pair<const char*, bpf_map*>> PinnedMaps(lsm_capable* skel) {
  return {{"active", skel->maps.cap_active},
          {"gen_info", skel->maps.cap_gen_info},
          {"rules", skel->maps.cap_rules},
          {"config", skel->maps.cap_config},
          {"workloads", skel->maps.workloads}};
}

const char kLinkPin[] = "link_capable";

}  // namespace

class LsmCapable {
 public:
  LsmCapable(std::shared_ptr<EventRing> ring, uint32_t agent_tgid, std::string pin_dir)
      : ring_(std::move(ring)), pin_dir_(std::move(pin_dir)) {
    try {
      Open(agent_tgid);
    } catch (...) {
      Release();  // what an earlier process pinned stays in force
      throw;
    }
  }
  // Process exit: pinned rules keep enforcing (only Close() removes them).
  ~LsmCapable() { Release(); }

  void SetRules(const CapRuleSet& rules) {
    if (rules.size() > EW_CAP_MAX_ENTRIES) {
      throw std::range_error("LsmCapable.setRules: " + std::to_string(rules.size()) + " entries (rules and postures), at most " +
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
      if (key.cap == EW_CAP_POSTURE) {
        info.postures++;
        continue;
      }
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

  void SetWorkloads(const WorkloadSet& workloads) {
    SyncWorkloads(bpf_map__fd(skel_->maps.workloads), workloads, "LsmCapable");
    workloads_ = workloads.size();
  }

  size_t RuleCount() const {
    size_t n = 0;
    for (const auto& [k, v] : current_) n += k.cap != EW_CAP_POSTURE;
    return n;
  }
  size_t PostureCount() const { return current_.size() - RuleCount(); }
  uint64_t Generation() const { return generation_; }
  size_t WorkloadCount() const { return workloads_; }
  bool Adopted() const { return adopted_; }
  const std::string& Replaced() const { return replaced_; }
  bool Attached() const { return link_ != nullptr; }

  std::vector<uint32_t> MapIds() const {
    std::vector<uint32_t> ids;
    for (const auto& [name, m] : PinnedMaps(skel_)) {
      bpf_map_info mi = {};
      uint32_t len = sizeof(mi);
      if (bpf_obj_get_info_by_fd(bpf_map__fd(m), &mi, &len) != 0) {
        throw std::runtime_error("LsmCapable: reading its map ids failed: " + ErrnoText(errno));
      }
      ids.push_back(mi.id);
    }
    return ids;
  }

  // Detaches and removes the pins: no capability is refused any more.
  void Close() {
    if (skel_ != nullptr) Unpin();
    Release();
  }

  // Lets go of the program: pinned, it keeps enforcing; unpinned, it detaches.
  void Release() {
    if (link_ != nullptr) bpf_link__destroy(link_);  // a pinned link stays attached
    link_ = nullptr;
    if (skel_ != nullptr) lsm_capable::destroy(skel_);
    skel_ = nullptr;
    if (sync_inner_fd_ >= 0) close(sync_inner_fd_);
    sync_inner_fd_ = -1;
  }

 private:
  void Open(uint32_t agent_tgid) {
    skel_ = lsm_capable::open();
    if (skel_ == nullptr) throw std::runtime_error("LsmCapable: opening the BPF object failed: " + ErrnoText(errno));
    int err = ring_->ReuseMaps(skel_->obj);
    if (err != 0) throw std::runtime_error("LsmCapable: reusing the event ring's maps failed: " + ErrnoText(-err));
    if (!pin_dir_.empty()) adopted_ = AdoptPinnedMaps();
    err = lsm_capable::load(skel_);
    if (err != 0) {
      throw std::runtime_error("LsmCapable: loading the program failed: " + ErrnoText(-err) +
                               " (needs root, BTF and a kernel booted with bpf in lsm=)");
    }
    // Written before attaching (and, adopted, before the old program's link
    // is replaced: it reads this map too): from now on this process is the agent.
    const uint32_t zero = 0;
    ew_cap_config cfg = {};
    cfg.agent_tgid = agent_tgid;
    long tick = sysconf(_SC_CLK_TCK);
    if (tick > 0 && 1000000000L % tick == 0) {
      cfg.tick_ns = static_cast<uint64_t>(1000000000L / tick);
      cfg.agent_start_ticks = ProcessStartTicks(agent_tgid);
    }
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.cap_config), &zero, &cfg, BPF_ANY) != 0) {
      throw std::runtime_error("LsmCapable: writing its configuration failed: " + ErrnoText(errno));
    }
    sync_inner_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "ew_cap_sync", sizeof(uint32_t), sizeof(uint32_t), 1, nullptr);
    if (sync_inner_fd_ < 0) throw std::runtime_error("LsmCapable: creating its sync map failed: " + ErrnoText(errno));
    link_ = bpf_program__attach_lsm(skel_->progs.ew_cap_capable);
    if (link_ == nullptr) throw std::runtime_error("LsmCapable: attaching lsm/capable failed: " + ErrnoText(errno));
    if (!pin_dir_.empty()) PinAll();
    if (adopted_) ReadAdoptedState();
  }

  // Reuses the maps an earlier process pinned; false when there are none
  // or they cannot be adopted (another layout, an interrupted pinning: then
  // replaced_ says why, and PinAll() pins this object's maps over them).
  bool AdoptPinnedMaps() {
    std::vector<std::pair<bpf_map*, int>> found;
    auto drop = [&found]() {
      for (auto& f : found) close(f.second);
      found.clear();
    };
    std::vector<std::string> missing;
    for (const auto& [name, map] : PinnedMaps(skel_)) {
      std::string path = pin_dir_ + "/" + name;
      int fd = bpf_obj_get(path.c_str());
      if (fd < 0) {
        if (errno != ENOENT) {
          int e = errno;
          drop();
          throw std::runtime_error("LsmCapable: opening the pinned map " + path + " failed: " + ErrnoText(e));
        }
        missing.push_back(name);
        continue;
      }
      bpf_map_info info = {};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.type != bpf_map__type(map) ||
          info.key_size != bpf_map__key_size(map) || info.value_size != bpf_map__value_size(map) ||
          info.max_entries != bpf_map__max_entries(map)) {
        close(fd);
        drop();
        replaced_ = "the pinned map " + path + " has another layout (key " + std::to_string(info.key_size) + " B, value " +
                    std::to_string(info.value_size) + " B, " + std::to_string(info.max_entries) + " entries)";
        return false;
      }
      found.emplace_back(map, fd);
    }
    if (found.empty()) return false;
    if (!missing.empty()) {
      drop();
      replaced_ = "an interrupted pinning in " + pin_dir_ + " (no " + missing[0] + ")";
      return false;
    }
    for (auto& [map, fd] : found) {
      int err = bpf_map__reuse_fd(map, fd);
      if (err != 0) {
        drop();
        throw std::runtime_error("LsmCapable: reusing a pinned map failed: " + ErrnoText(-err));
      }
    }
    drop();  // reuse_fd duplicated them
    return true;
  }

  // Pins the maps (unless adopted: they are already) and the link. The link
  // is pinned under a temporary name, then renamed over the old pin: the
  // name always holds a link (the old one or this one), so a crash at any
  // point leaves the hook enforced; the old program detaches at the rename.
  void PinAll() {
    if (mkdir(pin_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error("LsmCapable: creating the pin directory " + pin_dir_ + " failed: " + ErrnoText(errno) +
                               " (is bpffs mounted at /sys/fs/bpf?)");
    }
    if (!adopted_) {
      for (const auto& [name, map] : PinnedMaps(skel_)) {
        std::string path = pin_dir_ + "/" + name;
        if (unlink(path.c_str()) != 0 && errno != ENOENT) {  // another layout's map (its program holds it)
          throw std::runtime_error("LsmCapable: removing the old pin " + path + " failed: " + ErrnoText(errno));
        }
        if (bpf_obj_pin(bpf_map__fd(map), path.c_str()) != 0) {
          throw std::runtime_error("LsmCapable: pinning " + path + " failed: " + ErrnoText(errno));
        }
      }
    }
    std::string path = pin_dir_ + "/" + kLinkPin;
    std::string tmp = path + "__new";  // bpffs refuses names with a dot
    if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
      throw std::runtime_error("LsmCapable: removing the leftover " + tmp + " failed: " + ErrnoText(errno));
    }
    if (bpf_obj_pin(bpf_link__fd(link_), tmp.c_str()) != 0) {
      throw std::runtime_error("LsmCapable: pinning " + tmp + " failed: " + ErrnoText(errno));
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      int e = errno;
      unlink(tmp.c_str());
      throw std::runtime_error("LsmCapable: renaming " + tmp + " to " + path + " failed: " + ErrnoText(e));
    }
  }

  // The link first (the program detaches once this process lets go too), then the maps and the directory.
  void Unpin() {
    if (pin_dir_.empty()) return;
    unlink((pin_dir_ + "/" + kLinkPin).c_str());
    unlink((pin_dir_ + "/" + kLinkPin + "__new").c_str());
    for (const auto& [name, map] : PinnedMaps(skel_)) unlink((pin_dir_ + "/" + name).c_str());
    rmdir(pin_dir_.c_str());
  }

  // The generation in force and its entries, as the earlier process left
  // them; entries of the other generation (a switch it did not finish) go.
  void ReadAdoptedState() {
    const uint32_t zero = 0;
    uint32_t active = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.cap_active), &zero, &active) != 0) active = 0;
    gen_ = active & 1;
    ew_cap_gen_info info = {};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.cap_gen_info), &gen_, &info) == 0) generation_ = info.generation;
    const int fd = bpf_map__fd(skel_->maps.cap_rules);
    std::vector<ew_cap_key> other;
    ew_cap_key key = {}, next = {};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      ew_cap_value value = {};
      if (next.gen != gen_) {
        other.push_back(next);
      } else if (bpf_map_lookup_elem(fd, &next, &value) == 0) {
        ew_cap_key k = next;
        k.gen = 0;
        current_.emplace(k, value);
      }
      key = next;
      prev = &key;
    }
    for (const ew_cap_key& k : other) bpf_map_delete_elem(fd, &k);
    workloads_ = ReadWorkloads(bpf_map__fd(skel_->maps.workloads)).size();
  }

  std::shared_ptr<EventRing> ring_;
  std::string pin_dir_;  // empty: not pinned
  lsm_capable* skel_ = nullptr;
  bpf_link* link_ = nullptr;
  bool adopted_ = false;
  std::string replaced_;
  uint32_t gen_ = 0;  // the generation in force (the maps start with generation 0, empty)
  uint64_t generation_ = 0;
  CapRuleSet current_;
  CapRuleSet previous_;  // the old generation's entries, while stale_
  bool stale_ = false;
  int sync_inner_fd_ = -1;
  size_t workloads_ = 0;
};

class LsmCapableWrap : public Napi::ObjectWrap<LsmCapableWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "LsmCapable",
                                    {InstanceMethod("setRules", &LsmCapableWrap::SetRules),
                                     InstanceMethod("setWorkloads", &LsmCapableWrap::SetWorkloads),
                                     InstanceMethod("stats", &LsmCapableWrap::Stats),
                                     InstanceMethod("attached", &LsmCapableWrap::Attached),
                                     InstanceMethod("adopted", &LsmCapableWrap::Adopted),
                                     InstanceMethod("replaced", &LsmCapableWrap::Replaced),
                                     InstanceMethod("mapIds", &LsmCapableWrap::MapIds),
                                     InstanceMethod("release", &LsmCapableWrap::Release),
                                     InstanceMethod("close", &LsmCapableWrap::Close)});
    exports.Set("LsmCapable", fn);
    Napi::Object limits = Napi::Object::New(env);
    limits.Set("layoutVersion", EW_CAP_LAYOUT_VERSION);
    limits.Set("maxEntries", EW_CAP_MAX_ENTRIES);
    exports.Set("capableLimits", limits);
  }

  explicit LsmCapableWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LsmCapableWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, kUsage);
    std::shared_ptr<EventRing> ring = EventRingWrap::Unwrap(info[0]);
    js::Reader r(env, std::string(kUsage) + ": options");
    Napi::Object options = info[1].As<Napi::Object>();
    uint32_t agent = r.U32(options, "agentPid", 1, 4194304, "a process id (the agent, never refused)");
    std::string pin_dir;
    Napi::Value pin = options.Get("pinDir");
    if (!pin.IsUndefined()) {
      pin_dir = pin.IsString() ? pin.As<Napi::String>().Utf8Value() : "";
      if (pin_dir.size() < 2 || pin_dir[0] != '/') r.Fail("pinDir", "an absolute path on bpffs", pin);
    }
    js::Rethrown(env, [&] { cap_ = std::make_unique<LsmCapable>(ring, agent, pin_dir); });
  }

 private:
  LsmCapable& Open(Napi::Env env) {
    if (!cap_) throw Napi::Error::New(env, "LsmCapable is closed");
    return *cap_;
  }

  // setRules(rules, postures?): every entry is checked before the map is touched.
  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmCapable& cap = Open(env);
    Napi::Array arr = js::ArrayArg(info, 0, kRulesUsage);
    CapRuleSet set;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      js::Reader r(env, "LsmCapable.setRules: rules[" + std::to_string(i) + "]");
      Napi::Object o = r.Object(arr.Get(i));
      ew_cap_key key = {};
      uint32_t id = r.U32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
      uint32_t action = r.U32(o, "action", EW_ACTION_AUDIT, EW_ACTION_ALLOW, "1 (Audit), 2 (Block) or 3 (Allow)");
      key.cap = r.U32(o, "cap", 0, EW_CAP_MAX, "a capability number in 0.." + std::to_string(EW_CAP_MAX));
      key.workload = r.BigU64(o, "workload");
      key.src_dev = r.BigU64(o, "srcDev");
      key.src_ino = r.BigU64(o, "srcIno");
      if (key.src_ino == 0 && key.src_dev != 0) r.Fail("srcDev", "0n when srcIno is 0n (any source)", o.Get("srcDev"));
      AddAction(set[key], action, id);
    }
    if (info.Length() >= 2 && !info[1].IsUndefined()) {
      Napi::Array postures = js::ArrayArg(info, 1, kRulesUsage);
      for (uint32_t i = 0; i < postures.Length(); i++) {
        js::Reader r(env, "LsmCapable.setRules: postures[" + std::to_string(i) + "]");
        Napi::Object o = r.Object(postures.Get(i));
        ew_cap_key key = {};
        key.cap = EW_CAP_POSTURE;
        key.workload = r.BigU64(o, "workload");
        uint32_t id = r.U32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
        uint32_t action = r.U32(o, "action", EW_ACTION_AUDIT, EW_ACTION_BLOCK, "1 (Audit) or 2 (Block)");
        ew_cap_value value = {};
        AddAction(value, action, id);
        if (!set.emplace(key, value).second) r.Fail("workload", "named by one posture only", o.Get("workload"));
      }
    }
    js::Rethrown(env, [&] { cap.SetRules(set); });
    return env.Undefined();
  }

  Napi::Value SetWorkloads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmCapable& cap = Open(env);
    WorkloadSet set = ParseWorkloads(env, info.Length() > 0 ? info[0] : env.Undefined(), "LsmCapable");
    js::Rethrown(env, [&] { cap.SetWorkloads(set); });
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmCapable& cap = Open(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("entries", static_cast<double>(cap.RuleCount()));
    o.Set("postures", static_cast<double>(cap.PostureCount()));
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

  Napi::Value Adopted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Open(info.Env()).Adopted()); }

  Napi::Value Replaced(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), Open(info.Env()).Replaced()); }

  Napi::Value MapIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint32_t> ids;
    js::Rethrown(env, [&] { ids = Open(env).MapIds(); });
    Napi::Array a = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) a.Set(static_cast<uint32_t>(i), ids[i]);
    return a;
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    cap_.reset();  // the destructor lets go without unpinning
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (cap_) cap_->Close();
    cap_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<LsmCapable> cap_;
};

// tryLockFile(fd): flock(LOCK_EX | LOCK_NB) on an open file; true when taken,
// false when another open file description holds it. The lock goes with the
// last descriptor of the file (process exit included). Node has no flock:
// agent/src/instance_lock.ts uses this so two agents never adopt the same pins.
// (Here because the pins are this part's neighbours; it belongs to no program.)
Napi::Value TryLockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "tryLockFile(fd): fd must be a number");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) throw Napi::TypeError::New(env, "tryLockFile(fd): fd must not be negative");
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  throw Napi::Error::New(env, "tryLockFile: flock on fd " + std::to_string(fd) + " failed: " + ErrnoText(errno));
}

void InitLsmCapable(Napi::Env env, Napi::Object exports) {
  LsmCapableWrap::Init(env, exports);
  exports.Set("tryLockFile", Napi::Function::New(env, TryLockFile, "tryLockFile"));
}

}  // namespace edgeward
