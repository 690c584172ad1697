// The instruction set the CPU kernels run with: the best one the CPU supports unless set_isa() forces one.
#include "isa.h"

#include <stdexcept>

namespace fastlmk {

bool isa_supported(Isa isa) {
  if (isa == Isa::kScalar) return true;
#if defined(__x86_64__) || defined(_M_X64)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

namespace {
Isa g_isa = isa_supported(Isa::kAvx2) ? Isa::kAvx2 : Isa::kScalar;
}

Isa active_isa() { return g_isa; }

void set_isa(Isa isa) {
  if (!isa_supported(isa)) throw std::invalid_argument("fastlmk: this CPU does not support the requested ISA");
  g_isa = isa;
}

}  // namespace fastlmk
