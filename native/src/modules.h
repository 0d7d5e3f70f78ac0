// Init functions of the addon's parts; each adds its exports to `exports`.
#pragma once
#include <napi.h>

namespace edgeward {
void InitAbiLayout(Napi::Env env, Napi::Object exports);   // abi_layout.cc
void InitProbe(Napi::Env env, Napi::Object exports);       // probe.cc
void InitEventRing(Napi::Env env, Napi::Object exports);   // event_ring.cc
void InitMonitor(Napi::Env env, Napi::Object exports);     // monitor.cc
void InitNetEnforcer(Napi::Env env, Napi::Object exports); // net_enforcer.cc
void InitFileEnforcer(Napi::Env env, Napi::Object exports);// file_enforcer.cc
void InitLsmEnforcer(Napi::Env env, Napi::Object exports); // lsm_enforcer.cc
void InitSdNotify(Napi::Env env, Napi::Object exports);    // sd_notify.cc
void InitPeerCred(Napi::Env env, Napi::Object exports);    // peer_cred.cc
void InitLsmSelfProtect(Napi::Env env, Napi::Object exports); // lsm_self_protect.cc
void InitLsmCapable(Napi::Env env, Napi::Object exports);     // lsm_capable.cc
}  // namespace edgeward
