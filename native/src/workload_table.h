// The containers an enforcer tells apart from the host (bpf/include/
// ew_workload_abi.h): JS gives `{workload, mntNs, pidNs}[]`, the object's
// `workloads` hash holds one key per namespace. Shared by the parts whose
// programs include ew_workload.bpf.h.
#pragma once

#include <napi.h>

#include <map>
#include <string>
#include <tuple>

#include "ew_workload_abi.h"

namespace edgeward {

struct WorkloadKeyLess {
  bool operator()(const ew_workload_key& a, const ew_workload_key& b) const {
    return std::tie(a.ns_kind, a.ns_inum) < std::tie(b.ns_kind, b.ns_inum);
  }
};
using WorkloadSet = std::map<ew_workload_key, ew_workload_value, WorkloadKeyLess>;

// Validates a JS array of NativeWorkload (every entry before anything is
// written): a RangeError beyond EW_MAX_WORKLOADS, a TypeError naming
// `who`.setWorkloads: workloads[i].field otherwise. A pid namespace shared by
// several containers (--pid=container:) stays with the first.
WorkloadSet ParseWorkloads(Napi::Env env, Napi::Value arg, const std::string& who);

// Makes the BPF hash `fd` hold exactly `workloads`: new and changed entries
// first, then every other key in the map deleted (a container that stays
// keeps its entry throughout; entries an earlier process left in a pinned map
// go too). Throws std::runtime_error naming `who` and the namespace.
void SyncWorkloads(int fd, const WorkloadSet& workloads, const std::string& who);

// The entries of the BPF hash `fd` (an adopted, pinned map).
WorkloadSet ReadWorkloads(int fd);

}  // namespace edgeward
