// See workload_table.h.
#include "workload_table.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

#include "js_reader.h"

namespace edgeward {

WorkloadSet ParseWorkloads(Napi::Env env, Napi::Value arg, const std::string& who) {
  const std::string usage = who + ".setWorkloads(workloads: Array<{workload, mntNs, pidNs}>)";
  if (!arg.IsArray()) throw Napi::TypeError::New(env, usage);
  Napi::Array arr = arg.As<Napi::Array>();
  if (arr.Length() > EW_MAX_WORKLOADS) {
    throw Napi::RangeError::New(env, who + ".setWorkloads: " + std::to_string(arr.Length()) + " workloads, at most " +
                                         std::to_string(EW_MAX_WORKLOADS) + " are supported; nothing changed");
  }
  WorkloadSet set;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    js::Reader r(env, who + ".setWorkloads: workloads[" + std::to_string(i) + "]");
    Napi::Object o = r.Object(arr.Get(i), "an object {workload, mntNs, pidNs}");
    ew_workload_value value = {};
    value.workload = r.BigU64(o, "workload");
    if (value.workload == 0) r.Fail("workload", "a bigint other than 0n (0n is the host)", o.Get("workload"));
    uint32_t mnt = r.U32(o, "mntNs", 1, UINT32_MAX, "a mount namespace inode number (1..4294967295)");
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
  return set;
}

void SyncWorkloads(int fd, const WorkloadSet& workloads, const std::string& who) {
  for (const auto& [key, value] : workloads) {
    if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
      throw std::runtime_error(who + ".setWorkloads: adding namespace " + std::to_string(key.ns_inum) + " failed: " + js::ErrnoText(errno));
    }
  }
  std::vector<ew_workload_key> stale;
  for (const auto& [key, value] : ReadWorkloads(fd)) {
    if (workloads.count(key) == 0) stale.push_back(key);
  }
  for (const ew_workload_key& k : stale) {
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      throw std::runtime_error(who + ".setWorkloads: removing the stale namespace " + std::to_string(k.ns_inum) +
                               " failed: " + js::ErrnoText(errno));
    }
  }
}

WorkloadSet ReadWorkloads(int fd) {
  WorkloadSet found;
  ew_workload_key key = {}, next = {};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    ew_workload_value value = {};
    if (bpf_map_lookup_elem(fd, &next, &value) == 0) found.emplace(next, value);
    key = next;
    prev = &key;
  }
  return found;
}

}  // namespace edgeward
