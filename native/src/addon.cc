// Module registration. Each concern lives in its own file and exports an
// Init function (declared in modules.h); this file only wires them up.
#include <napi.h>

#include "edgeward_abi.h"
#include "event_sink.h"
#include "modules.h"

namespace edgeward {

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, EW_ABI_VERSION));
  EventSinkWrap::Init(env, exports);
  InitAbiLayout(env, exports);
  InitProbe(env, exports);
  InitEventRing(env, exports);
  InitMonitor(env, exports);
  InitNetEnforcer(env, exports);
  InitFileEnforcer(env, exports);
  InitLsmEnforcer(env, exports);
  InitSdNotify(env, exports);
  InitPeerCred(env, exports);
  InitLsmSelfProtect(env, exports);
  InitLsmCapable(env, exports);
  return exports;
}

}  // namespace edgeward

// NODE_API_MODULE pastes its second argument into an identifier: no "::".
static Napi::Object InitEdgeward(Napi::Env env, Napi::Object exports) { return edgeward::InitAll(env, exports); }
NODE_API_MODULE(edgeward, InitEdgeward)
