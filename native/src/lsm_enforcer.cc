// LsmEnforcer (see lsm_enforcer.h) and its JS wrapper.
//
// Update protocol (one rule set = one generation):
//   1. next = 1 - active.
//   2. New inner hash maps are created and filled with the whole set; any
//      failure here closes them and throws: nothing in force changed.
//   3. lsm_gen_info[next], lsm_path_rules[next], lsm_net_rules[next] are
//      written (the outer maps take a reference to the new inner maps and
//      drop the ones of two sets ago).
//   4. lsm_active[0] = next: a single 4-byte array store, the switch.
// Hooks read lsm_active once per call, so each call decides with one whole
// set. The generation replaced in step 3 went out of force one whole update
// earlier; no hook call still uses it (calls are microseconds, an update is
// at least the dozens of syscalls above).
#include "lsm_enforcer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <napi.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include "event_ring.h"
#include "ew_workload_abi.h"
#include "lsm_enforcer.skel.h"
#include "modules.h"

namespace edgeward {

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "E?") + ": " + strerror(err);
}

// libbpf's messages while loading, to explain a failure in the JS error
// (loading happens on the JS thread only).
std::string g_libbpf_log;

int CaptureLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int len = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (len <= 0) return 0;
  std::string line(static_cast<size_t>(len) + 1, '\0');
  vsnprintf(&line[0], line.size(), fmt, args);
  line.resize(static_cast<size_t>(len));
  if (level != LIBBPF_DEBUG) g_libbpf_log += line;
  if (getenv("EDGEWARD_LIBBPF_DEBUG") != nullptr) fputs(line.c_str(), stderr);
  return 0;
}

std::string LogTail(const std::string& log, size_t lines) {
  size_t pos = log.size();
  while (lines-- > 0 && pos > 0) {
    size_t nl = log.rfind('\n', pos - 1);
    if (nl == std::string::npos) return log;
    pos = nl;
  }
  return log.substr(pos == 0 ? 0 : pos + 1);
}

struct Program {
  const char* hook;  // LSM hook name (bpf_lsm_<hook> in the kernel's BTF)
  bpf_program* prog;
  bool optional;     // path_* hooks exist only with CONFIG_SECURITY_PATH
};

// Every program of the skeleton.
std::vector<Program> Programs(lsm_enforcer* skel) {
  return {
      {"bprm_check_security", skel->progs.ew_lsm_bprm_check, false},
      {"mmap_file", skel->progs.ew_lsm_mmap_file, false},
      {"file_mprotect", skel->progs.ew_lsm_file_mprotect, false},
      {"file_open", skel->progs.ew_lsm_file_open, false},
      {"path_unlink", skel->progs.ew_lsm_path_unlink, true},
      {"path_rmdir", skel->progs.ew_lsm_path_rmdir, true},
      {"path_mkdir", skel->progs.ew_lsm_path_mkdir, true},
      {"path_mknod", skel->progs.ew_lsm_path_mknod, true},
      {"path_symlink", skel->progs.ew_lsm_path_symlink, true},
      {"path_link", skel->progs.ew_lsm_path_link, true},
      {"path_rename", skel->progs.ew_lsm_path_rename, true},
      {"path_truncate", skel->progs.ew_lsm_path_truncate, true},
      {"path_chmod", skel->progs.ew_lsm_path_chmod, true},
      {"path_chown", skel->progs.ew_lsm_path_chown, true},
      {"socket_connect", skel->progs.ew_lsm_socket_connect, false},
      {"socket_bind", skel->progs.ew_lsm_socket_bind, false},
      {"socket_listen", skel->progs.ew_lsm_socket_listen, false},
      {"socket_accept", skel->progs.ew_lsm_socket_accept, false},
      {"socket_sendmsg", skel->progs.ew_lsm_socket_sendmsg, false},
      {"socket_create", skel->progs.ew_lsm_socket_create, false},
  };
}

// Whether this kernel has the LSM hook (its BTF names bpf_lsm_<hook>).
bool KernelHasHook(const char* hook) { return libbpf_find_vmlinux_btf_id(hook, BPF_LSM_MAC) > 0; }

// Closes an fd on scope exit unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// A new inner map shaped like the BPF templates (type, sizes, capacity and
// flags must equal the outer map's template for the kernel to accept it).
int CreateInner(const char* name, uint32_t key_size, uint32_t value_size, uint32_t max_entries) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  return bpf_map_create(BPF_MAP_TYPE_HASH, name, key_size, value_size, max_entries, &opts);
}

template <typename K, typename V>
void Fill(int fd, const std::vector<std::pair<K, V>>& entries, const char* what) {
  for (const auto& [key, value] : entries) {
    if (bpf_map_update_elem(fd, &key, &value, BPF_NOEXIST) != 0) {
      throw std::runtime_error(std::string("LsmEnforcer.setRules: writing a ") + what + " entry failed: " +
                               ErrnoText(errno) + "; the previous rule set stays in force");
    }
  }
}

}  // namespace

namespace {

// This process's start (/proc/self/stat field 22, clock ticks since boot):
// with the pid, what tells the agent from a later process given its pid.
uint64_t SelfStartTicks() {
  FILE* f = fopen("/proc/self/stat", "r");
  if (f == nullptr) throw std::runtime_error("LsmEnforcer: reading /proc/self/stat failed: " + ErrnoText(errno));
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (p == nullptr) throw std::runtime_error("LsmEnforcer: /proc/self/stat has no command name");
  p++;
  for (int field = 3; field <= 22 && p != nullptr; field++) {
    p = strchr(p, ' ');
    if (p != nullptr) p++;
  }
  if (p == nullptr) throw std::runtime_error("LsmEnforcer: /proc/self/stat has no starttime field");
  return strtoull(p, nullptr, 10);
}

}  // namespace

ew_lsm_gen_info LsmGenInfo(const std::vector<LsmPathEntry>& paths, const std::vector<LsmNetEntry>& nets,
                           const LsmPatterns& patterns) {
  ew_lsm_gen_info info = {};
  info.pattern_count = static_cast<uint32_t>(patterns.size());
  for (const ew_lsm_pattern& p : patterns) info.pattern_ops |= EW_LSM_POSTURE_BIT(p.op & 3);
  for (const auto& [key, value] : paths) {
    uint32_t op = key.op & 3;
    // posture entries count too: the hooks must run for a workload in
    // allow-list mode even when none of its Allow targets resolved
    info.path_entries[op]++;
    if (key.dev == 0 && key.ino == 0) {
      info.posture_ops |= EW_LSM_POSTURE_BIT(op);
      continue;
    }
    bool dir = false, recursive = false;
    for (int ro = 0; ro < 2; ro++) {
      for (int oo = 0; oo < 2; oo++) {
        if (value.v[EW_LSM_VARIANT(EW_LSM_MATCH_CHILD, ro, oo)].action != EW_ACTION_NONE) dir = true;
        if (value.allow_variants & (1u << EW_LSM_VARIANT(EW_LSM_MATCH_CHILD, ro, oo))) dir = true;
        if (value.allow_variants & (1u << EW_LSM_VARIANT(EW_LSM_MATCH_RECURSIVE, ro, oo))) dir = recursive = true;
        const ew_lsm_verdict& r = value.v[EW_LSM_VARIANT(EW_LSM_MATCH_RECURSIVE, ro, oo)];
        if (r.action == EW_ACTION_NONE) continue;
        dir = recursive = true;
        // deep: the strongest recursive verdict without a source
        ew_lsm_verdict& deep = info.deep[op][ro * 2 + oo];
        if (key.src_ino == 0 && r.action > deep.action) deep = r;
      }
    }
    if (dir) info.dir_entries[op]++;
    if (recursive) info.recursive_entries[op]++;
  }
  info.net_entries = static_cast<uint32_t>(nets.size());
  for (const auto& [key, value] : nets) {
    if (key.proto_class == EW_NET_POSTURE_CLASS) info.posture_ops |= EW_LSM_POSTURE_BIT(EW_OP_NETWORK);
    if (key.src_ino != 0) info.net_sourced++;
  }
  // the agent reaches its own files and sockets whatever the postures say
  info.agent_tgid = static_cast<uint32_t>(getpid());
  info.agent_start_ticks = SelfStartTicks();
  return info;
}

LsmEnforcer::LsmEnforcer(std::shared_ptr<EventRing> ring, const std::string& pin_dir)
    : ring_(std::move(ring)), pin_dir_(pin_dir) {
  try {
    Open();
  } catch (...) {
    // keep whatever an earlier process pinned: its rules stay in force
    Release();
    throw;
  }
}

// Only an explicit Close() removes pinned state; a pinned enforcer that is
// merely destroyed (process exit) keeps enforcing.
LsmEnforcer::~LsmEnforcer() { Release(); }

void LsmEnforcer::Open() {
  skel_ = lsm_enforcer::open();
  if (skel_ == nullptr) throw std::runtime_error("LsmEnforcer: opening the BPF object failed: " + ErrnoText(errno));
  int err = ring_->ReuseMaps(skel_->obj);
  if (err != 0) throw std::runtime_error("LsmEnforcer: reusing the event ring's maps failed: " + ErrnoText(-err));
  if (!pin_dir_.empty()) adopted_ = AdoptPinnedMaps();

  // Optional hooks the kernel lacks are not loaded (a missing attach target fails the whole object).
  for (const Program& p : Programs(skel_)) {
    if (p.optional && !KernelHasHook(p.hook)) bpf_program__set_autoload(p.prog, false);
  }
  g_libbpf_log.clear();
  libbpf_print_fn_t previous = libbpf_set_print(CaptureLibbpf);
  err = lsm_enforcer::load(skel_);
  libbpf_set_print(previous);
  if (err != 0) {
    throw std::runtime_error("LsmEnforcer: loading the LSM programs failed: " + ErrnoText(-err) +
                             " (needs root, BTF and a kernel booted with bpf in lsm=)\n" + LogTail(g_libbpf_log, 12));
  }
  for (const Program& p : Programs(skel_)) {
    if (!bpf_program__autoload(p.prog)) continue;
    bpf_link* link = bpf_program__attach_lsm(p.prog);
    if (link == nullptr) {
      int e = errno;
      throw std::runtime_error(std::string("LsmEnforcer: attaching lsm/") + p.hook + " failed: " + ErrnoText(e));
    }
    links_.emplace_back(p.hook, link);
  }
  if (!pin_dir_.empty()) PinAll();
  if (adopted_) ReadAdoptedState();
}

namespace {

// The rule maps that are pinned (and adopted), by pin file name.
std::vector<std::pair<const char*, bpf_map*>> PinnedMaps(lsm_enforcer* skel) {
  return {{"active", skel->maps.lsm_active},
          {"gen_info", skel->maps.lsm_gen_info},
          {"path_rules", skel->maps.lsm_path_rules},
          {"net_rules", skel->maps.lsm_net_rules},
          // containers: an adopting agent keeps them told apart from the host until its first setWorkloads()
          {"workloads", skel->maps.workloads},
          {"workload_count", skel->maps.workload_count},
          {"patterns", skel->maps.lsm_patterns}};
}

std::string LinkPin(const std::string& dir, const char* hook) { return dir + "/link_" + hook; }

// What is wrong with the inner maps of an adopted map-of-maps (empty: both
// generations, where present, have the given layout).
std::string InnerLayoutProblem(int outer_fd, uint32_t key_size, uint32_t value_size, uint32_t max_entries) {
  for (uint32_t gen = 0; gen < 2; gen++) {
    uint32_t id = 0;
    if (bpf_map_lookup_elem(outer_fd, &gen, &id) != 0) {
      if (errno == ENOENT) continue;  // that generation was never written
      return "an unreadable generation " + std::to_string(gen) + " (" + ErrnoText(errno) + ")";
    }
    FdGuard inner(bpf_map_get_fd_by_id(id));
    if (inner.get() < 0) return "generation " + std::to_string(gen) + "'s map id " + std::to_string(id) + ", which cannot be opened (" + ErrnoText(errno) + ")";
    bpf_map_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(inner.get(), &info, &len) != 0) return "an inner map whose info cannot be read (" + ErrnoText(errno) + ")";
    if (info.type != BPF_MAP_TYPE_HASH || info.key_size != key_size || info.value_size != value_size ||
        info.max_entries != max_entries || info.map_flags != BPF_F_NO_PREALLOC) {
      return "a generation " + std::to_string(gen) + " map of another layout (key " + std::to_string(info.key_size) + " B, value " +
             std::to_string(info.value_size) + " B, " + std::to_string(info.max_entries) + " entries; this build: " +
             std::to_string(key_size) + " B, " + std::to_string(value_size) + " B, " + std::to_string(max_entries) + ")";
    }
  }
  return "";
}

}  // namespace

// Reuses the maps an earlier process pinned; false when there are none.
// Throws when they exist but do not have this build's layout.
bool LsmEnforcer::AdoptPinnedMaps() {
  std::vector<std::pair<bpf_map*, int>> found;
  size_t missing = 0;
  for (const auto& [name, map] : PinnedMaps(skel_)) {
    std::string path = pin_dir_ + "/" + name;
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) {
      if (errno != ENOENT) {
        int e = errno;
        for (auto& f : found) close(f.second);
        throw std::runtime_error("LsmEnforcer: opening the pinned map " + path + " failed: " + ErrnoText(e));
      }
      missing++;
      continue;
    }
    bpf_map_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.type != bpf_map__type(map) ||
        info.key_size != bpf_map__key_size(map) || info.value_size != bpf_map__value_size(map) ||
        info.max_entries != bpf_map__max_entries(map)) {
      close(fd);
      for (auto& f : found) close(f.second);
      throw std::runtime_error("LsmEnforcer: the pinned map " + path +
                               " does not have this build's layout; remove the pinned state (edgeward unload) and start again");
    }
    found.emplace_back(map, fd);
  }
  // The rule maps' inner maps (made by an earlier build) must have this
  // build's layout too: the outer maps only know their template's.
  for (auto& [map, fd] : found) {
    bool path = map == skel_->maps.lsm_path_rules;
    if (!path && map != skel_->maps.lsm_net_rules) continue;
    std::string problem = InnerLayoutProblem(fd, path ? sizeof(ew_lsm_path_key) : sizeof(ew_net_rule_key),
                                             path ? sizeof(ew_lsm_path_value) : sizeof(ew_net_rule_value),
                                             path ? EW_LSM_MAX_PATH_ENTRIES : EW_LSM_MAX_NET_ENTRIES);
    if (!problem.empty()) {
      for (auto& f : found) close(f.second);
      throw std::runtime_error("LsmEnforcer: the pinned map " + pin_dir_ + "/" + (path ? "path_rules" : "net_rules") + " holds " +
                               problem + "; remove the pinned state (edgeward unload) and start again");
    }
  }
  if (found.empty()) return false;
  if (missing > 0) {
    // A pinning that was interrupted: nothing consistent to adopt.
    for (auto& f : found) close(f.second);
    Unpin();
    return false;
  }
  for (auto& [map, fd] : found) {
    int err = bpf_map__reuse_fd(map, fd);
    close(fd);  // reuse_fd duplicated it
    if (err != 0) throw std::runtime_error("LsmEnforcer: reusing a pinned map failed: " + ErrnoText(-err));
  }
  return true;
}

// Pins the maps (unless adopted: they are already) and the links; an
// adopted directory's old links are replaced one by one, each after its
// successor is attached, so every hook stays enforced throughout.
void LsmEnforcer::PinAll() {
  if (mkdir(pin_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("LsmEnforcer: creating the pin directory " + pin_dir_ + " failed: " + ErrnoText(errno) +
                             " (is bpffs mounted at /sys/fs/bpf?)");
  }
  if (!adopted_) {
    for (const auto& [name, map] : PinnedMaps(skel_)) {
      std::string path = pin_dir_ + "/" + name;
      int err = bpf_map__pin(map, path.c_str());
      if (err != 0) throw std::runtime_error("LsmEnforcer: pinning " + path + " failed: " + ErrnoText(-err));
    }
  }
  // Each link is pinned under a temporary name, then renamed over the old
  // pin: the name always holds a link (the old one or the new one), so a
  // crash at any point leaves every hook enforced by one of them.
  for (const auto& [hook, link] : links_) {
    std::string path = LinkPin(pin_dir_, hook.c_str());
    std::string tmp = path + "__new";  // bpffs refuses names with a dot (EPERM)
    if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
      throw std::runtime_error("LsmEnforcer: removing the leftover " + tmp + " failed: " + ErrnoText(errno));
    }
    if (bpf_obj_pin(bpf_link__fd(link), tmp.c_str()) != 0) {
      throw std::runtime_error("LsmEnforcer: pinning " + tmp + " failed: " + ErrnoText(errno));
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      int e = errno;
      unlink(tmp.c_str());
      throw std::runtime_error("LsmEnforcer: renaming " + tmp + " to " + path + " failed: " + ErrnoText(e));
    }
  }
}

// Removes every pin of the directory (links first: their programs detach
// once this process's handles are gone too), then the directory.
void LsmEnforcer::Unpin() {
  if (pin_dir_.empty()) return;
  for (const Program& p : Programs(skel_)) {
    unlink(LinkPin(pin_dir_, p.hook).c_str());
    unlink((LinkPin(pin_dir_, p.hook) + "__new").c_str());
  }
  for (const auto& [name, map] : PinnedMaps(skel_)) unlink((pin_dir_ + "/" + name).c_str());
  rmdir(pin_dir_.c_str());
}

// The generation in force and its summary, as the earlier process left them.
void LsmEnforcer::ReadAdoptedState() {
  const uint32_t zero = 0;
  uint32_t active = 0;
  if (bpf_map_lookup_elem(MapFd("active"), &zero, &active) != 0) active = 0;
  active_ = active & 1;
  ew_lsm_gen_info info = {};
  if (bpf_map_lookup_elem(MapFd("info"), &active_, &info) == 0) {
    generation_ = info.generation;
    path_count_[active_] = info.path_entries[EW_OP_PROCESS] + info.path_entries[EW_OP_FILE];
    net_count_[active_] = info.net_entries;
  }
  // This process is the agent now (exempt from postures): the summaries
  // differ only in agent_tgid, so a hook reading one while it is rewritten
  // sees the same rules either way.
  for (uint32_t gen = 0; gen < 2; gen++) {
    ew_lsm_gen_info g = {};
    if (bpf_map_lookup_elem(MapFd("info"), &gen, &g) != 0) continue;
    g.agent_tgid = static_cast<uint32_t>(getpid());
    g.agent_start_ticks = SelfStartTicks();
    if (bpf_map_update_elem(MapFd("info"), &gen, &g, BPF_ANY) != 0) {
      throw std::runtime_error("LsmEnforcer: taking over the adopted rules (agent tgid) failed: " + ErrnoText(errno));
    }
  }
}

int LsmEnforcer::MapFd(const char* which) const {
  std::string w = which;
  if (w == "active") return bpf_map__fd(skel_->maps.lsm_active);
  if (w == "info") return bpf_map__fd(skel_->maps.lsm_gen_info);
  if (w == "path") return bpf_map__fd(skel_->maps.lsm_path_rules);
  return bpf_map__fd(skel_->maps.lsm_net_rules);
}

void LsmEnforcer::SetRules(const std::vector<LsmPathEntry>& paths, const std::vector<LsmNetEntry>& nets,
                           const LsmPatterns& patterns) {
  if (patterns.size() > EW_LSM_MAX_PATTERNS) {
    throw std::range_error("LsmEnforcer.setRules: " + std::to_string(patterns.size()) + " pattern entries (at most " +
                           std::to_string(EW_LSM_MAX_PATTERNS) + "); the rule set was refused, the previous one stays in force");
  }
  if (paths.size() > EW_LSM_MAX_PATH_ENTRIES || nets.size() > EW_LSM_MAX_NET_ENTRIES) {
    throw std::range_error("LsmEnforcer.setRules: " + std::to_string(paths.size()) + " path entries (at most " +
                           std::to_string(EW_LSM_MAX_PATH_ENTRIES) + ") and " + std::to_string(nets.size()) +
                           " network entries (at most " + std::to_string(EW_LSM_MAX_NET_ENTRIES) +
                           "); the rule set was refused, the previous one stays in force");
  }
  const uint32_t next = 1 - active_;
  FdGuard path_fd(CreateInner("ew_lsm_path", sizeof(ew_lsm_path_key), sizeof(ew_lsm_path_value),
                              EW_LSM_MAX_PATH_ENTRIES));
  if (path_fd.get() < 0) {
    throw std::runtime_error("LsmEnforcer.setRules: creating the path rule map failed: " + ErrnoText(errno));
  }
  FdGuard net_fd(CreateInner("ew_lsm_net", sizeof(ew_net_rule_key), sizeof(ew_net_rule_value),
                             EW_LSM_MAX_NET_ENTRIES));
  if (net_fd.get() < 0) {
    throw std::runtime_error("LsmEnforcer.setRules: creating the network rule map failed: " + ErrnoText(errno));
  }
  Fill(path_fd.get(), paths, "path rule");
  Fill(net_fd.get(), nets, "network rule");

  ew_lsm_gen_info info = LsmGenInfo(paths, nets, patterns);
  info.generation = generation_ + 1;
  auto fail = [](const char* step) {
    throw std::runtime_error(std::string("LsmEnforcer.setRules: ") + step + " failed: " + ErrnoText(errno) +
                             "; the previous rule set stays in force");
  };
  // The next generation's pattern slots: not read until it is switched in.
  for (uint32_t i = 0; i < patterns.size(); i++) {
    uint32_t slot = next * EW_LSM_MAX_PATTERNS + i;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lsm_patterns), &slot, &patterns[i], BPF_ANY) != 0) fail("writing a pattern rule");
  }
  // The generation being written is not in force: these three are not seen yet.
  if (bpf_map_update_elem(MapFd("info"), &next, &info, BPF_ANY) != 0) fail("writing the generation summary");
  int pfd = path_fd.get(), nfd = net_fd.get();
  if (bpf_map_update_elem(MapFd("path"), &next, &pfd, BPF_ANY) != 0) fail("installing the path rule map");
  if (bpf_map_update_elem(MapFd("net"), &next, &nfd, BPF_ANY) != 0) fail("installing the network rule map");
  const uint32_t zero = 0;
  if (bpf_map_update_elem(MapFd("active"), &zero, &next, BPF_ANY) != 0) fail("switching to the new rule set");

  if (path_fd_[next] >= 0) close(path_fd_[next]);
  if (net_fd_[next] >= 0) close(net_fd_[next]);
  path_fd_[next] = path_fd.release();
  net_fd_[next] = net_fd.release();
  path_count_[next] = static_cast<uint32_t>(paths.size());
  net_count_[next] = static_cast<uint32_t>(nets.size());
  active_ = next;
  generation_++;
}

// New and changed entries first, then stale ones deleted (a container that
// stays keeps its entry throughout), then the count the programs check
// before looking anything up.
void LsmEnforcer::SetWorkloads(const LsmWorkloadSet& workloads, uint32_t containers) {
  if (workloads.size() > 2 * EW_MAX_WORKLOADS || containers > EW_MAX_WORKLOADS) {
    throw std::range_error("LsmEnforcer.setWorkloads: " + std::to_string(containers) + " workloads, at most " +
                           std::to_string(EW_MAX_WORKLOADS) + " are supported; nothing changed");
  }
  const int fd = bpf_map__fd(skel_->maps.workloads);
  for (const auto& [key, value] : workloads) {
    if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
      throw std::runtime_error("LsmEnforcer.setWorkloads: adding namespace " + std::to_string(key.ns_inum) + " failed: " +
                               ErrnoText(errno));
    }
  }
  std::vector<ew_workload_key> stale;
  ew_workload_key key = {}, next = {};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (workloads.count(next) == 0) stale.push_back(next);
    key = next;
    prev = &key;
  }
  for (const ew_workload_key& k : stale) {
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      throw std::runtime_error("LsmEnforcer.setWorkloads: removing a stale namespace failed: " + ErrnoText(errno));
    }
  }
  const uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.workload_count), &zero, &containers, BPF_ANY) != 0) {
    throw std::runtime_error("LsmEnforcer.setWorkloads: writing the workload count failed: " + ErrnoText(errno));
  }
}

void LsmEnforcer::EnableStats() {
  if (stats_fd_ >= 0) return;
  stats_fd_ = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd_ < 0) {
    int e = errno;
    stats_fd_ = -1;
    throw std::runtime_error("LsmEnforcer.enableStats: BPF_ENABLE_STATS failed: " + ErrnoText(e));
  }
}

LsmEnforcerStats LsmEnforcer::Stats() const {
  LsmEnforcerStats s = {};
  s.generation = generation_;
  s.active = active_;
  s.path_entries = path_count_[active_];
  s.net_entries = net_count_[active_];
  for (const Program& prog : Programs(skel_)) {
    if (!bpf_program__autoload(prog.prog)) continue;
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    LsmProgramStats p = {prog.hook, 0, 0};
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog.prog), &info, &len) == 0) {
      p.run_count = info.run_cnt;
      p.run_time_ns = info.run_time_ns;
    }
    s.programs.push_back(p);
  }
  return s;
}

std::vector<uint32_t> LsmEnforcer::MapIds() const {
  std::vector<uint32_t> ids;
  for (const auto& [name, map] : PinnedMaps(skel_)) {
    bpf_map_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len) == 0) ids.push_back(info.id);
  }
  return ids;
}

std::vector<std::string> LsmEnforcer::Attached() const {
  std::vector<std::string> names;
  for (const auto& link : links_) names.push_back(link.first);
  return names;
}

void LsmEnforcer::Close() {
  if (skel_ != nullptr) Unpin();
  Release();
}

void LsmEnforcer::Release() {
  // Closing a pinned link's fd leaves it attached (the pin holds it).
  for (auto& link : links_) bpf_link__destroy(link.second);
  links_.clear();
  if (skel_ != nullptr) lsm_enforcer::destroy(skel_);
  skel_ = nullptr;
  for (int g = 0; g < 2; g++) {
    if (path_fd_[g] >= 0) close(path_fd_[g]);
    if (net_fd_[g] >= 0) close(net_fd_[g]);
    path_fd_[g] = net_fd_[g] = -1;
  }
  if (stats_fd_ >= 0) close(stats_fd_);
  stats_fd_ = -1;
  ring_.reset();
}

// JS wrapper -------------------------------------------------------------------

namespace {

const char kUsage[] = "LsmEnforcer(ring: EventRing, options?: {pinDir?: string})";

// Reads and checks fields of one JS object; errors name the element and field.
class FieldReader {
 public:
  FieldReader(Napi::Env env, std::string prefix) : env_(env), prefix_(std::move(prefix)) {}

  [[noreturn]] void Fail(const char* field, const std::string& what, Napi::Value got) const {
    std::string shown = got.IsUndefined() ? "undefined" : got.ToString().Utf8Value();
    throw Napi::TypeError::New(env_, prefix_ + field + " must be " + what + ", got " + shown);
  }

  uint32_t Uint32(Napi::Object o, const char* field, uint32_t min, uint32_t max, const std::string& what) const {
    Napi::Value v = o.Get(field);
    if (!v.IsNumber()) Fail(field, what, v);
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) Fail(field, what, v);
    return static_cast<uint32_t>(d);
  }

  uint64_t BigUint64(Napi::Object o, const char* field) const {
    Napi::Value v = o.Get(field);
    const char* what = "a bigint in 0n..2n**64n-1n";
    if (!v.IsBigInt()) Fail(field, what, v);
    bool lossless = false;
    uint64_t n = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) Fail(field, what, v);
    return n;
  }

  bool Bool(Napi::Object o, const char* field) const {
    Napi::Value v = o.Get(field);
    if (!v.IsBoolean()) Fail(field, "a boolean", v);
    return v.As<Napi::Boolean>().Value();
  }

  // Common checks of a (dev, ino) pair that may be 0/0.
  void Device(Napi::Object o, const char* field, uint64_t dev) const {
    if (dev > UINT32_MAX) Fail(field, "a kernel dev_t (major << 20 | minor, below 2n**32n)", o.Get(field));
  }

 private:
  Napi::Env env_;
  std::string prefix_;
};

struct PathKeyLess {
  bool operator()(const ew_lsm_path_key& a, const ew_lsm_path_key& b) const {
    return std::tie(a.workload, a.dev, a.ino, a.src_dev, a.src_ino, a.op) <
           std::tie(b.workload, b.dev, b.ino, b.src_dev, b.src_ino, b.op);
  }
};

struct NetKeyLess {
  bool operator()(const ew_net_rule_key& a, const ew_net_rule_key& b) const {
    return std::tie(a.workload, a.src_dev, a.src_ino, a.proto_class) <
           std::tie(b.workload, b.src_dev, b.src_ino, b.proto_class);
  }
};

LsmPathEntry ReadPathEntry(Napi::Env env, Napi::Value item, uint32_t index) {
  std::string prefix = "LsmEnforcer.setRules: paths[" + std::to_string(index) + "].";
  FieldReader r(env, prefix);
  if (!item.IsObject()) throw Napi::TypeError::New(env, prefix.substr(0, prefix.size() - 1) + " must be an object");
  Napi::Object o = item.As<Napi::Object>();
  ew_lsm_path_key key = {};
  ew_lsm_path_value value = {};
  key.workload = r.BigUint64(o, "workload");  // 0n: the host; else a container (setWorkloads)
  key.op = r.Uint32(o, "op", EW_OP_PROCESS, EW_OP_FILE, "1 (Process) or 2 (File)");
  key.dev = r.BigUint64(o, "dev");
  key.ino = r.BigUint64(o, "ino");
  r.Device(o, "dev", key.dev);
  if (key.dev == 0 || key.ino == 0) r.Fail(key.dev == 0 ? "dev" : "ino", "non-zero (a target inode)", o.Get(key.dev == 0 ? "dev" : "ino"));
  key.src_dev = r.BigUint64(o, "srcDev");
  key.src_ino = r.BigUint64(o, "srcIno");
  r.Device(o, "srcDev", key.src_dev);
  if ((key.src_dev == 0) != (key.src_ino == 0)) {
    const char* f = key.src_dev == 0 ? "srcDev" : "srcIno";
    r.Fail(f, "non-zero when the other of srcDev/srcIno is (both 0n: any source)", o.Get(f));
  }
  value.has_sourced = r.Bool(o, "hasSourced") ? 1 : 0;
  if (value.has_sourced && key.src_ino != 0) {
    r.Fail("hasSourced", "false on an entry with a source (it belongs on the any-source entry)", o.Get("hasSourced"));
  }
  Napi::Value vs = o.Get("verdicts");
  if (!vs.IsArray() || vs.As<Napi::Array>().Length() != EW_LSM_VARIANTS) {
    r.Fail("verdicts", "an array of " + std::to_string(EW_LSM_VARIANTS) + " {ruleId, action}", vs);
  }
  Napi::Value allow = o.Get("allowVariants");
  if (!allow.IsUndefined()) {
    value.allow_variants = r.Uint32(o, "allowVariants", 0, (1u << EW_LSM_VARIANTS) - 1,
                                    "a bit mask of variants with an Allow rule (0..4095)");
  }
  Napi::Array arr = vs.As<Napi::Array>();
  for (uint32_t i = 0; i < EW_LSM_VARIANTS; i++) {
    Napi::Value v = arr.Get(i);
    FieldReader vr(env, prefix + "verdicts[" + std::to_string(i) + "].");
    if (!v.IsObject()) r.Fail("verdicts", "an array of {ruleId, action} objects", vs);
    Napi::Object vo = v.As<Napi::Object>();
    value.v[i].rule_id = vr.Uint32(vo, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
    value.v[i].action = vr.Uint32(vo, "action", EW_ACTION_NONE, EW_ACTION_BLOCK, "0 (none), 1 (Audit) or 2 (Block)");
  }
  return {key, value};
}

LsmNetEntry ReadNetEntry(Napi::Env env, Napi::Value item, uint32_t index) {
  std::string prefix = "LsmEnforcer.setRules: net[" + std::to_string(index) + "].";
  FieldReader r(env, prefix);
  if (!item.IsObject()) throw Napi::TypeError::New(env, prefix.substr(0, prefix.size() - 1) + " must be an object");
  Napi::Object o = item.As<Napi::Object>();
  ew_net_rule_key key = {};
  ew_net_rule_value value = {};
  value.rule_id = r.Uint32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
  value.action = r.Uint32(o, "action", EW_ACTION_AUDIT, EW_ACTION_ALLOW, "1 (Audit), 2 (Block) or 3 (Allow)");
  key.proto_class = r.Uint32(o, "protoClass", EW_PROTO_TCP, EW_PROTO_RAW, "an integer in 1..5 (tcp, udp, icmp, icmpv6, raw)");
  key.workload = r.BigUint64(o, "workload");
  key.src_dev = r.BigUint64(o, "srcDev");
  key.src_ino = r.BigUint64(o, "srcIno");
  r.Device(o, "srcDev", key.src_dev);
  if ((key.src_dev == 0) != (key.src_ino == 0)) {
    const char* f = key.src_dev == 0 ? "srcDev" : "srcIno";
    r.Fail(f, "non-zero when the other of srcDev/srcIno is (both 0n: any source)", o.Get(f));
  }
  return {key, value};
}

int NetRank(uint32_t action) {
  return action == EW_ACTION_BLOCK ? 3 : action == EW_ACTION_ALLOW ? 2 : action == EW_ACTION_AUDIT ? 1 : 0;
}

// set.postures (optional): {workload, op, ruleId, action} per workload in
// allow-list mode for op (1 process, 2 file, 3 network), added as the
// reserved posture entries (include/ew_lsm_abi.h).
void ReadPostures(Napi::Env env, Napi::Object set, std::vector<LsmPathEntry>* paths,
                  std::map<ew_net_rule_key, ew_net_rule_value, NetKeyLess>* nets) {
  Napi::Value v = set.Get("postures");
  if (v.IsUndefined()) return;
  if (!v.IsArray()) throw Napi::TypeError::New(env, "LsmEnforcer.setRules: set.postures must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 3 * (EW_MAX_WORKLOADS + 1)) {
    throw Napi::RangeError::New(env, "LsmEnforcer.setRules: " + std::to_string(a.Length()) + " postures, at most one per op and workload");
  }
  std::set<std::pair<uint64_t, uint32_t>> seen;
  for (uint32_t i = 0; i < a.Length(); i++) {
    std::string prefix = "LsmEnforcer.setRules: postures[" + std::to_string(i) + "].";
    FieldReader r(env, prefix);
    Napi::Value item = a.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, prefix.substr(0, prefix.size() - 1) + " must be an object");
    Napi::Object o = item.As<Napi::Object>();
    uint64_t workload = r.BigUint64(o, "workload");
    uint32_t op = r.Uint32(o, "op", EW_OP_PROCESS, EW_OP_NETWORK, "1 (process), 2 (file) or 3 (network)");
    uint32_t rule_id = r.Uint32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
    uint32_t action = r.Uint32(o, "action", EW_ACTION_AUDIT, EW_ACTION_BLOCK, "1 (Audit) or 2 (Block)");
    if (!seen.emplace(workload, op).second) r.Fail("op", "given once per workload", o.Get("op"));
    if (op == EW_OP_NETWORK) {
      ew_net_rule_key key = {};
      key.workload = workload;
      key.proto_class = EW_NET_POSTURE_CLASS;
      (*nets)[key] = ew_net_rule_value{rule_id, action};
    } else {
      ew_lsm_path_key key = {};
      ew_lsm_path_value value = {};
      key.workload = workload;
      key.op = op;
      value.v[0] = ew_lsm_verdict{rule_id, action};
      paths->emplace_back(key, value);
    }
  }
}

// set.patterns (optional): pattern and execname rules (include/ew_lsm_abi.h).
LsmPatterns ReadPatterns(Napi::Env env, Napi::Object set) {
  LsmPatterns out;
  Napi::Value v = set.Get("patterns");
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(env, "LsmEnforcer.setRules: set.patterns must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > EW_LSM_MAX_PATTERNS) {
    throw Napi::RangeError::New(env, "LsmEnforcer.setRules: " + std::to_string(a.Length()) + " pattern entries, at most " +
                                         std::to_string(EW_LSM_MAX_PATTERNS) + " are supported; the rule set was refused, the previous one stays in force");
  }
  for (uint32_t i = 0; i < a.Length(); i++) {
    std::string prefix = "LsmEnforcer.setRules: patterns[" + std::to_string(i) + "].";
    FieldReader r(env, prefix);
    Napi::Value item = a.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, prefix.substr(0, prefix.size() - 1) + " must be an object");
    Napi::Object o = item.As<Napi::Object>();
    ew_lsm_pattern p = {};
    p.workload = r.BigUint64(o, "workload");
    p.op = r.Uint32(o, "op", EW_OP_PROCESS, EW_OP_FILE, "1 (Process) or 2 (File)");
    p.rule_id = r.Uint32(o, "ruleId", 0, UINT32_MAX, "an integer in 0..4294967295");
    p.action = r.Uint32(o, "action", EW_ACTION_AUDIT, EW_ACTION_ALLOW, "1 (Audit), 2 (Block) or 3 (Allow)");
    if (r.Bool(o, "readOnly")) p.flags |= EW_LSM_PAT_READ_ONLY;
    if (r.Bool(o, "ownerOnly")) p.flags |= EW_LSM_PAT_OWNER_ONLY;
    if (r.Bool(o, "execname")) p.flags |= EW_LSM_PAT_EXECNAME;
    p.src_dev = r.BigUint64(o, "srcDev");
    p.src_ino = r.BigUint64(o, "srcIno");
    r.Device(o, "srcDev", p.src_dev);
    if ((p.src_dev == 0) != (p.src_ino == 0)) {
      const char* f = p.src_dev == 0 ? "srcDev" : "srcIno";
      r.Fail(f, "non-zero when the other of srcDev/srcIno is (both 0n: any source)", o.Get(f));
    }
    Napi::Value bytes = o.Get("bytes");
    if (!bytes.IsBuffer() || bytes.As<Napi::Buffer<uint8_t>>().Length() == 0 ||
        bytes.As<Napi::Buffer<uint8_t>>().Length() > EW_LSM_PATTERN_BYTES) {
      r.Fail("bytes", "a Buffer of 1.." + std::to_string(EW_LSM_PATTERN_BYTES) + " bytes (an encoded glob or a file name)", bytes);
    }
    Napi::Buffer<uint8_t> b = bytes.As<Napi::Buffer<uint8_t>>();
    std::memcpy(p.pattern, b.Data(), b.Length());
    p.len = static_cast<uint32_t>(b.Length());
    out.push_back(p);
  }
  return out;
}

Napi::Array ArrayField(Napi::Env env, Napi::Object set, const char* field, uint32_t max) {
  Napi::Value v = set.Get(field);
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string("LsmEnforcer.setRules: set.") + field + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > max) {
    throw Napi::RangeError::New(env, std::string("LsmEnforcer.setRules: ") + std::to_string(a.Length()) + " " + field +
                                         " entries, at most " + std::to_string(max) +
                                         " are supported; the rule set was refused, the previous one stays in force");
  }
  return a;
}

}  // namespace

class LsmEnforcerWrap : public Napi::ObjectWrap<LsmEnforcerWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "LsmEnforcer",
                                    {InstanceMethod("setRules", &LsmEnforcerWrap::SetRules),
                                     InstanceMethod("setWorkloads", &LsmEnforcerWrap::SetWorkloads),
                                     InstanceMethod("stats", &LsmEnforcerWrap::Stats),
                                     InstanceMethod("enableStats", &LsmEnforcerWrap::EnableStats),
                                     InstanceMethod("attached", &LsmEnforcerWrap::Attached),
                                     InstanceMethod("adopted", &LsmEnforcerWrap::Adopted),
                                     InstanceMethod("mapIds", &LsmEnforcerWrap::MapIds),
                                     InstanceMethod("release", &LsmEnforcerWrap::Release),
                                     InstanceMethod("close", &LsmEnforcerWrap::Close)});
    exports.Set("LsmEnforcer", fn);
    exports.Set("lsmLimits", Limits(env));
  }

  explicit LsmEnforcerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LsmEnforcerWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1) throw Napi::TypeError::New(env, kUsage);
    std::shared_ptr<EventRing> ring = EventRingWrap::Unwrap(info[0]);
    std::string pin_dir;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsObject()) throw Napi::TypeError::New(env, std::string(kUsage) + ": options must be an object");
      Napi::Value pin = info[1].As<Napi::Object>().Get("pinDir");
      if (!pin.IsUndefined()) {
        if (!pin.IsString() || pin.As<Napi::String>().Utf8Value().empty() || pin.As<Napi::String>().Utf8Value()[0] != '/') {
          throw Napi::TypeError::New(env, std::string(kUsage) + ": options.pinDir must be an absolute path on bpffs");
        }
        pin_dir = pin.As<Napi::String>().Utf8Value();
      }
    }
    try {
      enforcer_ = std::make_unique<LsmEnforcer>(ring, pin_dir);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

 private:
  static Napi::Object Limits(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("maxPathEntries", EW_LSM_MAX_PATH_ENTRIES);
    o.Set("maxNetEntries", EW_LSM_MAX_NET_ENTRIES);
    o.Set("variants", EW_LSM_VARIANTS);
    o.Set("walkMax", EW_LSM_WALK_MAX);
    o.Set("layoutVersion", EW_LSM_LAYOUT_VERSION);
    o.Set("maxPatterns", EW_LSM_MAX_PATTERNS);
    o.Set("patternBytes", EW_LSM_PATTERN_BYTES);
    return o;
  }

  LsmEnforcer& Open(Napi::Env env) {
    if (!enforcer_) throw Napi::Error::New(env, "LsmEnforcer is closed");
    return *enforcer_;
  }

  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmEnforcer& enforcer = Open(env);
    if (info.Length() < 1 || !info[0].IsObject()) {
      throw Napi::TypeError::New(env, "LsmEnforcer.setRules(set: {paths: NativeLsmPathEntry[], net: NativeNetRule[]})");
    }
    Napi::Object set = info[0].As<Napi::Object>();
    Napi::Array paths = ArrayField(env, set, "paths", EW_LSM_MAX_PATH_ENTRIES);
    Napi::Array nets = ArrayField(env, set, "net", EW_LSM_MAX_NET_ENTRIES);

    // Everything is validated before the kernel is touched.
    std::vector<LsmPathEntry> path_entries;
    path_entries.reserve(paths.Length());
    std::map<ew_lsm_path_key, uint32_t, PathKeyLess> seen;
    for (uint32_t i = 0; i < paths.Length(); i++) {
      LsmPathEntry e = ReadPathEntry(env, paths.Get(i), i);
      auto [it, inserted] = seen.emplace(e.first, i);
      if (!inserted) {
        throw Napi::TypeError::New(env, "LsmEnforcer.setRules: paths[" + std::to_string(i) + "] has the same target, op and source as paths[" +
                                            std::to_string(it->second) + "]: merge their verdicts into one entry");
      }
      path_entries.push_back(e);
    }
    // A sourced entry is only looked up when its target's any-source entry says so.
    for (uint32_t i = 0; i < path_entries.size(); i++) {
      const ew_lsm_path_key& k = path_entries[i].first;
      if (k.src_ino == 0) continue;
      ew_lsm_path_key any = k;
      any.src_dev = any.src_ino = 0;
      auto it = seen.find(any);
      if (it == seen.end() || !path_entries[it->second].second.has_sourced) {
        throw Napi::TypeError::New(env, "LsmEnforcer.setRules: paths[" + std::to_string(i) +
                                            "] has a source but no any-source entry of its target has hasSourced: true; it would never apply");
      }
    }
    std::map<ew_net_rule_key, ew_net_rule_value, NetKeyLess> net_map;
    for (uint32_t i = 0; i < nets.Length(); i++) {
      LsmNetEntry e = ReadNetEntry(env, nets.Get(i), i);
      // Two rules on one key (same source and protocol): Block, then Allow, then Audit (as on compat).
      auto [it, inserted] = net_map.emplace(e.first, e.second);
      if (!inserted && NetRank(e.second.action) > NetRank(it->second.action)) it->second = e.second;
    }
    ReadPostures(env, set, &path_entries, &net_map);
    LsmPatterns patterns = ReadPatterns(env, set);
    std::vector<LsmNetEntry> net_entries(net_map.begin(), net_map.end());
    try {
      enforcer.SetRules(path_entries, net_entries, patterns);
    } catch (const std::range_error& e) {
      throw Napi::RangeError::New(env, e.what());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("pathEntries", static_cast<double>(path_entries.size()));
    out.Set("netEntries", static_cast<double>(net_entries.size()));
    return out;
  }

  Napi::Value SetWorkloads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmEnforcer& enforcer = Open(env);
    const char* usage = "LsmEnforcer.setWorkloads(workloads: Array<{workload, mntNs, pidNs}>)";
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, usage);
    Napi::Array arr = info[0].As<Napi::Array>();
    if (arr.Length() > EW_MAX_WORKLOADS) {
      throw Napi::RangeError::New(env, "LsmEnforcer.setWorkloads: " + std::to_string(arr.Length()) + " workloads, at most " +
                                           std::to_string(EW_MAX_WORKLOADS) + " are supported; nothing changed");
    }
    // Every entry is checked before the map is touched.
    LsmWorkloadSet set;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      const std::string prefix = "LsmEnforcer.setWorkloads: workloads[" + std::to_string(i) + "].";
      Napi::Value item = arr.Get(i);
      if (!item.IsObject() || item.IsArray()) {
        throw Napi::TypeError::New(env, prefix.substr(0, prefix.size() - 1) + " must be an object {workload, mntNs, pidNs}");
      }
      Napi::Object o = item.As<Napi::Object>();
      FieldReader r(env, prefix);
      ew_workload_value value = {};
      value.workload = r.BigUint64(o, "workload");
      if (value.workload == 0) r.Fail("workload", "a bigint other than 0n (0n is the host)", o.Get("workload"));
      ew_workload_key mkey = {};
      mkey.ns_inum = r.Uint32(o, "mntNs", 1, UINT32_MAX, "a mount namespace inode number (1..4294967295)");
      mkey.ns_kind = EW_NS_MNT;
      uint32_t pid_ns = r.Uint32(o, "pidNs", 0, UINT32_MAX, "a pid namespace inode number (0: none)");
      if (!set.emplace(mkey, value).second) r.Fail("mntNs", "named once only", o.Get("mntNs"));
      if (pid_ns != 0) {
        ew_workload_key pkey = {};
        pkey.ns_inum = pid_ns;
        pkey.ns_kind = EW_NS_PID;
        set.emplace(pkey, value);  // a shared pid namespace (--pid=container:): the first container keeps it
      }
    }
    try {
      enforcer.SetWorkloads(set, arr.Length());
    } catch (const std::range_error& e) {
      throw Napi::RangeError::New(env, e.what());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }

  Napi::Value EnableStats(const Napi::CallbackInfo& info) {
    try {
      Open(info.Env()).EnableStats();
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LsmEnforcerStats s = Open(env).Stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("generation", static_cast<double>(s.generation));
    o.Set("active", s.active);
    o.Set("pathEntries", s.path_entries);
    o.Set("netEntries", s.net_entries);
    Napi::Array programs = Napi::Array::New(env, s.programs.size());
    for (size_t i = 0; i < s.programs.size(); i++) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("name", s.programs[i].name);
      p.Set("runCount", static_cast<double>(s.programs[i].run_count));
      p.Set("runTimeNs", static_cast<double>(s.programs[i].run_time_ns));
      programs.Set(static_cast<uint32_t>(i), p);
    }
    o.Set("programs", programs);
    return o;
  }

  Napi::Value Attached(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<std::string> names = Open(env).Attached();
    Napi::Array a = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); i++) a.Set(static_cast<uint32_t>(i), names[i]);
    return a;
  }

  Napi::Value Adopted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Open(info.Env()).adopted()); }

  // Ids of the rule maps (what self-protection keeps others from writing).
  Napi::Value MapIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint32_t> ids = Open(env).MapIds();
    Napi::Array a = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) a.Set(static_cast<uint32_t>(i), ids[i]);
    return a;
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (enforcer_) enforcer_->Release();
    enforcer_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (enforcer_) enforcer_->Close();
    enforcer_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<LsmEnforcer> enforcer_;
};

void InitLsmEnforcer(Napi::Env env, Napi::Object exports) { LsmEnforcerWrap::Init(env, exports); }

}  // namespace edgeward
