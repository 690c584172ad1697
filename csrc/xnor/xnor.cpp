// Entry points of the XNOR family: run the kernels of the active instruction set (csrc/isa.h).
#include "xnor.h"

#include "../isa.h"

namespace fastlmk {

int64_t pack_bits(const PackArgs& a) { return FASTLMK_BY_ISA512(pack_bits, a); }
void binary_conv2d(const XnorConvArgs& a) { FASTLMK_BY_ISA512(binary_conv2d, a); }

}  // namespace fastlmk
