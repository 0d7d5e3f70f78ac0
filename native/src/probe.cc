// PLACEHOLDER: replaced by the real implementation of probe (kept only so the addon links meanwhile).
#include "modules.h"
namespace edgeward {
void InitProbe(Napi::Env, Napi::Object) {}
}  // namespace edgeward
