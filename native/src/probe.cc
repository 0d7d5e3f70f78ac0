// probe(): what this kernel lets edgeward use (the NativeProbe shape of
// agent/src/native.ts). Every feature is tried for real (a program loaded and
// attached, a mark placed), because listed is not the same as allowed: e.g.
// BPF-LSM can be listed in /sys/kernel/security/lsm and still be refused.
#include <malloc.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "modules.h"
#include "probe.skel.h"

namespace edgeward {

namespace {

struct Feature {
  bool ok;
  std::string error;
};

Feature Ok() { return {true, ""}; }

// "EPERM: Operation not permitted (what)".
Feature Fail(int err, const std::string& what) {
  const char* name = strerrorname_np(err);
  return {false, std::string(name ? name : "E?") + ": " + strerror(err) + " (" + what + ")"};
}

// libbpf prints warnings to stderr by default; probing expects failures, so
// they are kept quiet unless EDGEWARD_LIBBPF_DEBUG is set.
int QuietLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (getenv("EDGEWARD_LIBBPF_DEBUG") != nullptr) vfprintf(stderr, fmt, args);
  return 0;
}

std::string KernelRelease() {
  struct utsname u = {};
  return uname(&u) == 0 ? u.release : "";
}

Feature ProbeBtf() {
  const char* path = "/sys/kernel/btf/vmlinux";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(errno, std::string("opening ") + path);
  char magic[2];
  ssize_t n = read(fd, magic, sizeof(magic));
  int err = errno;
  close(fd);
  if (n != 2) return n < 0 ? Fail(err, std::string("reading ") + path) : Feature{false, std::string(path) + " is empty"};
  return Ok();
}

Feature ProbeRingbuf() {
  int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ew_probe_rb", 0, 0, static_cast<__u32>(sysconf(_SC_PAGESIZE)),
                          nullptr);
  if (fd < 0) return Fail(errno, "creating a ring buffer map");
  close(fd);
  return Ok();
}

// Loads (and, when `attach`, attaches) one program of the probe object alone.
Feature ProbeProgram(bpf_program* (*pick)(probe*), const char* what, bool attach) {
  probe* skel = probe__open();
  if (skel == nullptr) return Fail(errno, "opening the probe object");
  bpf_program* wanted = pick(skel);
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) bpf_program__set_autoload(prog, prog == wanted);
  Feature result = Ok();
  int err = probe__load(skel);
  if (err != 0) {
    result = Fail(-err, std::string("loading ") + what);
  } else if (attach) {
    bpf_link* link = bpf_program__attach(wanted);
    if (link == nullptr) {
      result = Fail(errno, std::string("attaching ") + what);
    } else {
      bpf_link__destroy(link);
    }
  }
  probe__destroy(skel);
  return result;
}

bool LsmListed(std::string* list) {
  std::ifstream in("/sys/kernel/security/lsm");
  std::getline(in, *list);
  std::stringstream ss(*list);
  std::string name;
  while (std::getline(ss, name, ',')) {
    if (name == "bpf") return true;
  }
  return false;
}

Feature ProbeBpfLsm() {
  Feature f = ProbeProgram([](probe* s) { return s->progs.probe_lsm; }, "lsm/file_open", true);
  if (!f.ok) return f;
  // Attached but inactive when the bpf LSM is not enabled at boot.
  std::string list;
  if (!LsmListed(&list)) {
    return {false, "bpf is not in /sys/kernel/security/lsm (\"" + list + "\"): boot with lsm=...,bpf"};
  }
  return f;
}

Feature ProbeFanotifyPerm() {
  int fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY | O_CLOEXEC);
  if (fan < 0) return Fail(errno, "fanotify_init(FAN_CLASS_CONTENT)");
  const char* dir = getenv("TMPDIR") != nullptr ? getenv("TMPDIR") : "/tmp";
  std::string path = std::string(dir) + "/edgeward-probe-XXXXXX";
  int tmp = mkstemp(&path[0]);
  if (tmp < 0) {
    int err = errno;
    close(fan);
    return Fail(err, "creating a temporary file in " + std::string(dir));
  }
  close(tmp);
  Feature result = Ok();
  // Marking the inode is enough to know permission events are allowed;
  // closing the group right after answers anything pending with allow.
  if (fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, path.c_str()) != 0) {
    result = Fail(errno, "fanotify_mark(FAN_OPEN_PERM)");
  }
  close(fan);
  unlink(path.c_str());
  return result;
}

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && isdigit(s[i + 1]) && isdigit(s[i + 2]) && isdigit(s[i + 3])) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string Cgroup2Path() {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, target, fstype;
    if (fields >> source >> target >> fstype && fstype == "cgroup2") return Unescape(target);
  }
  return "";
}

Napi::Object ToJs(Napi::Env env, const Feature& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", Napi::Boolean::New(env, f.ok));
  if (!f.ok) o.Set("error", Napi::String::New(env, f.error));
  return o;
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  libbpf_print_fn_t previous = libbpf_set_print(QuietLibbpf);
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernelRelease", KernelRelease());
  o.Set("btf", ToJs(env, ProbeBtf()));
  o.Set("bpfLsm", ToJs(env, ProbeBpfLsm()));
  o.Set("ringbuf", ToJs(env, ProbeRingbuf()));
  o.Set("tpBtf", ToJs(env, ProbeProgram([](probe* s) { return s->progs.probe_tp_btf; },
                                        "tp_btf/sched_process_exec", true)));
  o.Set("cgroupSock",
        ToJs(env, ProbeProgram([](probe* s) { return s->progs.probe_sock_create; }, "cgroup/sock_create", false)));
  o.Set("fanotifyPerm", ToJs(env, ProbeFanotifyPerm()));
  o.Set("cgroup2Path", Cgroup2Path());
  libbpf_set_print(previous);
  // Loading the probe objects leaves ~11 MiB of freed heap in glibc's arenas.
  malloc_trim(0);
  return o;
}

}  // namespace

void InitProbe(Napi::Env env, Napi::Object exports) { exports.Set("probe", Napi::Function::New(env, Probe, "probe")); }

}  // namespace edgeward
