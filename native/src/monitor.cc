// Monitor: the kernel event monitor (bpf/monitor.bpf.c).
//
// Loads the monitor object with the shared event ring's maps and attaches the
// program groups asked for (process, file, network). Programs of groups that
// are off are not even loaded, so they cost nothing on the node.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "event_ring.h"
#include "modules.h"
#include "monitor.skel.h"

namespace edgeward {

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "E?") + ": " + strerror(err);
}

// libbpf's messages while loading, to explain a failure in the JS error.
// Loading happens on the JS thread only, so one buffer is enough.
std::string g_libbpf_log;

int CaptureLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  // one message can be the whole verifier log: size it first
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

// The program libbpf names in "libbpf: prog 'X': failed to load", or "".
std::string FailedProgram(const std::string& log) {
  const std::string marker = "prog '";
  size_t pos = log.rfind(marker);
  if (pos == std::string::npos) return "";
  size_t end = log.find('\'', pos + marker.size());
  return end == std::string::npos ? "" : log.substr(pos + marker.size(), end - pos - marker.size());
}

// The last lines of the libbpf log (the verifier's verdict is at the end).
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
  const char* name;
  bpf_program* prog;
  // absent on some kernels/architectures (arm64 has no open(2)): skipped
  bool optional;
};

struct Groups {
  bool process, file, network;
};

// Every program of the skeleton, grouped. Within a group exit handlers come
// before enter handlers: an exit attached first never finds a stale stash.
std::vector<Program> ProcessPrograms(::monitor* s) {
  return {{"ew_exec", s->progs.ew_exec, false}, {"ew_fork", s->progs.ew_fork, false},
          {"ew_exit", s->progs.ew_exit, false}};
}

std::vector<Program> FilePrograms(::monitor* s) {
  return {{"exit_open", s->progs.exit_open, true},         {"enter_open", s->progs.enter_open, true},
          {"exit_openat", s->progs.exit_openat, false},     {"enter_openat", s->progs.enter_openat, false},
          {"exit_openat2", s->progs.exit_openat2, true},    {"enter_openat2", s->progs.enter_openat2, true},
          {"exit_creat", s->progs.exit_creat, true},        {"enter_creat", s->progs.enter_creat, true},
          {"exit_open_by_handle_at", s->progs.exit_open_by_handle_at, true},
          {"enter_open_by_handle_at", s->progs.enter_open_by_handle_at, true}};
}

std::vector<Program> NetworkPrograms(::monitor* s) {
  return {{"exit_socket", s->progs.exit_socket, false},   {"enter_socket", s->progs.enter_socket, false},
          {"exit_connect", s->progs.exit_connect, false}, {"enter_connect", s->progs.enter_connect, false},
          {"exit_bind", s->progs.exit_bind, false},       {"enter_bind", s->progs.enter_bind, false},
          {"exit_listen", s->progs.exit_listen, false},   {"enter_listen", s->progs.enter_listen, false},
          {"exit_accept", s->progs.exit_accept, false},   {"enter_accept", s->progs.enter_accept, false},
          {"exit_accept4", s->progs.exit_accept4, false}, {"enter_accept4", s->progs.enter_accept4, false}};
}

// Whether the syscall tracepoint a "tracepoint/syscalls/X" program needs exists.
bool TracepointExists(bpf_program* prog) {
  const char* sec = bpf_program__section_name(prog);
  const char* prefix = "tracepoint/";
  if (strncmp(sec, prefix, strlen(prefix)) != 0) return true;
  std::string event = sec + strlen(prefix);
  for (const char* root : {"/sys/kernel/tracing/events/", "/sys/kernel/debug/tracing/events/"}) {
    if (access((std::string(root) + event).c_str(), F_OK) == 0) return true;
  }
  // No tracefs found at all: let attach report the real error.
  return access("/sys/kernel/tracing/events", F_OK) != 0 && access("/sys/kernel/debug/tracing/events", F_OK) != 0;
}

// Wake the consumer once a quarter of the ring is used (at most 64 KiB):
// small enough that a burst never fills the ring before the consumer wakes.
uint64_t WakeupBytes(int ring_fd) {
  struct bpf_map_info info = {};
  __u32 len = sizeof(info);
  uint64_t limit = 64 * 1024;
  if (bpf_obj_get_info_by_fd(ring_fd, &info, &len) == 0 && info.max_entries > 0) {
    limit = std::min<uint64_t>(limit, info.max_entries / 4);
  }
  return limit;
}

class Monitor {
 public:
  // Throws std::runtime_error naming the program and libbpf's errno text.
  Monitor(std::shared_ptr<EventRing> ring, Groups groups) : ring_(std::move(ring)) {
    try {
      Open(groups);
    } catch (...) {
      Close();
      throw;
    }
  }
  ~Monitor() { Close(); }

  std::vector<std::string> Attached() const {
    std::vector<std::string> names;
    for (const auto& [name, link] : links_) names.push_back(name);
    return names;
  }

  // Detaches every program and frees the object. Idempotent.
  void Close() {
    for (auto& [name, link] : links_) bpf_link__destroy(link);
    links_.clear();
    if (skel_ != nullptr) monitor__destroy(skel_);
    skel_ = nullptr;
    ring_.reset();
  }

 private:
  void Open(Groups groups) {
    skel_ = monitor__open();
    if (skel_ == nullptr) throw std::runtime_error("Monitor: opening the BPF object failed: " + ErrnoText(errno));
    skel_->rodata->ew_wakeup_bytes = WakeupBytes(ring_->ring_fd());
    int err = ring_->ReuseMaps(skel_->obj);
    if (err != 0) throw std::runtime_error("Monitor: reusing the event ring's maps failed: " + ErrnoText(-err));

    std::vector<Program> wanted;
    auto consider = [&](const std::vector<Program>& group, bool on) {
      for (const Program& p : group) {
        bool use = on && (!p.optional || TracepointExists(p.prog));
        bpf_program__set_autoload(p.prog, use);
        if (use) wanted.push_back(p);
      }
    };
    consider(ProcessPrograms(skel_), groups.process);
    consider(FilePrograms(skel_), groups.file);
    consider(NetworkPrograms(skel_), groups.network);

    g_libbpf_log.clear();
    libbpf_print_fn_t previous = libbpf_set_print(CaptureLibbpf);
    err = monitor__load(skel_);
    libbpf_set_print(previous);
    if (err != 0) {
      std::string prog = FailedProgram(g_libbpf_log);
      throw std::runtime_error("Monitor: loading " + (prog.empty() ? std::string("the BPF object") : "program " + prog) +
                               " failed: " + ErrnoText(-err) + "\n" + LogTail(g_libbpf_log, 12));
    }

    for (const Program& p : wanted) {
      bpf_link* link = bpf_program__attach(p.prog);
      if (link == nullptr) {
        int e = errno;
        throw std::runtime_error(std::string("Monitor: attaching program ") + p.name + " (" +
                                 bpf_program__section_name(p.prog) + ") failed: " + ErrnoText(e));
      }
      links_.emplace_back(p.name, link);
    }
  }

  std::shared_ptr<EventRing> ring_;
  ::monitor* skel_ = nullptr;
  std::vector<std::pair<std::string, bpf_link*>> links_;
};

// JS wrapper: `new native.Monitor(ring, {process, file, network})`.
class MonitorWrap : public Napi::ObjectWrap<MonitorWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "Monitor",
                                    {InstanceMethod("attached", &MonitorWrap::Attached),
                                     InstanceMethod("close", &MonitorWrap::Close)});
    exports.Set("Monitor", fn);
  }

  explicit MonitorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MonitorWrap>(info) {
    Napi::Env env = info.Env();
    const char* usage = "Monitor(ring: EventRing, {process: boolean, file: boolean, network: boolean})";
    if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, usage);
    std::shared_ptr<EventRing> ring = EventRingWrap::Unwrap(info[0]);
    Napi::Object opts = info[1].As<Napi::Object>();
    auto flag = [&](const char* name) {
      Napi::Value v = opts.Get(name);
      if (!v.IsBoolean()) {
        throw Napi::TypeError::New(env, std::string("Monitor: options.") + name + " must be a boolean");
      }
      return v.As<Napi::Boolean>().Value();
    };
    Groups groups{flag("process"), flag("file"), flag("network")};
    try {
      monitor_ = std::make_unique<Monitor>(ring, groups);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

 private:
  Napi::Value Attached(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<std::string> names = monitor_ ? monitor_->Attached() : std::vector<std::string>{};
    Napi::Array arr = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); i++) arr.Set(static_cast<uint32_t>(i), names[i]);
    return arr;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    monitor_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<Monitor> monitor_;
};

}  // namespace

void InitMonitor(Napi::Env env, Napi::Object exports) { MonitorWrap::Init(env, exports); }

}  // namespace edgeward
