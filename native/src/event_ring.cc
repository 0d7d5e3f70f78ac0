// PLACEHOLDER: replaced by the real implementation of event_ring (kept only so the addon links meanwhile).
#include "modules.h"
namespace edgeward {
void InitEventRing(Napi::Env, Napi::Object) {}
}  // namespace edgeward
