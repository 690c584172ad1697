// The instruction set the CPU kernels run with: the best one the CPU supports unless set_isa() forces one.
#include "isa.h"

#include <stdexcept>

namespace fastlmk {

bool isa_supported(Isa isa) {
  if (isa == Isa::kScalar) return true;
#if defined(__x86_64__) || defined(_M_X64)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::kAvx2) return avx2;
  // the AVX-512 builds use F, BW, VL and VPOPCNTDQ (Ice Lake and later, Zen 4)
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq");
#else
  return false;
#endif
}

namespace {
Isa best() {
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  return isa_supported(Isa::kAvx2) ? Isa::kAvx2 : Isa::kScalar;
}
Isa g_isa = best();
}

Isa active_isa() { return g_isa; }

void set_isa(Isa isa) {
  if (!isa_supported(isa)) throw std::invalid_argument("fastlmk: this CPU does not support the requested ISA");
  g_isa = isa;
}

}  // namespace fastlmk
