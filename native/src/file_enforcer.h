// FileEnforcer: the `compat` process/file enforcer on fanotify permission
// events (this kernel refuses BPF-LSM).
//
// Process rules mark FAN_OPEN_EXEC_PERM, file rules FAN_OPEN_PERM, only on
// what the rules name: the target inodes, rule directories (FAN_EVENT_ON_CHILD,
// every subdirectory for recursive rules) and the files found in them. A C++
// thread answers every permission event (never JavaScript: an open must not
// wait on the event loop); a second thread follows inotify events to mark
// subdirectories created later and files that replace a rule's target.
// Matched decisions go to the EventSink as ew_decision_event records.
//
// Workloads: every rule names the workloads it applies to (0: the host; a
// container: its mount namespace inode). setWorkloads gives the containers'
// mount and pid namespaces; on an event the acting thread's mount namespace
// names its workload, else (a process that unshared its mount namespace) the
// nearest known pid namespace among its pid namespace and their ancestors,
// which no process can leave; anything else is the host. A container rule's
// paths and fromSource are paths inside the container: they are resolved
// under its root (openat2 RESOLVE_IN_ROOT from /proc/<init pid>/root, so an
// absolute symlink in the image cannot lead to a host file), and the inode
// found there (the overlay's) is marked.
//
// Two fanotify groups: one holds the inode marks of files, the other the
// directory marks. The kernel lets an open through when a mark of the group
// involved in the event is being destroyed (fanotify_handle_event:
// "fsnotify_prepare_user_wait() fails if we race with mark deletion"), and a
// child's event involves both the child's and its parent's marks: in one
// group, removing a directory rule would let opens of a still-blocked file in
// it slip through (measured: dozens per 4 s under rule churn). Split, each
// group's deletions only touch its own, no longer wanted, events.
//
// Allow-list mode (KubeArmor's Allow rules with a default posture): a
// workload (the host or a container) whose process or file category has an
// Allow rule gets every exec (FAN_OPEN_EXEC_PERM) or open (FAN_OPEN_PERM) of
// its mounted filesystems watched through filesystem marks (a third group;
// they also cover unshared copies and bind mounts), and what no Allow
// rule permits gets the posture: refused (Block) or reported (Audit), under
// the posture's rule id. Block rules still win over Allow. matchPatterns
// globs and execname rules are matched by path on the same mount marks.
// Pseudo filesystems (proc, sysfs, cgroup, ...) are not covered (the kernel
// refuses some, and the answerer reads /proc); the agent's own process is
// exempt from the posture (never from rules), so an allow-list cannot cut it
// off from its own files.
//
// Limits (as an attacker sees them):
// - Decisions happen at open/exec time: fds and mappings opened before a rule
//   keep working; truncate(2), rename over, unlink, chmod are not opens.
// - A copy of a blocked binary (cp, memfd) is a new inode: not blocked. So is
//   a copy of the dynamic loader running it (the loader itself is recognised).
// - Files created in a rule directory after setRules are matched by path only
//   (a hard link to them made elsewhere is not); open_by_handle_at reaches
//   them through a disconnected dentry without the directory's event.
// - New subdirectories (recursive rules) and files replacing a rule's target
//   are marked when inotify reports them: opens in that short window pass.
// - readOnly: flags come from /proc/<tid>/syscall; openat2 (flags in racy user
//   memory), io_uring, 32-bit syscalls on 64-bit kernels count as writes.
// - The agent's own process is not exempt: it is refused like any other (the
//   answerer only opens /proc and its own fds, so it cannot deadlock).
// - Closing the groups (agent exit, crash, kill) allows everything.
// - Containers: a container's processes are told apart only once setWorkloads
//   names it (the agent does so when Docker reports the start): until then
//   they are the host. A namespace inode reused right after a container's
//   exit is that container's until the next setWorkloads. Mount namespace
//   inodes name workloads; containers sharing a pid namespace
//   (--pid=container:) are told apart by mount namespace only.
#pragma once

#include <sys/fanotify.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "event_sink.h"

namespace edgeward {

struct FileInodeId {
  uint64_t dev;
  uint64_t ino;
  bool operator==(const FileInodeId& o) const { return dev == o.dev && ino == o.ino; }
};

struct FileInodeIdHash {
  size_t operator()(const FileInodeId& k) const {
    return std::hash<uint64_t>()(k.ino * 0x9E3779B97F4A7C15ull ^ k.dev);
  }
};

// Where a rule's paths are looked up: the host (fd -1: absolute paths as the
// agent sees them) or a container's root directory, held open so the
// container's init may exit without the rule changing meaning.
struct PathRoot {
  int fd = -1;
  uint64_t mnt_ns = 0;  // the container's mount namespace; 0: the host
  PathRoot() = default;
  PathRoot(int f, uint64_t ns) : fd(f), mnt_ns(ns) {}
  PathRoot(const PathRoot&) = delete;
  PathRoot& operator=(const PathRoot&) = delete;
  ~PathRoot();
};
using PathRootPtr = std::shared_ptr<const PathRoot>;

// Opens `path` as the host sees it (root null or the host) or inside a
// container's root (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: "..",
// absolute and relative symlinks all stay under the root). O_CLOEXEC is added.
int OpenInRoot(const PathRoot* root, const std::string& path, int flags);

// Opens the root directory of the process `pid` after checking that it is in
// mount namespace `mnt_ns` (a recycled pid is refused). Throws
// std::runtime_error saying why.
PathRootPtr OpenContainerRoot(int32_t pid, uint64_t mnt_ns);

// A container as setWorkloads gives it.
struct WorkloadSpec {
  uint64_t workload;  // what rules name (non-zero)
  uint32_t mnt_ns;
  uint32_t pid_ns;    // 0: none
};

struct WorkloadTable {
  std::unordered_map<uint32_t, uint64_t> by_mnt;
  std::unordered_map<uint32_t, uint64_t> by_pid;
};

// A workload's allow-list postures and the coverage its pattern/execname
// rules need (setRules' second argument).
struct WorkloadPolicySpec {
  uint64_t workload = 0;  // 0: the host
  bool cover_exec = false;  // mark every mount of the workload for FAN_OPEN_EXEC_PERM
  bool cover_open = false;  // ... for FAN_OPEN_PERM
  uint32_t exec_posture_rule = 0;  // process allow-list mode when exec_posture_action != 0
  uint8_t exec_posture_action = 0;
  uint32_t open_posture_rule = 0;  // file allow-list mode
  uint8_t open_posture_action = 0;
  int32_t root_pid = 0;            // a container: its mounts are those of this process...
  uint64_t root_mnt_ns = 0;        // ...in this mount namespace
  bool mounts_given = false;       // host only: cover exactly these mount points (tests)
  std::vector<std::string> mounts;
};

// Glob match as agent/src/policy/glob.ts: * (not /), ** (anything), ?, [..].
bool GlobMatch(const std::string& pattern, const std::string& path);

struct SourceDirSpec {
  std::string path;
  bool recursive;
};

// One rule as JavaScript gives it, validated (absolute paths, known action).
struct FileRuleSpec {
  uint32_t rule_id = 0;
  uint8_t action = 0;  // EW_ACTION_AUDIT or EW_ACTION_BLOCK
  bool exec = false;   // process rule (exec) or file rule (open)
  std::string path;
  bool is_dir = false;
  bool recursive = false;
  bool read_only = false;   // file rules: only opens for writing match
  bool owner_only = false;  // file rules: processes whose fsuid owns the file do not match
  std::vector<std::string> sources;          // executables; empty with no source_dirs: any process
  std::vector<SourceDirSpec> source_dirs;    // executables under these directories
  std::vector<uint64_t> workloads{0};         // the workloads it applies to (0: the host)
  std::string pattern;                        // non-empty: a glob (no braces) matched on every covered event
  std::string exec_name;                      // non-empty: an exec of any file with this name
  int32_t root_pid = 0;                       // > 0: paths are inside this process's root...
  uint64_t root_mnt_ns = 0;                   // ...which must be in this mount namespace
};

// What an inotify watch is for: rule targets in the directory (re-marked when
// a new file takes their name) and recursive rules (new subdirectories).
struct FileWatchState {
  std::string dir;                                        // canonical path when watched (inside root)
  PathRootPtr root;                                       // null: the host
  std::unordered_map<std::string, uint64_t> exact_names;  // rule target names -> FAN_* mask
  uint64_t recursive_mask = 0;                            // recursive rules covering the directory
};

struct FileEnforcerStats {
  uint64_t events;           // permission events answered
  uint64_t denied;
  uint64_t marks;            // inodes and directories marked
  uint64_t internal_errors;  // events answered FAN_ALLOW because deciding failed
  uint64_t watch_errors;     // inotify follow-up failures (see last_watch_error)
  std::string last_watch_error;
};

struct SetRulesResult {
  uint64_t marks;
  std::vector<std::string> errors;
};

struct FileRuleTable;       // compiled rules (file_enforcer.cc)
struct FileEnforcerPlan;    // a setRules computation in progress
struct ProcessFacts;

class FileEnforcer {
 public:
  // Throws std::system_error when fanotify or inotify cannot be set up.
  explicit FileEnforcer(std::shared_ptr<EventSink> sink);
  ~FileEnforcer();
  FileEnforcer(const FileEnforcer&) = delete;
  FileEnforcer& operator=(const FileEnforcer&) = delete;

  // Replaces the rules: marks new targets, swaps the table, removes marks no
  // longer needed. Per-rule problems (missing paths, caps) come back in errors.
  SetRulesResult SetRules(const std::vector<FileRuleSpec>& rules,
                          const std::vector<WorkloadPolicySpec>& policies = std::vector<WorkloadPolicySpec>());
  // Replaces the containers told apart from the host (see the top of the file).
  void SetWorkloads(const std::vector<WorkloadSpec>& workloads);
  FileEnforcerStats Stats() const;
  // Stops both threads and closes the groups: the kernel then allows anything
  // pending and drops every mark. Idempotent.
  void Close();
  bool closed() const { return closed_.load(); }

 private:
  enum Group { kFileGroup = 0, kDirGroup = 1, kMountGroup = 2 };
  // A filesystem (superblock) mark, and a mount of it to find it again by.
  struct MountMark {
    uint64_t mask;
    std::string path;  // mount point, inside root
    PathRootPtr root;  // null: the host
    uint64_t mount_id;
    bool filesystem;   // FAN_MARK_FILESYSTEM (else FAN_MARK_MOUNT)
  };
  struct MarkState {
    uint64_t mask;     // FAN_* bits set in the kernel
    bool dir;          // in the directory group
    std::string path;  // where the inode was found (to find it again for removal)...
    PathRootPtr root;  // ...under this root (null: the host)
  };
  struct StaleMark {
    uint64_t mask;
    bool dir;
  };
  // An allowed event that matched an Audit rule: the other group's event for
  // the same open (the kernel asks each group in turn) is not reported again.
  struct PendingAudit {
    FileInodeId id;
    uint64_t mask;
    unsigned groups;  // bit per group that asked already
    uint64_t at_ns;
  };
  struct Decision {
    int block_rule = -1;  // index in the table
    int audit_rule = -1;
    int allow_rule = -1;
    // the outcome: refuse or not, and what to report (action NONE: nothing)
    bool deny = false;
    uint8_t report_action = 0;
    uint32_t report_rule_id = 0;
    bool report_exec = false;
    bool interpreter = false;  // the ELF interpreter of the exec just let through
  };

  void AnswerLoop();
  void WatchLoop();
  void HandleEvent(const struct fanotify_event_metadata& m, int group, bool* appended);
  // Whether to report this event's decision (action: EW_ACTION_*); false for the
  // second group's ask of an open already reported as Audited.
  bool FirstReportOfOpen(const struct fanotify_event_metadata& m, int group, const FileInodeId& id, int action);
  void PlanMounts(FileEnforcerPlan* plan, const WorkloadPolicySpec& policy, const PathRootPtr& root,
                  std::unordered_map<uint64_t, MountMark>* wanted);
  Decision Decide(const FileRuleTable& table, const WorkloadTable& workloads, const struct fanotify_event_metadata& m,
                  const std::string& path, const struct stat& st, ProcessFacts* facts);
  void EmitDecision(const FileRuleTable& table, const Decision& d, const struct fanotify_event_metadata& m,
                    const std::string& path, ProcessFacts* facts);
  void DropStaleMark(const struct fanotify_event_metadata& m, int group, const FileInodeId& id,
                     const std::string& path);
  std::shared_ptr<const FileRuleTable> Snapshot() const;
  std::shared_ptr<const WorkloadTable> WorkloadSnapshot() const;

  // Marking, under marks_mu_.
  bool MarkLocked(int fd_or_dirfd, const char* path_or_null, const FileInodeId& id, uint64_t mask, bool dir,
                  const std::string& found_at, const PathRootPtr& root, std::string* error);
  void UnmarkLocked(const FileInodeId& id, uint64_t mask, bool dir, const std::string& found_at, const PathRoot* root);
  void PlanExactRule(FileEnforcerPlan* plan, uint32_t index, size_t spec_index, const FileRuleSpec& spec,
                     const PathRootPtr& root, const std::string& where);
  void PlanDirRule(FileEnforcerPlan* plan, uint32_t index, size_t spec_index, const FileRuleSpec& spec,
                   const PathRootPtr& root, const std::string& where);
  bool PlanMark(FileEnforcerPlan* plan, int fd_or_dirfd, const char* path_or_null, const FileInodeId& id,
                uint64_t mask, bool dir, const std::string& found_at, const PathRootPtr& root, const std::string& where);
  void WalkNewDirLocked(const std::string& dir, uint64_t perm, const PathRootPtr& root);
  // Watches `watch_path` (a path, or /proc/self/fd/N of the open directory)
  // and records it in `into` under `dir` (inside `root`); -1 with *error on failure.
  int AddWatchLocked(const std::string& watch_path, const std::string& dir, const PathRootPtr& root,
                     std::unordered_map<int, FileWatchState>* into, std::string* error);
  bool PlanWatch(FileEnforcerPlan* plan, const std::string& watch_path, const std::string& dir, const PathRootPtr& root,
                 const std::string& exact_name, uint64_t exact_mask, uint64_t recursive_mask, const std::string& where);
  void NoteWatchError(const std::string& message);

  std::shared_ptr<EventSink> sink_;
  int fan_fd_[3] = {-1, -1, -1};  // permission groups: kFileGroup, kDirGroup, kMountGroup
  bool report_tid_ = true;    // events name the thread (FAN_REPORT_TID)
  int inotify_fd_ = -1;  // new subdirectories, replaced targets
  int wake_fd_ = -1;     // eventfd: stops both threads
  std::atomic<bool> closed_{false};
  std::thread answer_thread_;
  std::thread watch_thread_;
  std::mutex close_mu_;

  mutable std::mutex table_mu_;  // guards table_ and workloads_ (the pointers only: both are immutable)
  std::shared_ptr<const FileRuleTable> table_;
  std::shared_ptr<const WorkloadTable> workloads_;

  std::mutex marks_mu_;  // guards marks_, watches_; held by setRules and the watcher, never by the answerer
  std::unordered_map<FileInodeId, MarkState, FileInodeIdHash> marks_;
  std::unordered_map<int, FileWatchState> watches_;  // by inotify wd
  std::atomic<uint64_t> mark_count_{0};
  std::unordered_map<uint64_t, MountMark> mount_marks_;  // kMountGroup: by s_dev, or 1 << 63 | mount id
  // What the last setRules covers, with its mountinfo open: the watcher adds
  // marks for filesystems mounted later (poll() on mountinfo reports changes).
  struct OwnedFd {
    int fd;
    explicit OwnedFd(int f) : fd(f) {}
    OwnedFd(const OwnedFd&) = delete;
    OwnedFd& operator=(const OwnedFd&) = delete;
    ~OwnedFd();
  };
  struct CoverageEntry {
    WorkloadPolicySpec policy;
    PathRootPtr root;
    std::shared_ptr<OwnedFd> mountinfo;
  };
  std::vector<CoverageEntry> coverage_;  // under marks_mu_
  void RescanMountsLocked();

  // Marks that could not be removed by path (the inode moved away): the
  // answerer removes them through the event fd when they next fire.
  std::mutex stale_mu_;
  std::unordered_map<FileInodeId, StaleMark, FileInodeIdHash> stale_;
  std::atomic<size_t> stale_count_{0};

  std::atomic<uint64_t> events_{0}, denied_{0}, internal_errors_{0}, watch_errors_{0};
  mutable std::mutex watch_error_mu_;
  std::string last_watch_error_;

  std::vector<uint8_t> record_;  // answerer-only scratch for ew_decision_event
  std::unordered_map<pid_t, PendingAudit> pending_audit_;  // answerer-only, by tid
  // The last exec a task was let through (answerer-only, by tid): the ELF
  // interpreter the kernel opens next for it (open_exec, an exec event too)
  // is part of that exec, not a program of its own.
  struct LastExec {
    FileInodeId id;      // the program
    FileInodeId caller;  // the executable that called execve (still the task's exe while its interpreter loads)
    uint64_t at_ns;
  };
  std::unordered_map<pid_t, LastExec> last_exec_;
};

}  // namespace edgeward
