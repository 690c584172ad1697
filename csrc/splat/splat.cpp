// Entry points of the splat family: run the kernels of the active instruction set (csrc/isa.h).
#include "splat.h"

#include "../isa.h"

namespace fastlmk {

void splat_forward(const SplatArgs& a) { FASTLMK_BY_ISA(splat_forward, a); }
void splat_backward(const SplatArgs& a) { FASTLMK_BY_ISA(splat_backward, a); }

}  // namespace fastlmk
