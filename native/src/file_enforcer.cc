// PLACEHOLDER: replaced by the real implementation of file_enforcer (kept only so the addon links meanwhile).
#include "modules.h"
namespace edgeward {
void InitFileEnforcer(Napi::Env, Napi::Object) {}
}  // namespace edgeward
