// Run-time instruction-set dispatch for the encoding family.
#include "encode.h"

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

#if defined(__x86_64__) || defined(_M_X64)
#define FASTLMK_BY_ISA(fn, a) (g_isa == Isa::kAvx2 ? avx2::fn(a) : scalar::fn(a))
#else
#define FASTLMK_BY_ISA(fn, a) scalar::fn(a)
#endif

void render(const RenderArgs& a) { FASTLMK_BY_ISA(render, a); }
void loss_forward(const LossArgs& a) { FASTLMK_BY_ISA(loss_forward, a); }
void loss_backward(const LossArgs& a) { FASTLMK_BY_ISA(loss_backward, a); }

}  // namespace fastlmk
