// sdNotify(socket, message): one datagram to the service manager's
// notification socket, the sd_notify(3) protocol ("READY=1", "WATCHDOG=1",
// ...). Node has no AF_UNIX datagram sockets, and libsystemd is not linked:
// the protocol is one sendto(), and boards without systemd must still load
// the addon. systemd learns the sender from SCM_CREDENTIALS (it sets
// SO_PASSCRED), so this must run in the service's main process, as it does.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "modules.h"

namespace edgeward {

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "E?") + ": " + strerror(err);
}

Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "sdNotify(socketPath: string, message: string)";
  if (info.Length() != 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string socket_path = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();

  // "/path" or "@abstract" (sd_notify(3)); "vsock:" addresses are for VMs.
  if (socket_path.size() < 2 || (socket_path[0] != '/' && socket_path[0] != '@')) {
    Napi::Error::New(env, "sdNotify: NOTIFY_SOCKET \"" + socket_path +
                              "\" is neither an absolute path nor an abstract socket (@name)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() > sizeof(addr.sun_path) - 1) {
    Napi::Error::New(env, "sdNotify: NOTIFY_SOCKET path is longer than " +
                              std::to_string(sizeof(addr.sun_path) - 1) + " bytes")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  // Abstract names start with a NUL and are not NUL-terminated: the length says where they end.
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + socket_path.size() +
                                         (socket_path[0] == '/' ? 1 : 0));

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Napi::Error::New(env, "sdNotify: socket: " + ErrnoText(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Never block the event loop on a full socket: a lost watchdog ping is
  // followed by the next one, a stalled agent is not.
  ssize_t sent = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                        reinterpret_cast<struct sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  if (sent < 0) {
    Napi::Error::New(env, "sdNotify: sending to " + socket_path + ": " + ErrnoText(err))
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (static_cast<size_t>(sent) != message.size()) {
    Napi::Error::New(env, "sdNotify: short send to " + socket_path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace

void InitSdNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
}

}  // namespace edgeward
