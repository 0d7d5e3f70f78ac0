// peerCredentials(fd): who is at the other end of a connected unix socket
// (SO_PEERCRED: the credentials the peer had when it connected). Node has no
// API for it; the control socket checks it on every connection so that a
// socket file with the wrong mode still answers root only.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "modules.h"

namespace edgeward {

namespace {

Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "peerCredentials(fd): fd must be a number");
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) throw Napi::TypeError::New(env, "peerCredentials(fd): fd must not be negative");
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
    const int err = errno;
    const char* name = strerrorname_np(err);
    throw Napi::Error::New(env, std::string("SO_PEERCRED on fd ") + std::to_string(fd) + ": " + (name ? name : "E?") +
                                    ": " + strerror(err));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace

void InitPeerCred(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
}

}  // namespace edgeward
