// PLACEHOLDER: replaced by the real implementation of net_enforcer (kept only so the addon links meanwhile).
#include "modules.h"
namespace edgeward {
void InitNetEnforcer(Napi::Env, Napi::Object) {}
}  // namespace edgeward
