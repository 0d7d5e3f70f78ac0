// LsmSelfProtect: the agent's protection of itself (bpf/lsm_self_protect.bpf.c).
//
// Loads and attaches the programs (not pinned: they end with this process),
// then protect() says what is protected: inodes (exact or a whole tree),
// filesystems that cannot be unmounted, BPF map ids. The agent (this
// process's tgid) and the stopper (the service manager) are named at
// construction.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ew_self_protect_abi.h"
#include "lsm_self_protect.skel.h"
#include "modules.h"

namespace edgeward {

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "E?") + ": " + strerror(err);
}

struct Hook {
  const char* hook;
  bpf_program* prog;
  // path_* hooks exist only with CONFIG_SECURITY_PATH, others only on newer kernels
  bool optional;
  // the hook's argument count this program is written for (0: any); the
  // variant for another count is not loaded
  int args = 0;
};

std::vector<Hook> Hooks(lsm_self_protect* skel) {
  return {
      {"task_kill", skel->progs.ew_sp_task_kill, false},
      {"ptrace_access_check", skel->progs.ew_sp_ptrace, false},
      {"file_send_sigiotask", skel->progs.ew_sp_file_send_sigiotask, false},
      {"file_open", skel->progs.ew_sp_file_open, false},
      {"path_unlink", skel->progs.ew_sp_path_unlink, true},
      {"path_rmdir", skel->progs.ew_sp_path_rmdir, true},
      {"path_mkdir", skel->progs.ew_sp_path_mkdir, true},
      {"path_mknod", skel->progs.ew_sp_path_mknod, true},
      {"path_symlink", skel->progs.ew_sp_path_symlink, true},
      {"path_link", skel->progs.ew_sp_path_link, true},
      {"path_rename", skel->progs.ew_sp_path_rename, true},
      {"path_truncate", skel->progs.ew_sp_path_truncate, true},
      {"path_chmod", skel->progs.ew_sp_path_chmod, true},
      {"path_chown", skel->progs.ew_sp_path_chown, true},
      {"sb_umount", skel->progs.ew_sp_sb_umount, false},
      {"sb_mount", skel->progs.ew_sp_sb_mount, false},
      {"move_mount", skel->progs.ew_sp_move_mount, false},
      {"sb_pivotroot", skel->progs.ew_sp_sb_pivotroot, false},
      {"inode_setattr", skel->progs.ew_sp_inode_setattr, false, 3},        // 6.8+: idmap, dentry, attr
      {"inode_setattr", skel->progs.ew_sp_inode_setattr_nomnt, false, 2},  // dentry, attr
      {"inode_setxattr", skel->progs.ew_sp_inode_setxattr, false},
      {"inode_removexattr", skel->progs.ew_sp_inode_removexattr, false},
      {"inode_set_acl", skel->progs.ew_sp_inode_set_acl, true},          // 6.2+
      {"inode_remove_acl", skel->progs.ew_sp_inode_remove_acl, true},    // 6.2+
      {"inode_file_setattr", skel->progs.ew_sp_inode_file_setattr, true},  // 6.17+
      {"file_ioctl", skel->progs.ew_sp_file_ioctl, false},
      {"file_ioctl_compat", skel->progs.ew_sp_file_ioctl_compat, true},  // 6.8+, backported to 6.1.y
      {"task_setrlimit", skel->progs.ew_sp_task_setrlimit, false},
      {"task_setnice", skel->progs.ew_sp_task_setnice, false},
      {"task_setscheduler", skel->progs.ew_sp_task_setscheduler, false},
      {"task_setioprio", skel->progs.ew_sp_task_setioprio, false},
      {"bpf_map", skel->progs.ew_sp_bpf_map, false},
  };
}

// The running kernel's LSM hooks: name -> argument count (bpf_lsm_<hook>'s prototype in its BTF).
class KernelHooks {
 public:
  KernelHooks() : btf_(btf__load_vmlinux_btf()) {
    if (btf_ == nullptr) throw std::runtime_error("LsmSelfProtect: reading the kernel's BTF failed: " + ErrnoText(errno));
  }
  ~KernelHooks() { btf__free(btf_); }
  KernelHooks(const KernelHooks&) = delete;
  KernelHooks& operator=(const KernelHooks&) = delete;

  // -1: the kernel has no such hook
  int Args(const char* hook) const {
    int id = btf__find_by_name_kind(btf_, (std::string("bpf_lsm_") + hook).c_str(), BTF_KIND_FUNC);
    if (id <= 0) return -1;
    const btf_type* proto = btf__type_by_id(btf_, btf__type_by_id(btf_, id)->type);
    return proto != nullptr && btf_is_func_proto(proto) ? btf_vlen(proto) : -1;
  }

 private:
  btf* btf_;
};

struct InodeKeyLess {
  bool operator()(const ew_sp_inode_key& a, const ew_sp_inode_key& b) const {
    return a.dev != b.dev ? a.dev < b.dev : a.ino < b.ino;
  }
};

const char kUsage[] = "LsmSelfProtect(options: {agentPid: number, stopperPid: number})";

uint32_t Pid(Napi::Env env, Napi::Object o, const char* field, bool zero_ok) {
  Napi::Value v = o.Get(field);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= (zero_ok ? 0 : 1) && d <= 4194304) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::TypeError::New(env, std::string(kUsage) + ": options." + field + " must be a process id" +
                                        (zero_ok ? " (0: nobody)" : "") + ", got " +
                                        (v.IsUndefined() ? "undefined" : v.ToString().Utf8Value()));
  }
  return static_cast<uint32_t>(d);
}

uint64_t BigU64(Napi::Env env, Napi::Value v, const std::string& where) {
  bool lossless = false;
  uint64_t n = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
  if (!v.IsBigInt() || !lossless) throw Napi::TypeError::New(env, "LsmSelfProtect.protect: " + where + " must be a bigint in 0n..2n**64n-1n");
  return n;
}

}  // namespace

class LsmSelfProtectWrap : public Napi::ObjectWrap<LsmSelfProtectWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "LsmSelfProtect",
                                    {InstanceMethod("protect", &LsmSelfProtectWrap::Protect),
                                     InstanceMethod("stats", &LsmSelfProtectWrap::Stats),
                                     InstanceMethod("attached", &LsmSelfProtectWrap::Attached),
                                     InstanceMethod("mapIds", &LsmSelfProtectWrap::MapIds),
                                     InstanceMethod("close", &LsmSelfProtectWrap::Close)});
    exports.Set("LsmSelfProtect", fn);
  }

  explicit LsmSelfProtectWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LsmSelfProtectWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, kUsage);
    Napi::Object o = info[0].As<Napi::Object>();
    config_.agent_tgid = Pid(env, o, "agentPid", false);
    config_.stopper_tgid = Pid(env, o, "stopperPid", true);
    try {
      Open();
    } catch (const std::exception& e) {
      Destroy();
      throw Napi::Error::New(env, e.what());
    }
  }

  ~LsmSelfProtectWrap() override { Destroy(); }

 private:
  void Open() {
    skel_ = lsm_self_protect::open();
    if (skel_ == nullptr) throw std::runtime_error("LsmSelfProtect: opening the BPF object failed: " + ErrnoText(errno));
    {
      KernelHooks kernel;
      for (const Hook& h : Hooks(skel_)) {
        int args = kernel.Args(h.hook);
        if ((args < 0 && h.optional) || (args >= 0 && h.args != 0 && args != h.args)) {
          bpf_program__set_autoload(h.prog, false);
        } else if (args < 0) {
          throw std::runtime_error(std::string("LsmSelfProtect: the kernel has no LSM hook ") + h.hook);
        }
      }
    }
    int err = lsm_self_protect::load(skel_);
    if (err != 0) {
      throw std::runtime_error("LsmSelfProtect: loading the programs failed: " + ErrnoText(-err) +
                               " (needs root, BTF and a kernel booted with bpf in lsm=)");
    }
    for (const Hook& h : Hooks(skel_)) {
      if (!bpf_program__autoload(h.prog)) continue;
      bpf_link* link = bpf_program__attach_lsm(h.prog);
      if (link == nullptr) {
        int e = errno;
        throw std::runtime_error(std::string("LsmSelfProtect: attaching lsm/") + h.hook + " failed: " + ErrnoText(e));
      }
      links_.emplace_back(h.hook, link);
    }
    // its own maps are protected like the enforcer's
    for (bpf_map* m : {skel_->maps.ew_sp_config, skel_->maps.ew_sp_inodes, skel_->maps.ew_sp_map_ids, skel_->maps.ew_sp_agent}) {
      bpf_map_info mi = {};
      uint32_t len = sizeof(mi);
      if (bpf_obj_get_info_by_fd(bpf_map__fd(m), &mi, &len) != 0) {
        throw std::runtime_error("LsmSelfProtect: reading its map ids failed: " + ErrnoText(errno));
      }
      own_map_ids_.push_back(mi.id);
    }
    SetMapIds({});
    // last: from here on the agent is protected
    const uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.ew_sp_config), &zero, &config_, BPF_ANY) != 0) {
      throw std::runtime_error("LsmSelfProtect: writing its configuration failed: " + ErrnoText(errno));
    }
    NoteAgentTask();
  }

  // The bpf_map hook notes the agent's task when the agent opens a map fd:
  // open one (when this process is the agent), and check it was noted.
  void NoteAgentTask() {
    if (config_.agent_tgid != static_cast<uint32_t>(getpid())) return;  // a test protecting another process
    int fd = bpf_map_get_fd_by_id(own_map_ids_[0]);
    if (fd < 0) throw std::runtime_error("LsmSelfProtect: reopening its own map failed: " + ErrnoText(errno));
    close(fd);
    const uint32_t zero = 0;
    ew_sp_agent agent = {};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.ew_sp_agent), &zero, &agent) != 0 || agent.task == 0) {
      throw std::runtime_error("LsmSelfProtect: the bpf_map hook did not note the agent's task (cgroup protection would be off)");
    }
  }

  void Destroy() {
    for (auto& l : links_) bpf_link__destroy(l.second);
    links_.clear();
    if (skel_ != nullptr) lsm_self_protect::destroy(skel_);
    skel_ = nullptr;
  }

  lsm_self_protect& Skel(Napi::Env env) {
    if (skel_ == nullptr) throw Napi::Error::New(env, "LsmSelfProtect is closed");
    return *skel_;
  }

  // New entries go in before stale ones go out: what stays protected never has a gap.
  template <typename K, typename Less>
  static void Replace(int fd, const std::map<K, uint32_t, Less>& wanted, std::map<K, uint32_t, Less>& current, const char* what) {
    for (const auto& [k, v] : wanted) {
      if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) != 0) {
        throw std::runtime_error(std::string("LsmSelfProtect.protect: writing a ") + what + " failed: " + ErrnoText(errno));
      }
    }
    for (const auto& [k, v] : current) {
      if (wanted.count(k) == 0) bpf_map_delete_elem(fd, &k);
    }
    current = wanted;
  }

  void SetMapIds(const std::vector<uint32_t>& extra) {
    std::map<uint32_t, uint32_t, std::less<uint32_t>> wanted;
    for (uint32_t id : own_map_ids_) wanted[id] = 1;
    for (uint32_t id : extra) wanted[id] = 1;
    Replace(bpf_map__fd(skel_->maps.ew_sp_map_ids), wanted, map_ids_, "map id");
  }

  // protect({inodes: [{dev, ino, tree}], filesystems: [dev], mapIds: [id]}): replaces what is protected.
  Napi::Value Protect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    lsm_self_protect& skel = Skel(env);
    const char* usage =
        "LsmSelfProtect.protect(set: {inodes: {dev: bigint, ino: bigint, tree: boolean}[], ancestors: {dev: bigint, ino: bigint}[], "
        "filesystems: bigint[], mapIds: number[]})";
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, usage);
    Napi::Object set = info[0].As<Napi::Object>();
    Napi::Value inodes = set.Get("inodes"), ancestors = set.Get("ancestors"), fss = set.Get("filesystems"), ids = set.Get("mapIds");
    if (!inodes.IsArray() || !ancestors.IsArray() || !fss.IsArray() || !ids.IsArray()) throw Napi::TypeError::New(env, usage);
    std::map<ew_sp_inode_key, uint32_t, InodeKeyLess> wanted;
    Napi::Array ia = inodes.As<Napi::Array>();
    for (uint32_t i = 0; i < ia.Length(); i++) {
      std::string where = "inodes[" + std::to_string(i) + "]";
      Napi::Value e = ia.Get(i);
      if (!e.IsObject()) throw Napi::TypeError::New(env, "LsmSelfProtect.protect: " + where + " must be an object");
      Napi::Object o = e.As<Napi::Object>();
      ew_sp_inode_key k = {BigU64(env, o.Get("dev"), where + ".dev"), BigU64(env, o.Get("ino"), where + ".ino")};
      if (k.ino == 0) throw Napi::TypeError::New(env, "LsmSelfProtect.protect: " + where + ".ino must not be 0n");
      if (!o.Get("tree").IsBoolean()) throw Napi::TypeError::New(env, "LsmSelfProtect.protect: " + where + ".tree must be a boolean");
      wanted[k] |= o.Get("tree").As<Napi::Boolean>().Value() ? EW_SP_TREE : EW_SP_EXACT;
      wanted[ew_sp_inode_key{k.dev, 0}] |= EW_SP_FS_HAS_PROTECTED;  // the hooks' first lookup
    }
    Napi::Array aa = ancestors.As<Napi::Array>();
    for (uint32_t i = 0; i < aa.Length(); i++) {
      std::string where = "ancestors[" + std::to_string(i) + "]";
      Napi::Value e = aa.Get(i);
      if (!e.IsObject()) throw Napi::TypeError::New(env, "LsmSelfProtect.protect: " + where + " must be an object");
      Napi::Object o = e.As<Napi::Object>();
      ew_sp_inode_key k = {BigU64(env, o.Get("dev"), where + ".dev"), BigU64(env, o.Get("ino"), where + ".ino")};
      if (k.ino == 0) throw Napi::TypeError::New(env, "LsmSelfProtect.protect: " + where + ".ino must not be 0n");
      wanted[k] |= EW_SP_ANCESTOR;
    }
    Napi::Array fa = fss.As<Napi::Array>();
    for (uint32_t i = 0; i < fa.Length(); i++) {
      ew_sp_inode_key k = {BigU64(env, fa.Get(i), "filesystems[" + std::to_string(i) + "]"), 0};
      wanted[k] |= EW_SP_NO_UMOUNT;
    }
    if (wanted.size() > EW_SP_MAX_INODES) {
      throw Napi::RangeError::New(env, "LsmSelfProtect.protect: " + std::to_string(wanted.size()) + " inodes and filesystems, at most " +
                                           std::to_string(EW_SP_MAX_INODES));
    }
    std::vector<uint32_t> map_ids;
    Napi::Array ma = ids.As<Napi::Array>();
    for (uint32_t i = 0; i < ma.Length(); i++) {
      Napi::Value v = ma.Get(i);
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1 && d <= UINT32_MAX) || d != static_cast<double>(static_cast<uint32_t>(d))) {
        throw Napi::TypeError::New(env, "LsmSelfProtect.protect: mapIds[" + std::to_string(i) + "] must be a BPF map id");
      }
      map_ids.push_back(static_cast<uint32_t>(d));
    }
    if (map_ids.size() + own_map_ids_.size() > EW_SP_MAX_MAPS) {
      throw Napi::RangeError::New(env, "LsmSelfProtect.protect: at most " + std::to_string(EW_SP_MAX_MAPS - own_map_ids_.size()) + " map ids");
    }
    try {
      Replace(bpf_map__fd(skel.maps.ew_sp_inodes), wanted, inodes_, "protected inode");
      SetMapIds(map_ids);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    lsm_self_protect& skel = Skel(env);
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) throw Napi::Error::New(env, "LsmSelfProtect.stats: the number of CPUs is unknown");
    static_assert(EW_SP_REFUSAL_KINDS == 5 && EW_SP_REFUSED_CGROUP == 5 && EW_SP_REFUSALS == 9, "refusal names out of date");
    const char* names[EW_SP_REFUSALS] = {"signal", "ptrace", "path", "umount", "map", "cgroup", "mount", "attr", "process"};
    Napi::Object refused = Napi::Object::New(env);
    std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
    for (uint32_t k = 0; k < EW_SP_REFUSALS; k++) {
      uint64_t sum = 0;
      if (bpf_map_lookup_elem(bpf_map__fd(skel.maps.ew_sp_refused), &k, per_cpu.data()) == 0) {
        for (uint64_t n : per_cpu) sum += n;
      }
      refused.Set(names[k], static_cast<double>(sum));
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("refused", refused);
    o.Set("inodes", static_cast<double>(inodes_.size()));
    o.Set("mapIds", static_cast<double>(map_ids_.size()));
    return o;
  }

  Napi::Value Attached(const Napi::CallbackInfo& info) {
    Skel(info.Env());
    Napi::Array a = Napi::Array::New(info.Env(), links_.size());
    for (size_t i = 0; i < links_.size(); i++) a.Set(static_cast<uint32_t>(i), links_[i].first);
    return a;
  }

  Napi::Value MapIds(const Napi::CallbackInfo& info) {
    Skel(info.Env());
    Napi::Array a = Napi::Array::New(info.Env(), map_ids_.size());
    uint32_t i = 0;
    for (const auto& [id, v] : map_ids_) a.Set(i++, id);
    return a;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Destroy();
    return info.Env().Undefined();
  }

  lsm_self_protect* skel_ = nullptr;
  ew_sp_config config_ = {};
  std::vector<std::pair<std::string, bpf_link*>> links_;
  std::vector<uint32_t> own_map_ids_;
  std::map<ew_sp_inode_key, uint32_t, InodeKeyLess> inodes_;
  std::map<uint32_t, uint32_t, std::less<uint32_t>> map_ids_;
};

void InitLsmSelfProtect(Napi::Env env, Napi::Object exports) { LsmSelfProtectWrap::Init(env, exports); }

}  // namespace edgeward
