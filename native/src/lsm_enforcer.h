// LsmEnforcer: the bpf-lsm enforcer (bpf/lsm_enforcer.bpf.c).
//
// Loads the LSM programs with the shared event ring's maps, attaches them
// (every process on the node is checked from then on), and replaces rule
// sets atomically: each set is written into fresh inner maps for the
// generation not in force, which is then switched in by one array store
// (lsm_active). Until the switch the previous set applies in full; after it
// the new one does; no hook ever sees a mix or nothing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "edgeward_abi.h"
#include "ew_lsm_abi.h"
#include "ew_workload_abi.h"

struct lsm_enforcer;
struct bpf_link;

namespace edgeward {

class EventRing;

using LsmPathEntry = std::pair<ew_lsm_path_key, ew_lsm_path_value>;
using LsmNetEntry = std::pair<ew_net_rule_key, ew_net_rule_value>;
using LsmPatterns = std::vector<ew_lsm_pattern>;

struct LsmWorkloadKeyLess {
  bool operator()(const ew_workload_key& a, const ew_workload_key& b) const {
    return a.ns_kind != b.ns_kind ? a.ns_kind < b.ns_kind : a.ns_inum < b.ns_inum;
  }
};
// The `workloads` map's entries: a mount and (optionally) a pid namespace key per container.
using LsmWorkloadSet = std::map<ew_workload_key, ew_workload_value, LsmWorkloadKeyLess>;

struct LsmProgramStats {
  std::string name;
  uint64_t run_count;    // kernel bpf_stats (counted while stats are enabled)
  uint64_t run_time_ns;
};

struct LsmEnforcerStats {
  uint64_t generation;  // rule sets switched in so far
  uint32_t active;      // lsm_active: 0 or 1
  uint32_t path_entries;
  uint32_t net_entries;
  std::vector<LsmProgramStats> programs;
};

class LsmEnforcer {
 public:
  // Throws std::runtime_error naming the step (load, attach) that failed.
  //
  // pin_dir (a directory on bpffs, empty: no pinning): the rule maps and the
  // links are pinned there, so enforcement outlives this process (exit,
  // crash, kill -9). When the directory already holds this layout's maps
  // (an earlier agent's), they are adopted: the rules in force stay, the
  // new programs (writing to this process's event ring) are attached and
  // pinned in place of the old ones, which detach only after.
  LsmEnforcer(std::shared_ptr<EventRing> ring, const std::string& pin_dir);
  ~LsmEnforcer();
  LsmEnforcer(const LsmEnforcer&) = delete;
  LsmEnforcer& operator=(const LsmEnforcer&) = delete;

  // Replaces the rule set. Keys must be unique. Throws std::range_error past
  // the capacity and std::runtime_error when the kernel refuses; in both
  // cases the previous set stays in force, untouched.
  void SetRules(const std::vector<LsmPathEntry>& paths, const std::vector<LsmNetEntry>& nets,
                const LsmPatterns& patterns = {});

  // Replaces the containers told apart from the host (`containers` of them,
  // keyed by namespace in `workloads`). Throws std::range_error past
  // EW_MAX_WORKLOADS (nothing changed), std::runtime_error when the kernel
  // refuses an update.
  void SetWorkloads(const LsmWorkloadSet& workloads, uint32_t containers);

  // Starts the kernel's run-time statistics (BPF_ENABLE_STATS) for the
  // programs until Close(); idempotent.
  void EnableStats();
  LsmEnforcerStats Stats() const;
  std::vector<std::string> Attached() const;
  // Ids of the pinned maps (active, gen_info, path_rules, net_rules, workloads, workload_count).
  std::vector<uint32_t> MapIds() const;

  // Detaches every program (nothing is enforced any more), removes the
  // pins and frees the maps. Idempotent.
  void Close();
  // Lets go of this process's handles but leaves the pinned programs and
  // rules enforcing (without a pin directory: the same as Close()).
  void Release();
  bool closed() const { return skel_ == nullptr; }
  bool adopted() const { return adopted_; }

 private:
  void Open();
  int MapFd(const char* which) const;
  bool AdoptPinnedMaps();
  void PinAll();
  void Unpin();
  void ReadAdoptedState();

  std::shared_ptr<EventRing> ring_;
  std::string pin_dir_;
  bool adopted_ = false;
  lsm_enforcer* skel_ = nullptr;
  std::vector<std::pair<std::string, bpf_link*>> links_;
  uint32_t active_ = 0;
  uint64_t generation_ = 0;
  // Inner map fds of each generation (the outer maps hold their own references).
  int path_fd_[2] = {-1, -1};
  int net_fd_[2] = {-1, -1};
  uint32_t path_count_[2] = {0, 0};
  uint32_t net_count_[2] = {0, 0};
  int stats_fd_ = -1;
};

// The generation summary for a rule set (pure; exposed for the addon's checks).
ew_lsm_gen_info LsmGenInfo(const std::vector<LsmPathEntry>& paths, const std::vector<LsmNetEntry>& nets,
                           const LsmPatterns& patterns = {});

}  // namespace edgeward
