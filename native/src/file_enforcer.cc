// The compat process/file enforcer: fanotify permission events decided by a
// C++ thread. See file_enforcer.h for the overview; the design notes that
// matter to an attacker are next to the code they describe.
#include "file_enforcer.h"

#include <dirent.h>
#include <fnmatch.h>
#include <glob.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <map>
#include <unordered_set>

#include "edgeward_abi.h"
#include "modules.h"

namespace edgeward {

namespace {

// Bounds of one rule set. Marks pin inodes in kernel memory and every
// watched directory costs an inotify watch; past these, setRules reports
// which rule was cut short.
constexpr size_t kMaxMarks = 65536;
constexpr size_t kMaxWatchedDirs = 8192;

constexpr uint64_t kPermEvents = FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM;
// New subdirectories (recursive rules) and files replacing a rule's target.
constexpr uint32_t kWatchMask = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR;

std::string ErrnoText(int err) { return std::string(strerror(err)); }

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The path the kernel reports for an open file: what /proc shows, with the
// rule's symlinks resolved. Empty when unknown.
std::string FdPath(int fd) {
  char buf[PATH_MAX];
  ssize_t n = readlink(ProcFdPath(fd).c_str(), buf, sizeof buf);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) return std::string();
  return std::string(buf, static_cast<size_t>(n));
}

std::string JoinPath(const std::string& dir, const char* name) {
  return dir == "/" ? "/" + std::string(name) : dir + "/" + name;
}

// Reads a small file (a /proc entry) whole; false when it cannot be read.
bool ReadSmallFile(const std::string& path, std::string* out, size_t max = 8192) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->assign(max, '\0');
  size_t got = 0;
  while (got < max) {
    ssize_t n = read(fd, &(*out)[got], max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  out->resize(got);
  return got > 0;
}

uint64_t BootTimeNs() {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool IsWriteOpen(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT | O_APPEND)) != 0;
}

bool PathUnder(const std::string& path, const std::string& dir, bool recursive) {
  if (dir == "/") return path.size() > 1 && path[0] == '/' && (recursive || path.find('/', 1) == std::string::npos);
  if (path.size() <= dir.size() + 1 || path.compare(0, dir.size(), dir) != 0 || path[dir.size()] != '/') return false;
  return recursive || path.find('/', dir.size() + 1) == std::string::npos;
}

std::string FindCgroup2Root() {
  std::string mounts;
  if (!ReadSmallFile("/proc/self/mounts", &mounts, 1 << 20)) return std::string();
  size_t pos = 0;
  while (pos < mounts.size()) {
    size_t end = mounts.find('\n', pos);
    if (end == std::string::npos) end = mounts.size();
    std::string line = mounts.substr(pos, end - pos);
    pos = end + 1;
    // "<source> <mountpoint> <fstype> ..."; the mount point escapes spaces as \040.
    size_t a = line.find(' ');
    size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
    size_t c = b == std::string::npos ? b : line.find(' ', b + 1);
    if (c == std::string::npos) continue;
    if (line.compare(b + 1, c - b - 1, "cgroup2") == 0) return line.substr(a + 1, b - a - 1);
  }
  return std::string();
}

}  // namespace

PathRoot::~PathRoot() {
  if (fd >= 0) close(fd);
}

FileEnforcer::OwnedFd::~OwnedFd() {
  if (fd >= 0) close(fd);
}

int OpenInRoot(const PathRoot* root, const std::string& path, int flags) {
  if (root == nullptr || root->fd < 0) return open(path.c_str(), flags | O_CLOEXEC);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // In the root: "/", "..", absolute and relative symlinks resolve as they
  // do for the container's processes, never to a host file; magic links
  // (/proc/<pid>/root of some other process) are refused.
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = syscall(SYS_openat2, root->fd, path.c_str(), &how, sizeof how);
    // EAGAIN: a rename raced the lookup (RESOLVE_IN_ROOT retries are the caller's)
    if (fd < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return static_cast<int>(fd);
  }
}

PathRootPtr OpenContainerRoot(int32_t pid, uint64_t mnt_ns) {
  const std::string proc = "/proc/" + std::to_string(pid);
  // The /proc/<pid> fd pins this process: if it exits and its pid is reused,
  // "root" under the fd fails instead of naming the newcomer's root.
  int pfd = open(proc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) throw std::runtime_error("process " + std::to_string(pid) + ": " + ErrnoText(errno));
  struct stat st;
  if (fstatat(pfd, "ns/mnt", &st, 0) != 0) {
    int err = errno;
    close(pfd);
    throw std::runtime_error("process " + std::to_string(pid) + ": mount namespace: " + ErrnoText(err));
  }
  if (static_cast<uint64_t>(st.st_ino) != mnt_ns) {
    close(pfd);
    throw std::runtime_error("process " + std::to_string(pid) + " is in mount namespace " + std::to_string(st.st_ino) +
                             ", not " + std::to_string(mnt_ns) + " (the container's init is gone)");
  }
  int rfd = openat(pfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int err = errno;
  close(pfd);
  if (rfd < 0) throw std::runtime_error("process " + std::to_string(pid) + ": root directory: " + ErrnoText(err));
  return std::make_shared<const PathRoot>(rfd, mnt_ns);
}

// One element of a matchPatterns glob (see ParseGlob).
struct GlobTok {
  enum Kind { kLit, kStar, kGlobStar, kOne, kClass } kind = kLit;
  uint32_t ch = 0;  // kLit: one code point
  bool negate = false;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
};

// A rule as the answering thread matches it. Paths are canonical (the form
// /proc/self/fd/N shows), so symlinks in the policy's paths are resolved.
struct CompiledFileRule {
  uint32_t rule_id = 0;
  uint8_t action = 0;
  bool exec = false;
  bool is_dir = false;
  bool recursive = false;
  bool read_only = false;
  bool owner_only = false;
  std::string target;
  bool has_sources = false;
  std::vector<FileInodeId> source_ids;
  std::vector<std::string> source_paths;  // canonical, inside the rule's root
  std::vector<SourceDirSpec> source_dirs;
  std::vector<uint64_t> workloads;  // which processes it applies to (0: the host)
  PathRootPtr root;                 // where its paths are (null: the host)
  bool scan = false;                // matched by pattern or exec name on every covered event
  std::vector<GlobTok> glob;        // pattern rules
  std::string exec_name;            // execname rules
};

// A workload's allow-list postures (action 0: that category is not in allow-list mode).
struct PostureEntry {
  uint32_t exec_rule = 0;
  uint8_t exec_action = 0;
  uint32_t open_rule = 0;
  uint8_t open_action = 0;
};

// Immutable once published: the answerer holds a shared_ptr to the table it
// decides with, setRules publishes a new one.
struct FileRuleTable {
  std::vector<CompiledFileRule> rules;
  // Rule targets and the files found in rule directories at setRules time:
  // hard links, bind mounts, renames and relative paths all reach the inode.
  std::unordered_map<FileInodeId, std::vector<uint32_t>, FileInodeIdHash> by_inode;
  std::unordered_map<std::string, std::vector<uint32_t>> by_path;  // exact rule targets
  std::unordered_map<std::string, std::vector<uint32_t>> by_dir;   // directory rules
  // The dynamic loaders inside the containers' roots (the host's are DynamicLoaders()).
  std::vector<FileInodeId> container_loaders;
  std::vector<uint32_t> scan_rules;                         // pattern and execname rules
  std::unordered_map<uint64_t, PostureEntry> postures;      // by workload
};

struct FileEnforcerPlan {
  std::shared_ptr<FileRuleTable> table = std::make_shared<FileRuleTable>();
  std::unordered_map<FileInodeId, uint64_t, FileInodeIdHash> marks;  // wanted FAN_* bits
  std::unordered_map<int, FileWatchState> watches;                    // added while planning, by wd
  std::vector<std::string> errors;
  size_t dirs = 0;
  bool mark_cap_reported = false;
  bool dir_cap_reported = false;
  bool watch_cap_reported = false;
};

// What the answerer learns about the acting task, read from /proc only when a
// rule needs it (the cheap path of an unmatched event reads nothing).
struct ProcessFacts {
  ProcessFacts(pid_t t, bool is_tid) : tid(t), tid_known(is_tid) {}
  pid_t tid;  // the acting thread (its thread group leader without FAN_REPORT_TID)
  bool tid_known;
  bool exe_done = false;
  bool exe_id_ok = false;
  FileInodeId exe_id{0, 0};
  std::string exe_path;
  bool status_done = false;
  bool status_ok = false;
  uint32_t tgid = 0, ppid = 0, uid = 0, fsuid = 0;
  // NStgid: the tgid in each pid namespace from ours down to the task's own;
  // ns_levels 1 means the task shares our pid namespace.
  uint32_t ns_tgid = 0, ns_levels = 0;
  bool ns_ppid_done = false;
  uint32_t ns_ppid = 0;  // the parent's tgid in the task's own pid namespace; 0 outside it or unknown
  bool flags_done = false;
  int flags = -1;     // the open flags, -1 when not known
  bool write = true;  // unknown counts as a write (fail closed)
  bool workload_done = false;
  bool workload_known = false;  // unknown (the task is gone): every rule applies (fail closed)
  uint64_t workload = 0;
};

namespace {

std::string ProcPath(pid_t tid, const char* what) { return "/proc/" + std::to_string(tid) + "/" + what; }

void LoadExe(ProcessFacts* f) {
  if (f->exe_done) return;
  f->exe_done = true;
  // stat and readlink go through the magic link without opening the file,
  // so the answerer never triggers its own marks.
  std::string link = ProcPath(f->tid, "exe");
  char buf[PATH_MAX];
  ssize_t n = readlink(link.c_str(), buf, sizeof buf);
  if (n > 0 && static_cast<size_t>(n) < sizeof buf) f->exe_path.assign(buf, static_cast<size_t>(n));
  struct stat st;
  if (stat(link.c_str(), &st) == 0) {
    f->exe_id = FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
    f->exe_id_ok = true;
  }
}

// The numbers of an "NStgid:" line (after the tag): how many, and the last.
void ParseNsIds(const char* p, const char* end, uint32_t* levels, uint32_t* last) {
  *levels = 0;
  while (p < end) {
    char* next = nullptr;
    unsigned long v = strtoul(p, &next, 10);
    if (next == p || next > end) break;
    *last = static_cast<uint32_t>(v);
    ++*levels;
    p = next;
  }
}

struct StatusIds {
  bool ok = false;
  uint32_t ppid = 0, ns_levels = 0, ns_tgid = 0;
};

// PPid and NStgid of /proc/<pid>/status.
StatusIds ReadStatusIds(pid_t pid) {
  StatusIds r;
  std::string s;
  if (!ReadSmallFile(ProcPath(pid, "status"), &s)) return r;
  bool ppid = false;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find('\n', pos);
    if (end == std::string::npos) end = s.size();
    const char* line = s.c_str() + pos;
    unsigned long a;
    if (strncmp(line, "PPid:", 5) == 0 && sscanf(line + 5, "%lu", &a) == 1) {
      r.ppid = static_cast<uint32_t>(a);
      ppid = true;
    } else if (strncmp(line, "NStgid:", 7) == 0) {
      ParseNsIds(line + 7, s.c_str() + end, &r.ns_levels, &r.ns_tgid);
    }
    pos = end + 1;
  }
  r.ok = ppid && r.ns_levels > 0;
  return r;
}

void LoadStatus(ProcessFacts* f) {
  if (f->status_done) return;
  f->status_done = true;
  std::string s;
  if (!ReadSmallFile(ProcPath(f->tid, "status"), &s)) return;
  bool tgid = false, uid = false;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find('\n', pos);
    if (end == std::string::npos) end = s.size();
    const char* line = s.c_str() + pos;
    unsigned long a, b, c, d;
    if (strncmp(line, "Tgid:", 5) == 0 && sscanf(line + 5, "%lu", &a) == 1) {
      f->tgid = static_cast<uint32_t>(a);
      tgid = true;
    } else if (strncmp(line, "PPid:", 5) == 0 && sscanf(line + 5, "%lu", &a) == 1) {
      f->ppid = static_cast<uint32_t>(a);
    } else if (strncmp(line, "NStgid:", 7) == 0) {
      ParseNsIds(line + 7, s.c_str() + end, &f->ns_levels, &f->ns_tgid);
    } else if (strncmp(line, "Uid:", 4) == 0 && sscanf(line + 4, "%lu %lu %lu %lu", &a, &b, &c, &d) == 4) {
      f->uid = static_cast<uint32_t>(a);
      f->fsuid = static_cast<uint32_t>(d);
      uid = true;
    }
    pos = end + 1;
  }
  f->status_ok = tgid && uid;
}

// The parent's tgid in the task's own pid namespace (what getppid() returns
// there: KubeArmor's PPID). Read while the task waits in the kernel for our
// answer, so the task itself cannot go away or be replaced; its parent can
// (exit, and its pid be reused), hence the PPid check after reading it. A
// parent is never in a deeper pid namespace than its child, and one at the
// same depth is in the same namespace (a child's namespace descends from its
// creator's, a reaper's from the orphan's), so the depth is the whole test.
// Nothing is cached: a pid namespace's numbers are reused like the host's.
void LoadNsParent(ProcessFacts* f) {
  if (f->ns_ppid_done) return;
  f->ns_ppid_done = true;
  LoadStatus(f);
  if (!f->status_ok || f->ns_levels == 0) return;  // unknown
  if (f->ns_levels == 1) {
    f->ns_ppid = f->ppid;  // our own pid namespace: the numbers we see
    return;
  }
  if (f->ppid == 0) return;
  StatusIds parent = ReadStatusIds(static_cast<pid_t>(f->ppid));
  if (!parent.ok || parent.ns_levels != f->ns_levels) return;  // outside the task's namespace: 0
  StatusIds again = ReadStatusIds(f->tid);
  if (again.ok && again.ppid == f->ppid) f->ns_ppid = parent.ns_tgid;
}

// The open flags of the blocked task, from the registers it entered the
// syscall with (/proc/<tid>/syscall: "nr a0 a1 a2 a3 a4 a5 sp pc"). The task
// sleeps in the kernel while we decide and no other thread can change its
// saved registers, so these are the flags the kernel is acting on.
void LoadOpenFlags(ProcessFacts* f) {
  if (f->flags_done) return;
  f->flags_done = true;
  if (!f->tid_known) return;  // another thread's registers would be read: unknown, a write
  std::string s;
  if (!ReadSmallFile(ProcPath(f->tid, "syscall"), &s, 512)) return;
  const char* p = s.c_str();
  char* end = nullptr;
  long nr = strtol(p, &end, 10);
  if (end == p) return;  // "running": not blocked in a syscall
  uint64_t args[6];
  int count = 0;
  p = end;
  while (count < 6) {
    unsigned long long v = strtoull(p, &end, 16);
    if (end == p) break;
    args[count++] = v;
    p = end;
  }
  if (count < 6) return;
  auto set = [f](int flags, bool write) {
    f->flags = flags;
    f->write = write;
  };
  switch (nr) {
#ifdef SYS_open
    case SYS_open:
      set(static_cast<int>(args[1]), IsWriteOpen(static_cast<int>(args[1])));
      return;
#endif
#ifdef SYS_creat
    case SYS_creat:
      set(O_CREAT | O_WRONLY | O_TRUNC, true);
      return;
#endif
    case SYS_openat:
    case SYS_open_by_handle_at:
      set(static_cast<int>(args[2]), IsWriteOpen(static_cast<int>(args[2])));
      return;
#ifdef SYS_openat2
    case SYS_openat2: {
      // open_how lives in the caller's memory: another thread may rewrite it
      // after the kernel copied it, so what we read is not what the kernel
      // uses. Report it, but count openat2 as a write whatever it says.
      uint64_t how_flags = 0;
      int mem = open(ProcPath(f->tid, "mem").c_str(), O_RDONLY | O_CLOEXEC);
      if (mem >= 0) {
        if (pread(mem, &how_flags, sizeof how_flags, static_cast<off_t>(args[2])) ==
            static_cast<ssize_t>(sizeof how_flags))
          f->flags = static_cast<int>(how_flags);
        close(mem);
      }
      f->write = true;
      return;
    }
#endif
    case SYS_execve:
    case SYS_execveat:
#ifdef SYS_uselib
    case SYS_uselib:
#endif
      set(O_RDONLY, false);  // exec never counts as a write
      return;
    default:
      return;  // io_uring, a 32-bit syscall on a 64-bit kernel, ...: unknown, a write
  }
}

uint32_t NsInode(pid_t tid, const char* ns) {
  struct stat st;
  std::string path = ProcPath(tid, "ns/") + ns;
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint32_t>(st.st_ino);
}

// Which workload the acting thread belongs to: its mount namespace's, else
// the nearest container pid namespace among its own and their ancestors (a
// process can unshare its mount namespace but never leave its pid namespace),
// else the host.
void LoadWorkload(ProcessFacts* f, const WorkloadTable& table) {
  if (f->workload_done) return;
  f->workload_done = true;
  struct stat st;
  if (stat(ProcPath(f->tid, "ns/mnt").c_str(), &st) != 0) return;  // gone: unknown
  auto m = table.by_mnt.find(static_cast<uint32_t>(st.st_ino));
  if (m != table.by_mnt.end()) {
    f->workload = m->second;
    f->workload_known = true;
    return;
  }
  if (!table.by_pid.empty()) {
    int fd = open(ProcPath(f->tid, "ns/pid").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    // MAX_PID_NS_LEVEL is 32; NS_GET_PARENT fails with EPERM above the agent's own namespace.
    for (int depth = 0; depth <= 32; depth++) {
      if (fstat(fd, &st) != 0) break;
      auto p = table.by_pid.find(static_cast<uint32_t>(st.st_ino));
      if (p != table.by_pid.end()) {
        close(fd);
        f->workload = p->second;
        f->workload_known = true;
        return;
      }
      int parent = ioctl(fd, NS_GET_PARENT);
      if (parent < 0) break;
      close(fd);
      fd = parent;
    }
    close(fd);
  }
  f->workload = 0;
  f->workload_known = true;
}

// cgroup v2 id = inode number of the cgroup's directory in cgroupfs.
uint64_t CgroupId(pid_t tid, const std::string& cgroup2_root) {
  if (cgroup2_root.empty()) return 0;
  std::string s;
  if (!ReadSmallFile(ProcPath(tid, "cgroup"), &s)) return 0;
  size_t pos = s.find("0::");
  while (pos != std::string::npos && pos != 0 && s[pos - 1] != '\n') pos = s.find("0::", pos + 1);
  if (pos == std::string::npos) return 0;
  size_t end = s.find('\n', pos);
  std::string rel = s.substr(pos + 3, end == std::string::npos ? std::string::npos : end - pos - 3);
  struct stat st;
  if (stat((cgroup2_root + rel).c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

const std::string& Cgroup2Root() {
  static const std::string root = FindCgroup2Root();
  return root;
}

// The system's dynamic loaders, by inode. `ld.so /blocked/bin` runs a program
// without exec'ing it: the loader reads and maps it with a plain open. A copy
// of the loader is a different inode and is not recognised (see the report).
const std::vector<FileInodeId>& DynamicLoaders() {
  static const std::vector<FileInodeId> loaders = [] {
    std::vector<FileInodeId> out;
    const char* patterns[] = {"/lib*/ld-linux*.so*", "/lib/*/ld-linux*.so*", "/usr/lib*/ld-linux*.so*",
                              "/usr/lib/*/ld-linux*.so*", "/lib*/ld-musl-*.so*", "/usr/lib*/ld-musl-*.so*",
                              "/lib*/ld64.so*", "/lib/*/ld64.so*", "/lib*/ld.so*"};
    for (const char* pattern : patterns) {
      glob_t g;
      if (glob(pattern, 0, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
          struct stat st;
          if (stat(g.gl_pathv[i], &st) != 0 || !S_ISREG(st.st_mode)) continue;
          FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
          if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
        }
      }
      globfree(&g);
    }
    return out;
  }();
  return loaders;
}

bool IsLoaderName(const char* name) {
  return fnmatch("ld-linux*.so*", name, 0) == 0 || fnmatch("ld-musl-*.so*", name, 0) == 0 ||
         fnmatch("ld64.so*", name, 0) == 0 || fnmatch("ld.so*", name, 0) == 0;
}

// The dynamic loaders inside a container's root, found as DynamicLoaders()
// finds the host's (lib directories and their direct subdirectories), every
// name resolved inside the root.
void ContainerLoaders(const PathRoot& root, std::vector<FileInodeId>* out) {
  std::vector<std::string> dirs = {"/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32"};
  size_t looked = 0;
  for (size_t i = 0; i < dirs.size() && looked < 64; i++, looked++) {
    int dfd = OpenInRoot(&root, dirs[i], O_RDONLY | O_DIRECTORY);
    if (dfd < 0) continue;
    DIR* d = fdopendir(dfd);
    if (!d) {
      close(dfd);
      continue;
    }
    const bool top = i < 6;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string child = JoinPath(dirs[i], e->d_name);
      if (top && e->d_type == DT_DIR) {
        dirs.push_back(child);  // e.g. /lib/x86_64-linux-gnu
        continue;
      }
      if (!IsLoaderName(e->d_name)) continue;
      int fd = OpenInRoot(&root, child, O_PATH);
      struct stat st;
      if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
        if (std::find(out->begin(), out->end(), id) == out->end()) out->push_back(id);
      }
      if (fd >= 0) close(fd);
    }
    closedir(d);
  }
}

// FAN_* bits for the inode marks of a rule's files: process rules also watch
// plain opens, which count as exec when the opener is a dynamic loader.
uint64_t FileMarkMask(bool exec) { return exec ? (FAN_OPEN_EXEC_PERM | FAN_OPEN_PERM) : FAN_OPEN_PERM; }

// Filesystems allow-list coverage never marks: the kernel refuses some
// (proc), the answerer reads /proc, and none holds programs or data files a
// policy names.
bool PseudoFilesystem(const std::string& type) {
  static const char* const kTypes[] = {"proc",    "sysfs",     "cgroup",     "cgroup2",  "devpts",  "mqueue",
                                       "debugfs", "tracefs",   "securityfs", "bpf",      "pstore",  "configfs",
                                       "fusectl", "binfmt_misc", "autofs",   "nsfs",     "efivarfs", "rpc_pipefs",
                                       "hugetlbfs", "selinuxfs"};
  for (const char* t : kTypes)
    if (type == t) return true;
  return false;
}

// "\040" etc. in /proc/<pid>/mountinfo fields.
std::string UnescapeMountField(const std::string& f) {
  std::string out;
  for (size_t i = 0; i < f.size(); i++) {
    if (f[i] == '\\' && i + 3 < f.size() && isdigit(static_cast<unsigned char>(f[i + 1]))) {
      out.push_back(static_cast<char>(((f[i + 1] - '0') << 6) | ((f[i + 2] - '0') << 3) | (f[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(f[i]);
    }
  }
  return out;
}

struct MountInfoEntry {
  uint64_t id;
  uint64_t sb_dev;  // the superblock's s_dev (mountinfo major:minor) as major << 20 | minor
  std::string point;
  std::string type;
};

std::vector<MountInfoEntry> ReadMountInfo(const std::string& file) {
  std::vector<MountInfoEntry> out;
  std::string text;
  if (!ReadSmallFile(file, &text, 4 << 20)) return out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::vector<std::string> f;
    size_t a = 0;
    while (a < sep) {
      size_t b = line.find(' ', a);
      if (b == std::string::npos || b > sep) b = sep;
      f.push_back(line.substr(a, b - a));
      a = b + 1;
    }
    if (f.size() < 5) continue;
    std::string rest = line.substr(sep + 3);
    MountInfoEntry e;
    e.id = strtoull(f[0].c_str(), nullptr, 10);
    unsigned long major = 0, minor = 0;
    if (sscanf(f[2].c_str(), "%lu:%lu", &major, &minor) != 2) continue;
    e.sb_dev = (static_cast<uint64_t>(major) << 20) | minor;
    e.point = UnescapeMountField(f[4]);
    e.type = rest.substr(0, rest.find(' '));
    out.push_back(std::move(e));
  }
  return out;
}

uint64_t MountIdOf(int fd) {
  struct statx stx;
  memset(&stx, 0, sizeof stx);
  if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0 || !(stx.stx_mask & STATX_MNT_ID)) return 0;
  return stx.stx_mnt_id;
}

// UTF-8 to code points (invalid bytes stand for themselves).
std::vector<uint32_t> CodePoints(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = 1;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    bool ok = true;
    for (int k = 1; k < n; k++) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) ok = false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (!ok) {
      n = 1;
      cp = c;
    }
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

// Tokens of a brace-free glob (the TypeScript side validated and expanded it).
std::vector<GlobTok> ParseGlob(const std::string& pattern) {
  std::vector<uint32_t> p = CodePoints(pattern);
  std::vector<GlobTok> out;
  for (size_t i = 0; i < p.size(); i++) {
    GlobTok t;
    if (p[i] == '\\' && i + 1 < p.size()) {
      t.kind = GlobTok::kLit;
      t.ch = p[++i];
    } else if (p[i] == '*') {
      bool globstar = i + 1 < p.size() && p[i + 1] == '*';
      while (i + 1 < p.size() && p[i + 1] == '*') i++;
      t.kind = globstar ? GlobTok::kGlobStar : GlobTok::kStar;
    } else if (p[i] == '?') {
      t.kind = GlobTok::kOne;
    } else if (p[i] == '[') {
      size_t j = i + 1;
      t.kind = GlobTok::kClass;
      if (j < p.size() && (p[j] == '!' || p[j] == '^')) {
        t.negate = true;
        j++;
      }
      bool first = true;
      for (; j < p.size() && (p[j] != ']' || first); j++) {
        first = false;
        uint32_t lo = p[j];
        if (lo == '\\' && j + 1 < p.size()) lo = p[++j];
        uint32_t hi = lo;
        if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
          hi = p[j + 2];
          if (hi == '\\' && j + 3 < p.size()) {
            hi = p[j + 3];
            j++;
          }
          j += 2;
        }
        t.ranges.emplace_back(lo, hi);
      }
      if (j >= p.size()) {  // unterminated: a literal "[" (the loader refuses these)
        t = GlobTok();
        t.kind = GlobTok::kLit;
        t.ch = '[';
      } else {
        i = j;
      }
    } else {
      t.kind = GlobTok::kLit;
      t.ch = p[i];
    }
    out.push_back(std::move(t));
  }
  return out;
}

bool GlobTokensMatch(const std::vector<GlobTok>& toks, const std::string& path) {
  const std::vector<uint32_t> s = CodePoints(path);
  // reach[j]: the tokens so far consume exactly s[0..j) (no exponential backtracking)
  std::vector<char> reach(s.size() + 1, 0), next(s.size() + 1, 0);
  reach[0] = 1;
  for (const GlobTok& t : toks) {
    std::fill(next.begin(), next.end(), 0);
    switch (t.kind) {
      case GlobTok::kLit:
        for (size_t j = 0; j < s.size(); j++)
          if (reach[j] && s[j] == t.ch) next[j + 1] = 1;
        break;
      case GlobTok::kStar:
      case GlobTok::kGlobStar: {
        bool on = false;
        for (size_t j = 0; j <= s.size(); j++) {
          if (reach[j]) on = true;
          next[j] = on;
          if (t.kind == GlobTok::kStar && j < s.size() && s[j] == '/') on = false;
        }
        break;
      }
      case GlobTok::kOne:
      case GlobTok::kClass:
        for (size_t j = 0; j < s.size(); j++) {
          if (!reach[j] || s[j] == '/') continue;
          bool ok = true;
          if (t.kind == GlobTok::kClass) {
            bool in = false;
            for (const auto& r : t.ranges) in = in || (s[j] >= r.first && s[j] <= r.second);
            ok = t.negate ? !in : in;
          }
          if (ok) next[j + 1] = 1;
        }
        break;
    }
    reach.swap(next);
  }
  return reach[s.size()] != 0;
}

}  // namespace

bool GlobMatch(const std::string& pattern, const std::string& path) { return GlobTokensMatch(ParseGlob(pattern), path); }

// ---------------------------------------------------------------------------

FileEnforcer::FileEnforcer(std::shared_ptr<EventSink> sink) : sink_(std::move(sink)) {
  // FAN_REPORT_TID: the event names the thread, whose /proc/<tid>/syscall has
  // the open flags. FAN_UNLIMITED_QUEUE: on overflow the kernel would drop
  // a permission event and ALLOW the open, so a flood could slip opens past.
  // FAN_NONBLOCK: the answerer polls together with the stop eventfd.
  // Kernels without FAN_REPORT_TID (before 4.20) refuse it with EINVAL: fall
  // back to thread-group ids; the open flags are then unknown (readOnly rules
  // refuse every open of their files).
  unsigned init_flags =
      FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS;
  auto fail = [this](const char* what) {
    int err = errno;
    for (int fd : {fan_fd_[kFileGroup], fan_fd_[kDirGroup], fan_fd_[kMountGroup], inotify_fd_, wake_fd_})
      if (fd >= 0) close(fd);
    throw std::system_error(err, std::generic_category(), what);
  };
  for (int g : {kFileGroup, kDirGroup, kMountGroup}) {
    fan_fd_[g] = fanotify_init(init_flags, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    if (fan_fd_[g] < 0 && errno == EINVAL && (init_flags & FAN_REPORT_TID)) {
      init_flags &= ~FAN_REPORT_TID;
      report_tid_ = false;
      fan_fd_[g] = fanotify_init(init_flags, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    }
    if (fan_fd_[g] < 0) fail("fanotify_init(FAN_CLASS_CONTENT)");
  }
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) fail("inotify_init1");
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) fail("eventfd");
  Cgroup2Root();  // read /proc/self/mounts now, not in the answerer
  DynamicLoaders();
  record_.assign(sizeof(struct ew_decision_event) + 8, 0);
  table_ = std::make_shared<FileRuleTable>();
  workloads_ = std::make_shared<WorkloadTable>();
  answer_thread_ = std::thread([this] { AnswerLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

FileEnforcer::~FileEnforcer() { Close(); }

void FileEnforcer::Close() {
  std::lock_guard<std::mutex> lock(close_mu_);
  if (closed_.exchange(true)) return;
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof one) != sizeof one) {
    // cannot happen with a fresh eventfd; the threads also check closed_ after poll wakes
  }
  if (answer_thread_.joinable()) answer_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  // Closing a group allows every pending permission event and drops every mark.
  close(fan_fd_[kFileGroup]);
  close(fan_fd_[kDirGroup]);
  close(fan_fd_[kMountGroup]);
  close(inotify_fd_);
  close(wake_fd_);
  fan_fd_[kFileGroup] = fan_fd_[kDirGroup] = fan_fd_[kMountGroup] = inotify_fd_ = wake_fd_ = -1;
  {
    std::lock_guard<std::mutex> marks_lock(marks_mu_);
    marks_.clear();
    mount_marks_.clear();
    coverage_.clear();
    watches_.clear();
    mark_count_ = 0;
  }
  {
    std::lock_guard<std::mutex> stale_lock(stale_mu_);
    stale_.clear();
    stale_count_ = 0;
  }
  std::lock_guard<std::mutex> table_lock(table_mu_);
  table_ = std::make_shared<FileRuleTable>();
}

std::shared_ptr<const FileRuleTable> FileEnforcer::Snapshot() const {
  std::lock_guard<std::mutex> lock(table_mu_);
  return table_;
}

std::shared_ptr<const WorkloadTable> FileEnforcer::WorkloadSnapshot() const {
  std::lock_guard<std::mutex> lock(table_mu_);
  return workloads_;
}

void FileEnforcer::SetWorkloads(const std::vector<WorkloadSpec>& workloads) {
  auto table = std::make_shared<WorkloadTable>();
  for (const WorkloadSpec& w : workloads) {
    table->by_mnt[w.mnt_ns] = w.workload;
    // A pid namespace shared by containers (--pid=container:) names the first.
    if (w.pid_ns != 0) table->by_pid.emplace(w.pid_ns, w.workload);
  }
  std::lock_guard<std::mutex> lock(table_mu_);
  workloads_ = table;
}

FileEnforcerStats FileEnforcer::Stats() const {
  FileEnforcerStats s;
  s.events = events_.load();
  s.denied = denied_.load();
  s.marks = mark_count_.load();
  s.internal_errors = internal_errors_.load();
  s.watch_errors = watch_errors_.load();
  std::lock_guard<std::mutex> lock(watch_error_mu_);
  s.last_watch_error = last_watch_error_;
  return s;
}

void FileEnforcer::NoteWatchError(const std::string& message) {
  watch_errors_++;
  std::lock_guard<std::mutex> lock(watch_error_mu_);
  last_watch_error_ = message;
}

// --- answering thread -------------------------------------------------------

void FileEnforcer::AnswerLoop() {
  std::vector<uint64_t> buf(8192);  // 64 KiB, aligned for fanotify_event_metadata
  struct pollfd fds[4] = {{fan_fd_[kFileGroup], POLLIN, 0},
                          {fan_fd_[kDirGroup], POLLIN, 0},
                          {fan_fd_[kMountGroup], POLLIN, 0},
                          {wake_fd_, POLLIN, 0}};
  while (!closed_.load()) {
    int r = poll(fds, 4, -1);
    if (r < 0) {
      if (errno != EINTR) {
        internal_errors_++;
        usleep(1000);  // never exit: pending opens would hang until close()
      }
      continue;
    }
    if (fds[3].revents) break;
    bool appended = false;
    for (int g : {kFileGroup, kDirGroup, kMountGroup}) {
      if (!(fds[g].revents & POLLIN)) continue;
      ssize_t n = read(fan_fd_[g], buf.data(), buf.size() * sizeof(uint64_t));
      if (n < 0) {
        // EMFILE/ENFILE: the kernel could not open the event fd and answered
        // that event itself (deny). Count it and keep going.
        if (errno != EAGAIN && errno != EINTR) internal_errors_++;
        continue;
      }
      auto* m = reinterpret_cast<const struct fanotify_event_metadata*>(buf.data());
      for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
        if (m->vers != FANOTIFY_METADATA_VERSION) {
          internal_errors_++;
          if (m->fd >= 0) {
            struct fanotify_response resp = {m->fd, FAN_ALLOW};
            if (write(fan_fd_[g], &resp, sizeof resp) < 0) internal_errors_++;
            close(m->fd);
          }
          continue;
        }
        HandleEvent(*m, g, &appended);
      }
    }
    if (appended) sink_->Flush();
  }
}

void FileEnforcer::HandleEvent(const struct fanotify_event_metadata& m, int group, bool* appended) {
  const bool perm = (m.mask & kPermEvents) != 0;
  if (m.fd < 0) {
    if (perm) internal_errors_++;
    return;
  }
  Decision d;
  size_t record_size = 0;
  std::shared_ptr<const FileRuleTable> table;
  std::shared_ptr<const WorkloadTable> workloads;
  std::string path;
  std::unique_ptr<ProcessFacts> facts;
  FileInodeId id{0, 0};
  try {
    table = Snapshot();
    workloads = WorkloadSnapshot();
    struct stat st;
    if (fstat(m.fd, &st) != 0) throw std::runtime_error("fstat of the event fd");
    id = FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
    path = FdPath(m.fd);
    facts.reset(new ProcessFacts(m.pid, report_tid_));
    d = Decide(*table, *workloads, m, path, st, facts.get());
  } catch (...) {
    // Never leave a task hanging on an internal failure: allow and count it.
    internal_errors_++;
    d = Decision{};
    facts.reset();
  }
  if (facts) {
    try {
      const bool matched = d.report_action != EW_ACTION_NONE;
      const int action = d.report_action;
      if (FirstReportOfOpen(m, group, id, action)) {
        // Read the report while the task still waits: its exe and comm are
        // the ones that acted, not what it execs into next.
        EmitDecision(*table, d, m, path, facts.get());
        record_size = reinterpret_cast<const struct ew_event_header*>(record_.data())->size;
      } else if (!matched && stale_count_.load() > 0) {
        DropStaleMark(m, group, id, path);
      }
    } catch (...) {
      internal_errors_++;  // the report is lost; the decision stands
      record_size = 0;
    }
  }
  if (perm && (m.mask & FAN_OPEN_EXEC_PERM) && table && !table->postures.empty() && !d.interpreter) {
    // Remember the exec let through: its interpreter follows while the
    // task's exe is still the caller's (each group asks about it, so the
    // entry stays; the next exec of the task replaces it).
    if (d.deny || !facts) {
      last_exec_.erase(m.pid);
    } else {
      LoadExe(facts.get());
      if (last_exec_.size() > 4096) last_exec_.clear();  // bounded; an entry only matters for one exec
      last_exec_[m.pid] = LastExec{id, facts->exe_id_ok ? facts->exe_id : FileInodeId{0, 0}, BootTimeNs()};
    }
  }
  if (perm) {
    // Counted before the answer: once the task resumes, stats() includes its event.
    events_++;
    if (d.deny) denied_++;
    struct fanotify_response resp = {m.fd, static_cast<__u32>(d.deny ? FAN_DENY : FAN_ALLOW)};
    // ENOENT: the task was killed while we decided and the event is gone.
    if (write(fan_fd_[group], &resp, sizeof resp) != static_cast<ssize_t>(sizeof resp) && errno != ENOENT)
      internal_errors_++;
  }
  close(m.fd);
  if (record_size > 0) {
    sink_->Append(record_.data(), record_size);
    *appended = true;
  }
}

// Generous: a loaded machine may take long between the two asks; a wrong
// pairing can only hide a second Audit report, never a Block.
constexpr uint64_t kPairWindowNs = 10ull * 1000000000ull;

// A file in a rule directory has marks in both groups, and the kernel asks
// the groups one after the other: a Block from the first ends the open, but an
// allowed (Audited) open reaches the second group too. The task sleeps in the
// same open meanwhile, so the next event of this tid for the same inode and
// event type from the other group is that open's second ask.
bool FileEnforcer::FirstReportOfOpen(const struct fanotify_event_metadata& m, int group, const FileInodeId& id,
                                     int action) {
  if (action == EW_ACTION_NONE && pending_audit_.empty()) return false;  // the cheap path
  const uint64_t now = BootTimeNs();
  auto it = pending_audit_.find(m.pid);
  if (it != pending_audit_.end()) {
    const unsigned bit = 1u << group;
    const bool later_ask = !(it->second.groups & bit) && it->second.id == id &&
                           it->second.mask == (m.mask & kPermEvents) && now - it->second.at_ns < kPairWindowNs;
    // The open was reported as Audited already; a Block (rules replaced
    // between the asks) is still reported. Up to three groups ask.
    if (later_ask && action != EW_ACTION_BLOCK) {
      it->second.groups |= bit;
      return false;
    }
    pending_audit_.erase(it);
  }
  if (action == EW_ACTION_AUDIT) {
    if (pending_audit_.size() > 4096) {
      for (auto p = pending_audit_.begin(); p != pending_audit_.end();)
        p = now - p->second.at_ns > kPairWindowNs ? pending_audit_.erase(p) : std::next(p);
    }
    pending_audit_[m.pid] = PendingAudit{id, m.mask & kPermEvents, 1u << group, now};
  }
  return action != EW_ACTION_NONE;
}

FileEnforcer::Decision FileEnforcer::Decide(const FileRuleTable& table, const WorkloadTable& workloads,
                                            const struct fanotify_event_metadata& m, const std::string& path,
                                            const struct stat& st, ProcessFacts* facts) {
  Decision d;
  const bool exec_event = (m.mask & FAN_OPEN_EXEC_PERM) != 0;
  if (table.rules.empty() && table.postures.empty()) return d;
  int loader = -1;  // whether the opener runs a dynamic loader; -1: not looked up yet
  auto opener_is_loader = [&]() {
    if (loader < 0) {
      LoadExe(facts);
      const auto& loaders = DynamicLoaders();
      const auto& more = table.container_loaders;
      loader = facts->exe_id_ok && (std::find(loaders.begin(), loaders.end(), facts->exe_id) != loaders.end() ||
                                    std::find(more.begin(), more.end(), facts->exe_id) != more.end());
    }
    return loader == 1;
  };
  std::vector<uint32_t> candidates;
  auto add = [&](uint32_t i, bool direct) {
    const CompiledFileRule& r = table.rules[i];
    if (r.exec && !exec_event) {
      // reading a binary is not running it; nor is a loader reading a library
      // on a pattern/execname rule (it would hit every library)
      if (r.scan || !opener_is_loader()) return;
    } else if (r.exec != exec_event) {
      return;
    }
    if (r.is_dir && !direct && !r.recursive) return;
    if (std::find(candidates.begin(), candidates.end(), i) == candidates.end()) candidates.push_back(i);
  };
  auto it = table.by_inode.find(FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
  if (it != table.by_inode.end())
    for (uint32_t i : it->second) add(i, true);
  if (!path.empty() && path[0] == '/') {
    auto p = table.by_path.find(path);
    if (p != table.by_path.end())
      for (uint32_t i : p->second) add(i, true);
    if (!table.by_dir.empty()) {
      // The parent matches every directory rule; further ancestors only recursive ones.
      size_t slash = path.rfind('/');
      bool direct = true;
      while (slash != std::string::npos) {
        auto dir = table.by_dir.find(slash == 0 ? std::string("/") : path.substr(0, slash));
        if (dir != table.by_dir.end())
          for (uint32_t i : dir->second) add(i, direct);
        if (slash == 0) break;
        slash = path.rfind('/', slash - 1);
        direct = false;
      }
    }
    for (uint32_t i : table.scan_rules) {
      const CompiledFileRule& r = table.rules[i];
      if (r.exec != exec_event) continue;
      const bool hit = r.exec_name.empty() ? GlobTokensMatch(r.glob, path)
                                           : path.compare(path.rfind('/') + 1, std::string::npos, r.exec_name) == 0;
      if (hit) add(i, true);
    }
  }
  std::sort(candidates.begin(), candidates.end());
  for (uint32_t i : candidates) {
    const CompiledFileRule& r = table.rules[i];
    if (r.action == EW_ACTION_AUDIT && d.audit_rule >= 0) continue;
    if (r.action == EW_ACTION_ALLOW && d.allow_rule >= 0) continue;
    // Host rules for the host, a container's rules for its processes.
    LoadWorkload(facts, workloads);
    if (facts->workload_known && std::find(r.workloads.begin(), r.workloads.end(), facts->workload) == r.workloads.end())
      continue;
    if (!exec_event) {
      bool write = false, owner = false;
      if (r.read_only) {
        LoadOpenFlags(facts);
        write = facts->write;
      }
      if (r.owner_only) {
        LoadStatus(facts);
        owner = facts->status_ok && facts->fsuid == st.st_uid;  // unknown: not the owner
      }
      if (r.action == EW_ACTION_ALLOW) {
        // An Allow rule permits what it names: readOnly only reads, ownerOnly only the owner.
        bool permits = (!r.read_only || !write) && (!r.owner_only || owner);
        if (!permits) continue;
      } else {
        // KubeArmor: readOnly lets reads through; ownerOnly lets the owner through
        // (for reads only when readOnly too).
        bool violates = (r.owner_only && !owner) || (!r.owner_only && !r.read_only) || (r.read_only && write);
        if (!violates) continue;
      }
    }
    if (r.has_sources) {
      LoadExe(facts);
      bool from = false;
      if (facts->exe_id_ok)
        for (const FileInodeId& s : r.source_ids) from = from || s == facts->exe_id;
      for (const std::string& s : r.source_paths) from = from || s == facts->exe_path;
      for (const SourceDirSpec& s : r.source_dirs) from = from || PathUnder(facts->exe_path, s.path, s.recursive);
      if (!from) continue;
    }
    if (r.action == EW_ACTION_BLOCK) {
      d.block_rule = static_cast<int>(i);
      break;  // Block wins over Audit and Allow
    }
    if (r.action == EW_ACTION_ALLOW)
      d.allow_rule = static_cast<int>(i);
    else
      d.audit_rule = static_cast<int>(i);
  }
  if (d.block_rule >= 0) {
    const CompiledFileRule& r = table.rules[static_cast<size_t>(d.block_rule)];
    d.deny = true;
    d.report_action = EW_ACTION_BLOCK;
    d.report_rule_id = r.rule_id;
    d.report_exec = r.exec;
    return d;
  }
  // Allow-list mode: what no Allow rule permits gets the workload's posture.
  if (d.allow_rule < 0 && !table.postures.empty()) {
    LoadWorkload(facts, workloads);
    auto p = facts->workload_known ? table.postures.find(facts->workload) : table.postures.end();
    if (p != table.postures.end()) {
      const uint8_t action = exec_event ? p->second.exec_action : p->second.open_action;
      // The dynamic loader the kernel opens for an exec it just let through
      // (PT_INTERP): part of that exec, as for KubeArmor (bprm_check sees
      // the program, not its interpreter). Run directly (`ld.so prog`), it
      // is a program like any other.
      bool interpreter = false;
      if (action != EW_ACTION_NONE && exec_event) {
        const FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
        const auto& loaders = DynamicLoaders();
        const auto& more = table.container_loaders;
        if (std::find(loaders.begin(), loaders.end(), id) != loaders.end() ||
            std::find(more.begin(), more.end(), id) != more.end()) {
          auto last = last_exec_.find(m.pid);
          if (last != last_exec_.end() && !(last->second.id == id) && BootTimeNs() - last->second.at_ns < 2000000000ull) {
            // Still inside that execve: the task's exe is the caller's. A
            // program that later runs ld.so itself has its own exe by then.
            LoadExe(facts);
            interpreter = facts->exe_id_ok && facts->exe_id == last->second.caller;
          }
        }
      }
      d.interpreter = interpreter;
      if (action != EW_ACTION_NONE && !interpreter) {
        LoadStatus(facts);
        // The agent itself is exempt from postures (not from rules): it must reach its own files.
        static const uint32_t self = static_cast<uint32_t>(getpid());
        if (!(facts->status_ok && facts->tgid == self)) {
          d.deny = action == EW_ACTION_BLOCK;
          d.report_action = action;
          d.report_rule_id = exec_event ? p->second.exec_rule : p->second.open_rule;
          d.report_exec = exec_event;
          return d;
        }
      }
    }
  }
  if (d.audit_rule >= 0) {
    const CompiledFileRule& r = table.rules[static_cast<size_t>(d.audit_rule)];
    d.report_action = EW_ACTION_AUDIT;
    d.report_rule_id = r.rule_id;
    d.report_exec = r.exec;
  }
  return d;
}

void FileEnforcer::EmitDecision(const FileRuleTable& table, const Decision& d, const struct fanotify_event_metadata& m,
                                const std::string& path, ProcessFacts* facts) {
  (void)table;
  const bool block = d.report_action == EW_ACTION_BLOCK;
  const bool exec = d.report_exec;
  LoadStatus(facts);
  LoadExe(facts);
  if (!exec) LoadOpenFlags(facts);
  auto* ev = reinterpret_cast<struct ew_decision_event*>(record_.data());
  memset(ev, 0, offsetof(struct ew_decision_event, strings));
  ev->h.kind = EW_EVENT_DECISION;
  ev->h.abi_version = EW_ABI_VERSION;
  ev->h.timestamp_ns = BootTimeNs();
  ev->h.pid = facts->status_ok ? facts->tgid : static_cast<uint32_t>(m.pid);
  ev->h.tid = static_cast<uint32_t>(m.pid);
  ev->h.ppid = facts->ppid;
  ev->h.uid = facts->uid;
  ev->h.cgroup_id = CgroupId(m.pid, Cgroup2Root());
  ev->h.mnt_ns = NsInode(m.pid, "mnt");
  ev->h.pid_ns = NsInode(m.pid, "pid");
  LoadNsParent(facts);
  ev->h.ns_pid = facts->status_ok ? facts->ns_tgid : 0;
  ev->h.ns_ppid = facts->ns_ppid;
  std::string comm;
  if (ReadSmallFile(ProcPath(m.pid, "comm"), &comm, EW_COMM_LEN + 1)) {
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    memcpy(ev->h.comm, comm.data(), std::min(comm.size(), static_cast<size_t>(EW_COMM_LEN - 1)));
  }
  ev->rule_id = d.report_rule_id;
  ev->action = block ? EW_ACTION_BLOCK : EW_ACTION_AUDIT;
  ev->operation = exec ? EW_OP_PROCESS : EW_OP_FILE;
  ev->enforcer = EW_ENFORCER_FANOTIFY;
  ev->ret = block ? -EPERM : 0;
  ev->flags = exec ? 0 : facts->flags;
  const size_t res_len = std::min(path.size(), static_cast<size_t>(EW_PATH_MAX - 1));
  const size_t exe_len = std::min(facts->exe_path.size(), static_cast<size_t>(EW_PATH_MAX - 1));
  ev->resource_len = static_cast<uint32_t>(res_len);
  ev->exe_len = static_cast<uint32_t>(exe_len);
  char* s = ev->strings;
  memcpy(s, path.data(), res_len);
  s[res_len] = '\0';
  memcpy(s + res_len + 1, facts->exe_path.data(), exe_len);
  s[res_len + 1 + exe_len] = '\0';
  size_t size = offsetof(struct ew_decision_event, strings) + res_len + 1 + exe_len + 1;
  size_t padded = (size + 7) & ~static_cast<size_t>(7);
  memset(record_.data() + size, 0, padded - size);
  ev->h.size = static_cast<uint16_t>(padded);
}

// An event matched nothing: if it comes from a mark setRules could not remove
// (its inode had moved), remove it now through the event fd.
void FileEnforcer::DropStaleMark(const struct fanotify_event_metadata& m, int group, const FileInodeId& id,
                                 const std::string& path) {
  std::lock_guard<std::mutex> lock(stale_mu_);
  auto it = stale_.find(id);
  if (group == kFileGroup && it != stale_.end() && !it->second.dir) {
    fanotify_mark(fan_fd_[kFileGroup], FAN_MARK_REMOVE, it->second.mask, m.fd, nullptr);
    stale_.erase(it);
  }
  // From the directory group: the parent's FAN_EVENT_ON_CHILD mark fired.
  size_t slash = path.rfind('/');
  if (group == kDirGroup && slash != std::string::npos && !stale_.empty()) {
    int dfd = open(slash == 0 ? "/" : path.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (dfd >= 0 && fstat(dfd, &st) == 0) {
      auto p = stale_.find(FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
      if (p != stale_.end() && p->second.dir) {
        fanotify_mark(fan_fd_[kDirGroup], FAN_MARK_REMOVE, p->second.mask, AT_FDCWD, ProcFdPath(dfd).c_str());
        stale_.erase(p);
      }
    }
    if (dfd >= 0) close(dfd);
  }
  stale_count_ = stale_.size();
}

// --- marks --------------------------------------------------------------------

bool FileEnforcer::MarkLocked(int dirfd, const char* path, const FileInodeId& id, uint64_t mask, bool dir,
                              const std::string& found_at, const PathRootPtr& root, std::string* error) {
  auto it = marks_.find(id);
  uint64_t have = it == marks_.end() ? 0 : it->second.mask;
  if ((have & mask) == mask) {
    it->second.path = found_at;
    it->second.root = root;
    return true;
  }
  uint64_t stale_bits = 0;
  {
    std::lock_guard<std::mutex> lock(stale_mu_);
    auto s = stale_.find(id);
    if (s != stale_.end() && s->second.dir == dir) {
      stale_bits = s->second.mask;  // still in the kernel: track them again
      stale_.erase(s);
      stale_count_ = stale_.size();
    }
  }
  // No FAN_MARK_DONT_FOLLOW: a symlink in the rule's path is resolved.
  if (fanotify_mark(fan_fd_[dir ? kDirGroup : kFileGroup], FAN_MARK_ADD, mask, dirfd, path) != 0) {
    *error = ErrnoText(errno);
    if (stale_bits) {
      std::lock_guard<std::mutex> lock(stale_mu_);
      stale_[id] = StaleMark{stale_bits, dir};
      stale_count_ = stale_.size();
    }
    return false;
  }
  MarkState& state = marks_[id];
  state.mask = have | mask | stale_bits;
  state.dir = dir;
  state.path = found_at;
  state.root = root;
  mark_count_ = marks_.size();
  return true;
}

void FileEnforcer::UnmarkLocked(const FileInodeId& id, uint64_t mask, bool dir, const std::string& found_at,
                                const PathRoot* root) {
  // Find the inode again where it was marked; if something else is there now
  // (renamed, replaced), leave the mark for the answerer to drop lazily.
  bool removed = false;
  int fd = OpenInRoot(root, found_at, O_PATH | O_NOFOLLOW);
  if (fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_dev) == id.dev &&
        static_cast<uint64_t>(st.st_ino) == id.ino) {
      removed = fanotify_mark(fan_fd_[dir ? kDirGroup : kFileGroup], FAN_MARK_REMOVE, mask, AT_FDCWD,
                              ProcFdPath(fd).c_str()) == 0 ||
                errno == ENOENT;
    }
    close(fd);
  }
  if (!removed) {
    std::lock_guard<std::mutex> lock(stale_mu_);
    StaleMark& stale = stale_[id];
    stale.mask |= mask;
    stale.dir = dir;
    stale_count_ = stale_.size();
  }
}

bool FileEnforcer::PlanMark(FileEnforcerPlan* plan, int dirfd, const char* path, const FileInodeId& id, uint64_t mask,
                            bool dir, const std::string& found_at, const PathRootPtr& root, const std::string& where) {
  if (plan->marks.find(id) == plan->marks.end() && plan->marks.size() >= kMaxMarks) {
    if (!plan->mark_cap_reported) {
      plan->mark_cap_reported = true;
      plan->errors.push_back(where + ": more than " + std::to_string(kMaxMarks) + " inodes to mark; " + found_at +
                             " and everything after it are not marked (not enforced)");
    }
    return false;
  }
  std::string error;
  if (!MarkLocked(dirfd, path, id, mask, dir, found_at, root, &error)) {
    plan->errors.push_back(where + ": cannot mark " + found_at + ": " + error + " (not enforced)");
    return false;
  }
  plan->marks[id] |= mask;
  return true;
}

void FileEnforcer::PlanExactRule(FileEnforcerPlan* plan, uint32_t index, size_t spec_index, const FileRuleSpec& spec,
                                 const PathRootPtr& root, const std::string& where) {
  (void)spec_index;
  FileRuleTable& table = *plan->table;
  const PathRoot* in = root.get();
  const uint64_t mask = FileMarkMask(spec.exec);
  // Watches the target's directory for a new inode taking the name (package
  // upgrades, `mv new target`), then marks whatever is there now: a file that
  // arrived before the watch is seen here, one after it by the watcher.
  auto watch_name = [&](const std::string& dir, const std::string& name, const FileInodeId* marked) {
    int dfd = OpenInRoot(in, dir, O_PATH | O_DIRECTORY);
    if (dfd < 0) return;
    PlanWatch(plan, ProcFdPath(dfd), dir, root, name, mask, 0, where);
    int fd = openat(dfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
      FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
      if (!marked || !(id == *marked))
        PlanMark(plan, AT_FDCWD, ProcFdPath(fd).c_str(), id, mask, false, JoinPath(dir, name.c_str()), root, where);
    }
    if (fd >= 0) close(fd);
    close(dfd);
  };
  int fd = OpenInRoot(in, spec.path, O_PATH);  // follows symlinks (inside the root), like the open it guards
  if (fd < 0) {
    int err = errno;
    // Not there yet: watch its directory and mark it when it appears.
    std::string trimmed = spec.path;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    size_t slash = trimmed.rfind('/');
    std::string name = trimmed.substr(slash + 1);
    int parent = err == ENOENT && !name.empty()
                     ? OpenInRoot(in, slash == 0 ? std::string("/") : trimmed.substr(0, slash), O_PATH | O_DIRECTORY)
                     : -1;
    std::string dir = parent >= 0 ? FdPath(parent) : std::string();
    if (parent >= 0) close(parent);
    if (!dir.empty()) {
      std::string target = JoinPath(dir, name.c_str());
      table.rules[index].target = target;
      table.by_path[target].push_back(index);
      watch_name(dir, name, nullptr);
      plan->errors.push_back(where + ": " + spec.path + " does not exist (" + ErrnoText(err) +
                             "); not enforced until it is created in " + dir);
      return;
    }
    plan->errors.push_back(where + ": " + spec.path + ": " + ErrnoText(err) + " (not enforced)");
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    plan->errors.push_back(where + ": " + spec.path +
                           " is a directory; name it in a directory rule (matchDirectories) (not enforced)");
    close(fd);
    return;
  }
  const FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  std::string target = FdPath(fd);
  if (target.empty()) target = spec.path;
  table.rules[index].target = target;
  table.by_path[target].push_back(index);
  if (PlanMark(plan, AT_FDCWD, ProcFdPath(fd).c_str(), id, mask, false, target, root, where))
    table.by_inode[id].push_back(index);
  close(fd);
  size_t slash = target.rfind('/');
  if (slash != std::string::npos && slash + 1 < target.size())
    watch_name(slash == 0 ? std::string("/") : target.substr(0, slash), target.substr(slash + 1), &id);
}

void FileEnforcer::PlanDirRule(FileEnforcerPlan* plan, uint32_t index, size_t spec_index, const FileRuleSpec& spec,
                               const PathRootPtr& in_root, const std::string& where) {
  (void)spec_index;
  FileRuleTable& table = *plan->table;
  const uint64_t perm = spec.exec ? FAN_OPEN_EXEC_PERM : FAN_OPEN_PERM;
  int root = OpenInRoot(in_root.get(), spec.path, O_RDONLY | O_DIRECTORY);
  if (root < 0) {
    int err = errno;
    plan->errors.push_back(where + ": directory " + spec.path + ": " +
                           (err == ENOTDIR ? std::string("not a directory") : ErrnoText(err)) + " (not enforced)");
    return;
  }
  std::string target = FdPath(root);
  if (target.empty()) target = spec.path;
  table.rules[index].target = target;
  table.by_dir[target].push_back(index);

  struct Frame {
    DIR* dir;
    std::string path;
  };
  std::vector<Frame> stack;
  std::unordered_set<FileInodeId, FileInodeIdHash> seen;  // bind-mount loops
  // Marks a directory and pushes it to be listed. Takes ownership of dfd.
  auto enter = [&](int dfd, std::string path) {
    struct stat st;
    if (fstat(dfd, &st) != 0 ||
        !seen.insert(FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)}).second) {
      close(dfd);
      return;
    }
    plan->dirs++;
    PlanMark(plan, dfd, nullptr, FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)},
             perm | FAN_EVENT_ON_CHILD, true, path, in_root, where);
    // Watched before it is listed: a subdirectory made meanwhile is listed or reported.
    if (spec.recursive) PlanWatch(plan, ProcFdPath(dfd), path, in_root, std::string(), 0, perm, where);
    DIR* dir = fdopendir(dfd);
    if (!dir) {
      plan->errors.push_back(where + ": cannot list " + path + ": " + ErrnoText(errno));
      close(dfd);
      return;
    }
    stack.push_back(Frame{dir, std::move(path)});
  };
  enter(root, target);
  while (!stack.empty()) {
    DIR* dir = stack.back().dir;
    struct dirent* e = readdir(dir);
    if (!e) {
      closedir(dir);
      stack.pop_back();
      continue;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    std::string child = JoinPath(stack.back().path, e->d_name);
    struct stat st;
    // Symlinks are not followed: opening one reaches its target's path, which
    // the rule does not name (as for path-based LSMs).
    if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(st.st_mode)) {
      // The file's own inode mark makes a hard link to it made elsewhere hit too.
      int fd = openat(dirfd(dir), e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) continue;
      struct stat now;
      if (fstat(fd, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino) {
        FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
        if (PlanMark(plan, AT_FDCWD, ProcFdPath(fd).c_str(), id, FileMarkMask(spec.exec), false, child, in_root, where))
          table.by_inode[id].push_back(index);
      }
      close(fd);
    } else if (S_ISDIR(st.st_mode) && spec.recursive) {
      if (plan->dirs >= kMaxWatchedDirs) {
        if (!plan->dir_cap_reported) {
          plan->dir_cap_reported = true;
          plan->errors.push_back(where + ": more than " + std::to_string(kMaxWatchedDirs) + " directories; " + child +
                                 " and the directories after it are not marked (not enforced there)");
        }
        continue;
      }
      if (child.size() >= PATH_MAX) {
        plan->errors.push_back(where + ": " + child.substr(0, 128) + "...: path longer than PATH_MAX (not enforced)");
        continue;
      }
      int cfd = openat(dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0) {
        plan->errors.push_back(where + ": cannot open " + child + ": " + ErrnoText(errno) + " (not enforced there)");
        continue;
      }
      enter(cfd, child);
    }
  }
}

int FileEnforcer::AddWatchLocked(const std::string& watch_path, const std::string& dir, const PathRootPtr& root,
                                 std::unordered_map<int, FileWatchState>* into, std::string* error) {
  // Callers pass /proc/self/fd/N of a directory they opened (so the watch is
  // on that inode) or a canonical path: following the last link is intended.
  int wd = inotify_add_watch(inotify_fd_, watch_path.c_str(), kWatchMask);
  if (wd < 0) {
    *error = ErrnoText(errno);
    return -1;
  }
  (*into)[wd].dir = dir;  // the same inode under a new path (renamed): the newest path wins
  (*into)[wd].root = root;
  return wd;
}

bool FileEnforcer::PlanWatch(FileEnforcerPlan* plan, const std::string& watch_path, const std::string& dir,
                             const PathRootPtr& root, const std::string& exact_name, uint64_t exact_mask,
                             uint64_t recursive_mask, const std::string& where) {
  if (plan->watches.size() >= kMaxWatchedDirs) {
    if (!plan->watch_cap_reported) {
      plan->watch_cap_reported = true;
      plan->errors.push_back(where + ": more than " + std::to_string(kMaxWatchedDirs) + " directories to watch; " +
                             dir + " and the directories after it are not watched (new subdirectories and replaced " +
                             "files there are not marked)");
    }
    return false;
  }
  std::string error;
  int wd = AddWatchLocked(watch_path, dir, root, &plan->watches, &error);
  if (wd < 0) {
    plan->errors.push_back(where + ": cannot watch " + dir + ": " + error +
                           " (new subdirectories and replaced files there are not marked)");
    return false;
  }
  FileWatchState& w = plan->watches[wd];
  if (!exact_name.empty()) w.exact_names[exact_name] |= exact_mask;
  w.recursive_mask |= recursive_mask;
  return true;
}

void FileEnforcer::PlanMounts(FileEnforcerPlan* plan, const WorkloadPolicySpec& policy, const PathRootPtr& root,
                              std::unordered_map<uint64_t, MountMark>* wanted) {
  const uint64_t mask = (policy.cover_exec ? FAN_OPEN_EXEC_PERM : 0) | (policy.cover_open ? FAN_OPEN_PERM : 0);
  if (!mask) return;
  const std::string where =
      policy.workload == 0 ? std::string("host") : "container mount namespace " + std::to_string(policy.root_mnt_ns);
  const std::string info = root ? "/proc/" + std::to_string(policy.root_pid) + "/mountinfo" : "/proc/self/mountinfo";
  std::vector<MountInfoEntry> mounts = ReadMountInfo(info);
  if (mounts.empty()) {
    plan->errors.push_back(where + ": cannot read " + info + "; allow-list, pattern and execname rules not enforced there");
    return;
  }
  // Filesystem (superblock) marks: they also cover the copies of these mounts
  // in other mount namespaces (unshare -m) and bind mounts of them. A
  // container's other mounts (volumes, /etc/hosts) are bind mounts of host
  // filesystems: marking those would send every open on the host through
  // the answerer, so they get mount marks (an unshared copy of one of them
  // inside a privileged container is not covered).
  size_t covered = 0;
  for (const MountInfoEntry& e : mounts) {
    if (PseudoFilesystem(e.type)) continue;
    if (policy.mounts_given &&
        std::find(policy.mounts.begin(), policy.mounts.end(), e.point) == policy.mounts.end())
      continue;
    const bool filesystem = !root || e.point == "/";
    const uint64_t key = filesystem ? e.sb_dev : (1ull << 63) | e.id;
    auto done = wanted->find(key);
    if (done != wanted->end() && (done->second.mask & mask) == mask) {
      covered++;
      continue;
    }
    int fd = OpenInRoot(root.get(), e.point, O_PATH);
    if (fd < 0) {
      plan->errors.push_back(where + ": mount " + e.point + " (" + e.type + "): " + ErrnoText(errno) +
                             "; allow-list, pattern and execname rules not enforced there");
      continue;
    }
    if (MountIdOf(fd) != e.id) {  // hidden under another mount on the same point (listed too)
      close(fd);
      continue;
    }
    auto have_it = mount_marks_.find(key);
    const uint64_t have = have_it == mount_marks_.end() ? 0 : have_it->second.mask;
    if ((have & mask) != mask) {
      if (fanotify_mark(fan_fd_[kMountGroup], FAN_MARK_ADD | (filesystem ? FAN_MARK_FILESYSTEM : FAN_MARK_MOUNT), mask,
                        AT_FDCWD, ProcFdPath(fd).c_str()) != 0) {
        plan->errors.push_back(where + ": cannot mark " + (filesystem ? "the filesystem of " : "mount ") + e.point +
                               " (" + e.type + "): " + ErrnoText(errno) +
                               "; allow-list, pattern and execname rules not enforced there");
        close(fd);
        continue;
      }
      mount_marks_[key] = MountMark{have | mask, e.point, root, e.id, filesystem};
    }
    MountMark& w = (*wanted)[key];
    w.mask |= mask;
    w.path = e.point;
    w.root = root;
    w.mount_id = e.id;
    w.filesystem = filesystem;
    covered++;
    close(fd);
  }
  if (covered == 0 && !policy.mounts_given)
    plan->errors.push_back(where + ": no mount could be covered; allow-list, pattern and execname rules not enforced");
}

SetRulesResult FileEnforcer::SetRules(const std::vector<FileRuleSpec>& rules,
                                      const std::vector<WorkloadPolicySpec>& policies) {
  std::lock_guard<std::mutex> lock(marks_mu_);
  if (closed_.load()) throw std::runtime_error("FileEnforcer is closed");
  FileEnforcerPlan plan;
  FileRuleTable& table = *plan.table;
  table.rules.reserve(rules.size());
  // Container roots, opened once per call: (pid, mount namespace) -> root or why not.
  std::map<std::pair<int32_t, uint64_t>, std::pair<PathRootPtr, std::string>> roots;

  // 1. Compile the rules, add the marks and watches they need (existing ones
  //    stay). Each directory is watched before it is listed or its target
  //    opened, so what appears meanwhile is either seen here or reported.
  for (size_t i = 0; i < rules.size(); i++) {
    const FileRuleSpec& spec = rules[i];
    std::string where = "rule " + std::to_string(spec.rule_id) + " (rules[" + std::to_string(i) + "])";
    PathRootPtr root;
    if (spec.root_pid > 0) {
      where = "rule " + std::to_string(spec.rule_id) + " (rules[" + std::to_string(i) + "], container mount namespace " +
              std::to_string(spec.root_mnt_ns) + ")";
      auto key = std::make_pair(spec.root_pid, spec.root_mnt_ns);
      auto found = roots.find(key);
      if (found == roots.end()) {
        std::pair<PathRootPtr, std::string> opened;
        try {
          opened.first = OpenContainerRoot(spec.root_pid, spec.root_mnt_ns);
          ContainerLoaders(*opened.first, &table.container_loaders);
        } catch (const std::exception& e) {
          opened.second = e.what();
        }
        found = roots.emplace(key, opened).first;
      }
      if (!found->second.first) {
        plan.errors.push_back(where + ": cannot find the container's root: " + found->second.second + " (not enforced)");
        continue;
      }
      root = found->second.first;
    }
    const PathRoot* in = root.get();
    CompiledFileRule r;
    r.workloads = spec.workloads;
    r.root = root;
    r.rule_id = spec.rule_id;
    r.action = spec.action;
    r.exec = spec.exec;
    r.is_dir = spec.is_dir;
    r.recursive = spec.recursive;
    r.read_only = spec.read_only;
    r.owner_only = spec.owner_only;
    r.has_sources = !spec.sources.empty() || !spec.source_dirs.empty();
    for (const std::string& src : spec.sources) {
      int fd = OpenInRoot(in, src, O_PATH);
      if (fd < 0) {
        // A missing source still limits the rule (to nothing, until it appears):
        // it must not turn the rule into "any process".
        r.source_paths.push_back(src);
        plan.errors.push_back(where + ": fromSource " + src + ": " + ErrnoText(errno) +
                              " (matched by path only, once it exists)");
        continue;
      }
      struct stat st;
      if (fstat(fd, &st) == 0)
        r.source_ids.push_back(FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
      std::string canonical = FdPath(fd);
      r.source_paths.push_back(canonical.empty() ? src : canonical);
      close(fd);
    }
    for (const SourceDirSpec& src : spec.source_dirs) {
      int fd = OpenInRoot(in, src.path, O_PATH | O_DIRECTORY);
      std::string canonical = fd >= 0 ? FdPath(fd) : std::string();
      if (fd >= 0) close(fd);
      if (canonical.empty()) {
        canonical = src.path;
        while (canonical.size() > 1 && canonical.back() == '/') canonical.pop_back();
        plan.errors.push_back(where + ": fromSource directory " + src.path + " cannot be resolved" +
                              " (matched by path as given)");
      }
      r.source_dirs.push_back(SourceDirSpec{canonical, src.recursive});
    }
    if (!spec.pattern.empty() || !spec.exec_name.empty()) {
      // Matched by path on the workload's mount marks (setRules' policies cover them).
      r.scan = true;
      r.exec_name = spec.exec_name;
      if (!spec.pattern.empty()) r.glob = ParseGlob(spec.pattern);
      table.rules.push_back(std::move(r));
      table.scan_rules.push_back(static_cast<uint32_t>(table.rules.size() - 1));
      continue;
    }
    table.rules.push_back(std::move(r));
    const uint32_t index = static_cast<uint32_t>(table.rules.size() - 1);
    if (spec.is_dir)
      PlanDirRule(&plan, index, i, spec, root, where);
    else
      PlanExactRule(&plan, index, i, spec, root, where);
  }

  // 1b. Allow-list postures and the mounts they (and pattern/execname rules) cover.
  std::unordered_map<uint64_t, MountMark> wanted_mounts;
  std::vector<CoverageEntry> coverage;
  for (const WorkloadPolicySpec& policy : policies) {
    PathRootPtr root;
    if (policy.root_pid > 0) {
      auto key = std::make_pair(policy.root_pid, policy.root_mnt_ns);
      auto found = roots.find(key);
      if (found == roots.end()) {
        std::pair<PathRootPtr, std::string> opened;
        try {
          opened.first = OpenContainerRoot(policy.root_pid, policy.root_mnt_ns);
        } catch (const std::exception& e) {
          opened.second = e.what();
        }
        found = roots.emplace(key, opened).first;
      }
      if (!found->second.first) {
        plan.errors.push_back("container mount namespace " + std::to_string(policy.root_mnt_ns) +
                              ": cannot find the container's root: " + found->second.second +
                              " (allow-list, pattern and execname rules not enforced there)");
        continue;
      }
      root = found->second.first;
    }
    PostureEntry& posture = table.postures[policy.workload];
    if (policy.exec_posture_action) {
      posture.exec_rule = policy.exec_posture_rule;
      posture.exec_action = policy.exec_posture_action;
    }
    if (policy.open_posture_action) {
      posture.open_rule = policy.open_posture_rule;
      posture.open_action = policy.open_posture_action;
    }
    if (!posture.exec_action && !posture.open_action) table.postures.erase(policy.workload);
    PlanMounts(&plan, policy, root, &wanted_mounts);
    if (policy.cover_exec || policy.cover_open) {
      const std::string info =
          root ? "/proc/" + std::to_string(policy.root_pid) + "/mountinfo" : std::string("/proc/self/mountinfo");
      int fd = open(info.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        plan.errors.push_back(info + ": " + ErrnoText(errno) + "; filesystems mounted later are not covered");
      coverage.push_back(CoverageEntry{policy, root, fd >= 0 ? std::make_shared<OwnedFd>(fd) : nullptr});
    }
  }
  coverage_.swap(coverage);

  // 2. Publish the new table.
  {
    std::lock_guard<std::mutex> table_lock(table_mu_);
    table_ = plan.table;
  }
  // Mount marks no longer wanted: removed after the new table is in force.
  for (auto it = mount_marks_.begin(); it != mount_marks_.end();) {
    auto w = wanted_mounts.find(it->first);
    const uint64_t wanted = w == wanted_mounts.end() ? 0 : w->second.mask;
    const uint64_t extra = it->second.mask & ~wanted;
    if (!extra) {
      ++it;
      continue;
    }
    int fd = OpenInRoot(it->second.root.get(), it->second.path, O_PATH);
    if (fd >= 0 && MountIdOf(fd) == it->second.mount_id)
      fanotify_mark(fan_fd_[kMountGroup],
                    FAN_MARK_REMOVE | (it->second.filesystem ? FAN_MARK_FILESYSTEM : FAN_MARK_MOUNT), extra, AT_FDCWD,
                    ProcFdPath(fd).c_str());
    if (fd >= 0) close(fd);
    // not found: the mount is gone, and its mark with it
    if (!wanted) {
      it = mount_marks_.erase(it);
    } else {
      it->second.mask = wanted;
      ++it;
    }
  }

  // 3. Drop what is no longer needed.
  for (auto& old : watches_)
    if (plan.watches.find(old.first) == plan.watches.end()) inotify_rm_watch(inotify_fd_, old.first);
  watches_.swap(plan.watches);
  for (auto it = marks_.begin(); it != marks_.end();) {
    auto want = plan.marks.find(it->first);
    const uint64_t wanted = want == plan.marks.end() ? 0 : want->second;
    const uint64_t extra_events = it->second.mask & ~wanted & kPermEvents;
    if (!extra_events) {
      ++it;
      continue;
    }
    if (!(wanted & kPermEvents)) {
      UnmarkLocked(it->first, it->second.mask, it->second.dir, it->second.path, it->second.root.get());
      it = marks_.erase(it);
    } else {
      UnmarkLocked(it->first, extra_events, it->second.dir, it->second.path, it->second.root.get());
      it->second.mask &= ~extra_events;
      ++it;
    }
  }
  mark_count_ = marks_.size() + mount_marks_.size();
  return SetRulesResult{marks_.size() + mount_marks_.size(), std::move(plan.errors)};
}

// --- watcher thread ---------------------------------------------------------

// A directory appeared under a recursive rule's directory: mark it and its
// subdirectories. Files in it are matched by path through these marks.
void FileEnforcer::WalkNewDirLocked(const std::string& top, uint64_t perm, const PathRootPtr& root) {
  std::vector<std::string> queue{top};
  for (size_t q = 0; q < queue.size(); q++) {
    const std::string dir = queue[q];
    if (watches_.size() >= kMaxWatchedDirs || marks_.size() >= kMaxMarks) {
      NoteWatchError("limit of " + std::to_string(kMaxWatchedDirs) + " directories / " + std::to_string(kMaxMarks) +
                     " marks reached: new directory " + dir + " is not marked (not enforced there)");
      return;
    }
    int dfd = OpenInRoot(root.get(), dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (dfd < 0) continue;  // gone again, or not a directory
    // Watch, then mark, then list: a subdirectory made meanwhile is either
    // listed here or reported by the watch.
    std::string error;
    int wd = AddWatchLocked(ProcFdPath(dfd), dir, root, &watches_, &error);
    if (wd < 0) {
      NoteWatchError("cannot watch new directory " + dir + ": " + error);
    } else {
      watches_[wd].recursive_mask |= perm;
    }
    struct stat st;
    if (fstat(dfd, &st) == 0 &&
        !MarkLocked(dfd, nullptr, FileInodeId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)},
                    perm | FAN_EVENT_ON_CHILD, true, dir, root, &error))
      NoteWatchError("cannot mark new directory " + dir + ": " + error);
    DIR* d = fdopendir(dfd);
    if (!d) {
      close(dfd);
      continue;
    }
    while (struct dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      struct stat cst;
      if (fstatat(dirfd(d), e->d_name, &cst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(cst.st_mode))
        queue.push_back(JoinPath(dir, e->d_name));
    }
    closedir(d);
  }
}

// New mounts in a covered mount namespace: mark their filesystems too.
void FileEnforcer::RescanMountsLocked() {
  FileEnforcerPlan plan;
  std::unordered_map<uint64_t, MountMark> wanted;
  for (const CoverageEntry& c : coverage_) PlanMounts(&plan, c.policy, c.root, &wanted);
  for (const std::string& e : plan.errors) NoteWatchError(e);
  mark_count_ = marks_.size() + mount_marks_.size();
}

void FileEnforcer::WatchLoop() {
  std::vector<uint64_t> buf(8192);  // 64 KiB, aligned for inotify_event
  while (!closed_.load()) {
    std::vector<std::shared_ptr<OwnedFd>> infos;  // kept open while polled
    {
      std::lock_guard<std::mutex> lock(marks_mu_);
      for (const CoverageEntry& c : coverage_)
        if (c.mountinfo) infos.push_back(c.mountinfo);
    }
    std::vector<struct pollfd> fds = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    for (const auto& i : infos) fds.push_back({i->fd, POLLPRI, 0});
    // The timeout picks up a new coverage list from setRules.
    int r = poll(fds.data(), fds.size(), 1000);
    if (r < 0) {
      if (errno != EINTR) usleep(1000);
      continue;
    }
    if (fds[1].revents) break;
    bool mounts_changed = false;
    for (size_t k = 2; k < fds.size(); k++) mounts_changed = mounts_changed || (fds[k].revents & (POLLPRI | POLLERR));
    if (mounts_changed) {
      std::lock_guard<std::mutex> lock(marks_mu_);
      RescanMountsLocked();
    }
    if (!(fds[0].revents & POLLIN)) continue;
    ssize_t n = read(inotify_fd_, buf.data(), buf.size() * sizeof(uint64_t));
    if (n <= 0) continue;
    std::lock_guard<std::mutex> lock(marks_mu_);
    const char* p = reinterpret_cast<const char*>(buf.data());
    const char* end = p + n;
    while (p < end) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        NoteWatchError("inotify queue overflowed: new subdirectories or replaced targets may be unmarked until the "
                       "next setRules");
        continue;
      }
      if (ev->mask & IN_IGNORED) {
        watches_.erase(ev->wd);
        continue;
      }
      auto w = watches_.find(ev->wd);
      if (w == watches_.end() || ev->len == 0) continue;
      const std::string name(ev->name);
      const std::string path = JoinPath(w->second.dir, name.c_str());
      auto exact = w->second.exact_names.find(name);
      if (exact != w->second.exact_names.end() && !(ev->mask & IN_ISDIR)) {
        const uint64_t mask = exact->second;
        int fd = OpenInRoot(w->second.root.get(), path, O_PATH | O_NOFOLLOW);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
          std::string error;
          const FileInodeId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
          if (!MarkLocked(AT_FDCWD, ProcFdPath(fd).c_str(), id, mask, false, path, w->second.root, &error))
            NoteWatchError("cannot mark new " + path + ": " + error);
        }
        if (fd >= 0) close(fd);
      }
      if ((ev->mask & IN_ISDIR) && w->second.recursive_mask) {
        const uint64_t perm = w->second.recursive_mask;  // w may be invalidated by the walk
        const PathRootPtr root = w->second.root;
        WalkNewDirLocked(path, perm, root);
      }
    }
  }
}

// --- JavaScript binding -----------------------------------------------------

namespace {

std::string RuleField(size_t i, const char* field) {
  return "setRules: rules[" + std::to_string(i) + "]." + field;
}

bool GetBool(const Napi::Object& o, size_t i, const char* field, bool optional, bool fallback) {
  Napi::Value v = o.Get(field);
  if (optional && v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), RuleField(i, field) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string CheckedPath(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsString()) throw Napi::TypeError::New(env, what + " must be an absolute path string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty() || s[0] != '/') throw Napi::TypeError::New(env, what + " must be an absolute path, got \"" + s + "\"");
  if (s.find('\0') != std::string::npos) throw Napi::TypeError::New(env, what + " contains a NUL byte");
  if (s.size() >= PATH_MAX)
    throw Napi::TypeError::New(env, what + " is " + std::to_string(s.size()) + " bytes, longer than PATH_MAX - 1 (" +
                                        std::to_string(PATH_MAX - 1) + ")");
  return s;
}

uint64_t BigU64(Napi::Env env, Napi::Value v, const std::string& what) {
  bool lossless = false;
  uint64_t n = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
  if (!v.IsBigInt() || !lossless) throw Napi::TypeError::New(env, what + " must be a bigint in 0n..2n**64n-1n");
  return n;
}

uint32_t Uint32In(Napi::Env env, Napi::Value v, const std::string& what, double min, double max) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!v.IsNumber() || !(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::TypeError::New(env, what + " must be an integer in " + std::to_string(static_cast<uint64_t>(min)) + ".." +
                                        std::to_string(static_cast<uint64_t>(max)));
  return static_cast<uint32_t>(d);
}

std::vector<FileRuleSpec> ParseRules(Napi::Env env, Napi::Value value) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, "setRules: rules must be an array");
  Napi::Array arr = value.As<Napi::Array>();
  std::vector<FileRuleSpec> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value item = arr.Get(i);
    if (!item.IsObject() || item.IsArray())
      throw Napi::TypeError::New(env, "setRules: rules[" + std::to_string(i) + "] must be an object");
    Napi::Object o = item.As<Napi::Object>();
    FileRuleSpec r;
    Napi::Value id = o.Get("ruleId");
    double idv = id.IsNumber() ? id.As<Napi::Number>().DoubleValue() : -1;
    if (!id.IsNumber() || idv < 0 || idv > 4294967295.0 || idv != static_cast<double>(static_cast<uint64_t>(idv)))
      throw Napi::TypeError::New(env, RuleField(i, "ruleId") + " must be an integer in 0..4294967295");
    r.rule_id = static_cast<uint32_t>(idv);
    Napi::Value action = o.Get("action");
    double av = action.IsNumber() ? action.As<Napi::Number>().DoubleValue() : -1;
    if (av != EW_ACTION_AUDIT && av != EW_ACTION_BLOCK && av != EW_ACTION_ALLOW)
      throw Napi::TypeError::New(env, RuleField(i, "action") + " must be 1 (Audit), 2 (Block) or 3 (Allow)");
    r.action = static_cast<uint8_t>(av);
    r.exec = GetBool(o, i, "exec", false, false);
    r.path = CheckedPath(env, o.Get("path"), RuleField(i, "path"));
    r.is_dir = GetBool(o, i, "isDir", false, false);
    r.recursive = GetBool(o, i, "recursive", false, false);
    r.read_only = GetBool(o, i, "readOnly", false, false);
    r.owner_only = GetBool(o, i, "ownerOnly", true, false);
    if (r.recursive && !r.is_dir)
      throw Napi::TypeError::New(env, RuleField(i, "recursive") + " can only be true for a directory rule (isDir)");
    if (r.exec && (r.read_only || r.owner_only))
      throw Napi::TypeError::New(env, RuleField(i, r.read_only ? "readOnly" : "ownerOnly") +
                                          " only applies to file rules (exec: false)");
    Napi::Value sources = o.Get("sources");
    if (!sources.IsArray()) throw Napi::TypeError::New(env, RuleField(i, "sources") + " must be an array of paths");
    Napi::Array src = sources.As<Napi::Array>();
    for (uint32_t j = 0; j < src.Length(); j++)
      r.sources.push_back(CheckedPath(env, src.Get(j), RuleField(i, "sources") + "[" + std::to_string(j) + "]"));
    Napi::Value dirs = o.Get("sourceDirs");
    if (!dirs.IsUndefined()) {
      if (!dirs.IsArray())
        throw Napi::TypeError::New(env, RuleField(i, "sourceDirs") + " must be an array of {path, recursive}");
      Napi::Array da = dirs.As<Napi::Array>();
      for (uint32_t j = 0; j < da.Length(); j++) {
        const std::string what = RuleField(i, "sourceDirs") + "[" + std::to_string(j) + "]";
        Napi::Value d = da.Get(j);
        if (!d.IsObject()) throw Napi::TypeError::New(env, what + " must be an object {path, recursive}");
        Napi::Object dobj = d.As<Napi::Object>();
        SourceDirSpec sd;
        sd.path = CheckedPath(env, dobj.Get("path"), what + ".path");
        Napi::Value rec = dobj.Get("recursive");
        if (!rec.IsBoolean()) throw Napi::TypeError::New(env, what + ".recursive must be a boolean");
        sd.recursive = rec.As<Napi::Boolean>().Value();
        r.source_dirs.push_back(std::move(sd));
      }
    }
    Napi::Value workloads = o.Get("workloads");
    if (!workloads.IsUndefined()) {
      if (!workloads.IsArray() || workloads.As<Napi::Array>().Length() == 0)
        throw Napi::TypeError::New(env, RuleField(i, "workloads") + " must be a non-empty array of bigints (0n: the host)");
      Napi::Array wa = workloads.As<Napi::Array>();
      r.workloads.clear();
      for (uint32_t j = 0; j < wa.Length(); j++)
        r.workloads.push_back(BigU64(env, wa.Get(j), RuleField(i, "workloads") + "[" + std::to_string(j) + "]"));
    }
    for (const char* field : {"pattern", "execName"}) {
      Napi::Value v = o.Get(field);
      if (v.IsUndefined()) continue;
      if (!v.IsString()) throw Napi::TypeError::New(env, RuleField(i, field) + " must be a string");
      std::string text = v.As<Napi::String>().Utf8Value();
      if (text.empty() || text.size() >= PATH_MAX || text.find('\0') != std::string::npos)
        throw Napi::TypeError::New(env, RuleField(i, field) + " must be 1.." + std::to_string(PATH_MAX - 1) +
                                            " bytes without NUL");
      if (std::string(field) == "pattern") {
        if (text[0] != '/') throw Napi::TypeError::New(env, RuleField(i, field) + " must start with /");
        r.pattern = text;
      } else {
        if (text.find('/') != std::string::npos) throw Napi::TypeError::New(env, RuleField(i, field) + " must not contain /");
        r.exec_name = text;
      }
    }
    if (!r.pattern.empty() && !r.exec_name.empty())
      throw Napi::TypeError::New(env, RuleField(i, "pattern") + " and execName exclude each other");
    Napi::Value root = o.Get("root");
    if (!root.IsUndefined()) {
      const std::string what = RuleField(i, "root");
      if (!root.IsObject()) throw Napi::TypeError::New(env, what + " must be an object {pid, mntNs}");
      Napi::Object ro = root.As<Napi::Object>();
      r.root_pid = static_cast<int32_t>(Uint32In(env, ro.Get("pid"), what + ".pid", 1, 0x7fffffff));
      r.root_mnt_ns = Uint32In(env, ro.Get("mntNs"), what + ".mntNs", 1, 0xffffffff);
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<WorkloadPolicySpec> ParsePolicies(Napi::Env env, Napi::Value value) {
  std::vector<WorkloadPolicySpec> out;
  if (value.IsUndefined()) return out;
  if (!value.IsArray())
    throw Napi::TypeError::New(env, "setRules: policies must be an array of {workload, coverExec, coverOpen, ...}");
  Napi::Array arr = value.As<Napi::Array>();
  std::unordered_set<uint64_t> seen;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const std::string what = "setRules: policies[" + std::to_string(i) + "]";
    Napi::Value item = arr.Get(i);
    if (!item.IsObject() || item.IsArray()) throw Napi::TypeError::New(env, what + " must be an object");
    Napi::Object o = item.As<Napi::Object>();
    WorkloadPolicySpec p;
    p.workload = BigU64(env, o.Get("workload"), what + ".workload");
    if (!seen.insert(p.workload).second) throw Napi::TypeError::New(env, what + ".workload is named twice");
    for (const char* f : {"coverExec", "coverOpen"}) {
      Napi::Value v = o.Get(f);
      if (!v.IsBoolean()) throw Napi::TypeError::New(env, what + "." + f + " must be a boolean");
      (std::string(f) == "coverExec" ? p.cover_exec : p.cover_open) = v.As<Napi::Boolean>().Value();
    }
    for (const char* f : {"execPosture", "openPosture"}) {
      Napi::Value v = o.Get(f);
      if (v.IsUndefined()) continue;
      if (!v.IsObject()) throw Napi::TypeError::New(env, what + "." + f + " must be an object {ruleId, action}");
      Napi::Object po = v.As<Napi::Object>();
      uint32_t rule = Uint32In(env, po.Get("ruleId"), what + "." + f + ".ruleId", 0, 4294967295.0);
      uint32_t action = Uint32In(env, po.Get("action"), what + "." + f + ".action", EW_ACTION_AUDIT, EW_ACTION_BLOCK);
      if (std::string(f) == "execPosture") {
        p.exec_posture_rule = rule;
        p.exec_posture_action = static_cast<uint8_t>(action);
      } else {
        p.open_posture_rule = rule;
        p.open_posture_action = static_cast<uint8_t>(action);
      }
    }
    Napi::Value root = o.Get("root");
    if (!root.IsUndefined()) {
      if (!root.IsObject()) throw Napi::TypeError::New(env, what + ".root must be an object {pid, mntNs}");
      Napi::Object ro = root.As<Napi::Object>();
      p.root_pid = static_cast<int32_t>(Uint32In(env, ro.Get("pid"), what + ".root.pid", 1, 0x7fffffff));
      p.root_mnt_ns = Uint32In(env, ro.Get("mntNs"), what + ".root.mntNs", 1, 0xffffffff);
    }
    if ((p.workload == 0) != (p.root_pid == 0))
      throw Napi::TypeError::New(env, what + ": a container (workload != 0n) needs root, the host (0n) has none");
    Napi::Value mounts = o.Get("mounts");
    if (!mounts.IsUndefined()) {
      if (p.workload != 0 || !mounts.IsArray())
        throw Napi::TypeError::New(env, what + ".mounts must be an array of mount points, for the host only");
      p.mounts_given = true;
      Napi::Array ma = mounts.As<Napi::Array>();
      for (uint32_t j = 0; j < ma.Length(); j++)
        p.mounts.push_back(CheckedPath(env, ma.Get(j), what + ".mounts[" + std::to_string(j) + "]"));
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<WorkloadSpec> ParseWorkloads(Napi::Env env, Napi::Value value) {
  if (!value.IsArray())
    throw Napi::TypeError::New(env, "setWorkloads: workloads must be an array of {workload, mntNs, pidNs}");
  Napi::Array arr = value.As<Napi::Array>();
  std::vector<WorkloadSpec> out;
  std::unordered_set<uint32_t> mnt_seen;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const std::string what = "setWorkloads: workloads[" + std::to_string(i) + "]";
    Napi::Value item = arr.Get(i);
    if (!item.IsObject() || item.IsArray()) throw Napi::TypeError::New(env, what + " must be an object {workload, mntNs, pidNs}");
    Napi::Object o = item.As<Napi::Object>();
    WorkloadSpec w;
    w.workload = BigU64(env, o.Get("workload"), what + ".workload");
    if (w.workload == 0) throw Napi::TypeError::New(env, what + ".workload must not be 0n (0n is the host)");
    w.mnt_ns = Uint32In(env, o.Get("mntNs"), what + ".mntNs", 1, 0xffffffff);
    w.pid_ns = Uint32In(env, o.Get("pidNs"), what + ".pidNs", 0, 0xffffffff);
    if (!mnt_seen.insert(w.mnt_ns).second)
      throw Napi::TypeError::New(env, what + ".mntNs " + std::to_string(w.mnt_ns) + " is named twice");
    out.push_back(w);
  }
  return out;
}

void CloseAtEnvExit(void* arg) {
  auto* weak = static_cast<std::weak_ptr<FileEnforcer>*>(arg);
  if (auto e = weak->lock()) e->Close();
}

}  // namespace

class FileEnforcerWrap : public Napi::ObjectWrap<FileEnforcerWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "FileEnforcer",
                                    {InstanceMethod("setRules", &FileEnforcerWrap::SetRules),
                                     InstanceMethod("setWorkloads", &FileEnforcerWrap::SetWorkloads),
                                     InstanceMethod("stats", &FileEnforcerWrap::Stats),
                                     InstanceMethod("close", &FileEnforcerWrap::Close)});
    exports.Set("FileEnforcer", fn);
  }

  explicit FileEnforcerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileEnforcerWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject() ||
        !info[0].As<Napi::Object>().InstanceOf(EventSinkWrap::constructor.Value()))
      throw Napi::TypeError::New(env, "FileEnforcer(sink: EventSink): sink must be a native EventSink");
    std::shared_ptr<EventSink> sink = EventSinkWrap::Unwrap(info[0].As<Napi::Object>())->sink();
    try {
      enforcer_ = std::make_shared<FileEnforcer>(sink);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("FileEnforcer: ") + e.what());
    }
    // A Worker or process exit without close(): stop the threads before the
    // sink's thread-safe function goes away.
    hook_arg_ = new std::weak_ptr<FileEnforcer>(enforcer_);
    napi_add_env_cleanup_hook(env, CloseAtEnvExit, hook_arg_);
    env_ = env;
  }

  ~FileEnforcerWrap() override {
    if (hook_arg_) {
      napi_remove_env_cleanup_hook(env_, CloseAtEnvExit, hook_arg_);
      delete hook_arg_;
    }
    if (enforcer_) enforcer_->Close();
  }

 private:
  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<FileRuleSpec> rules = ParseRules(env, info.Length() > 0 ? info[0] : env.Undefined());
    Napi::Value extra = info.Length() > 1 ? info[1] : env.Undefined();
    std::vector<WorkloadPolicySpec> policies;
    if (!extra.IsUndefined()) {
      if (!extra.IsObject()) throw Napi::TypeError::New(env, "setRules: options must be an object {policies}");
      policies = ParsePolicies(env, extra.As<Napi::Object>().Get("policies"));
    }
    if (enforcer_->closed()) throw Napi::Error::New(env, "FileEnforcer is closed");
    SetRulesResult result;
    try {
      result = enforcer_->SetRules(rules, policies);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("setRules: ") + e.what());
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("marks", Napi::Number::New(env, static_cast<double>(result.marks)));
    Napi::Array errors = Napi::Array::New(env, result.errors.size());
    for (size_t i = 0; i < result.errors.size(); i++) errors.Set(static_cast<uint32_t>(i), result.errors[i]);
    out.Set("errors", errors);
    return out;
  }

  Napi::Value SetWorkloads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<WorkloadSpec> workloads = ParseWorkloads(env, info.Length() > 0 ? info[0] : env.Undefined());
    if (enforcer_->closed()) throw Napi::Error::New(env, "FileEnforcer is closed");
    enforcer_->SetWorkloads(workloads);
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    FileEnforcerStats s = enforcer_->Stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("events", Napi::Number::New(env, static_cast<double>(s.events)));
    o.Set("denied", Napi::Number::New(env, static_cast<double>(s.denied)));
    o.Set("marks", Napi::Number::New(env, static_cast<double>(s.marks)));
    o.Set("internalErrors", Napi::Number::New(env, static_cast<double>(s.internal_errors)));
    o.Set("watchErrors", Napi::Number::New(env, static_cast<double>(s.watch_errors)));
    o.Set("lastWatchError", Napi::String::New(env, s.last_watch_error));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    enforcer_->Close();
    return info.Env().Undefined();
  }

  std::shared_ptr<FileEnforcer> enforcer_;
  std::weak_ptr<FileEnforcer>* hook_arg_ = nullptr;
  napi_env env_ = nullptr;
};

namespace {

// resolveInContainer(pid, mntNs, path): what `path` is inside the root of
// process `pid` (in mount namespace mntNs), resolved as that process would
// (symlinks stay inside the root): {path: canonical path inside the root,
// dev: st_dev, ino, mode, shebang: starts with "#!"}. Throws an Error saying
// why not (ENOENT, the process is gone, ...).
Napi::Value ResolveInContainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "resolveInContainer(pid: number, mntNs: number, path: string)";
  if (info.Length() < 3) throw Napi::TypeError::New(env, usage);
  int32_t pid = static_cast<int32_t>(Uint32In(env, info[0], "resolveInContainer: pid", 1, 0x7fffffff));
  uint32_t mnt_ns = Uint32In(env, info[1], "resolveInContainer: mntNs", 1, 0xffffffff);
  std::string path = CheckedPath(env, info[2], "resolveInContainer: path");
  PathRootPtr root;
  try {
    root = OpenContainerRoot(pid, mnt_ns);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("resolveInContainer: ") + e.what());
  }
  int fd = OpenInRoot(root.get(), path, O_PATH);
  if (fd < 0) throw Napi::Error::New(env, "resolveInContainer: " + path + ": " + ErrnoText(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw Napi::Error::New(env, "resolveInContainer: " + path + ": " + ErrnoText(err));
  }
  std::string canonical = FdPath(fd);
  close(fd);
  bool shebang = false;
  if (S_ISREG(st.st_mode)) {
    // O_NONBLOCK: never wait on a FIFO swapped in meanwhile.
    int rfd = OpenInRoot(root.get(), path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    char head[2];
    if (rfd >= 0) {
      shebang = pread(rfd, head, 2, 0) == 2 && head[0] == '#' && head[1] == '!';
      close(rfd);
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("path", canonical.empty() ? path : canonical);
  out.Set("dev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_dev)));
  out.Set("ino", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_ino)));
  out.Set("mode", Napi::Number::New(env, st.st_mode));
  out.Set("shebang", Napi::Boolean::New(env, shebang));
  return out;
}

}  // namespace

void InitFileEnforcer(Napi::Env env, Napi::Object exports) {
  FileEnforcerWrap::Init(env, exports);
  exports.Set("resolveInContainer", Napi::Function::New(env, ResolveInContainer, "resolveInContainer"));
}

}  // namespace edgeward
