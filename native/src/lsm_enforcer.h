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
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "edgeward_abi.h"
#include "ew_lsm_abi.h"

struct lsm_enforcer;
struct bpf_link;

namespace edgeward {

class EventRing;

using LsmPathEntry = std::pair<ew_lsm_path_key, ew_lsm_path_value>;
using LsmNetEntry = std::pair<ew_net_rule_key, ew_net_rule_value>;

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
  explicit LsmEnforcer(std::shared_ptr<EventRing> ring);
  ~LsmEnforcer();
  LsmEnforcer(const LsmEnforcer&) = delete;
  LsmEnforcer& operator=(const LsmEnforcer&) = delete;

  // Replaces the rule set. Keys must be unique. Throws std::range_error past
  // the capacity and std::runtime_error when the kernel refuses; in both
  // cases the previous set stays in force, untouched.
  void SetRules(const std::vector<LsmPathEntry>& paths, const std::vector<LsmNetEntry>& nets);

  // Starts the kernel's run-time statistics (BPF_ENABLE_STATS) for the
  // programs until Close(); idempotent.
  void EnableStats();
  LsmEnforcerStats Stats() const;
  std::vector<std::string> Attached() const;

  // Detaches every program (nothing is enforced any more) and frees the
  // maps. Idempotent.
  void Close();
  bool closed() const { return skel_ == nullptr; }

 private:
  void Open();
  int MapFd(const char* which) const;

  std::shared_ptr<EventRing> ring_;
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
ew_lsm_gen_info LsmGenInfo(const std::vector<LsmPathEntry>& paths, const std::vector<LsmNetEntry>& nets);

}  // namespace edgeward
