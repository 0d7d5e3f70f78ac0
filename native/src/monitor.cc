// PLACEHOLDER: replaced by the real implementation of monitor (kept only so the addon links meanwhile).
#include "modules.h"
namespace edgeward {
void InitMonitor(Napi::Env, Napi::Object) {}
}  // namespace edgeward
