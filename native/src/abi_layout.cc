// PLACEHOLDER: replaced by the real implementation of abi_layout (kept only so the addon links meanwhile).
#include "modules.h"
namespace edgeward {
void InitAbiLayout(Napi::Env, Napi::Object) {}
}  // namespace edgeward
