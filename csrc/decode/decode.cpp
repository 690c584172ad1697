// Entry points of the decoding family: run the kernels of the active instruction set (csrc/isa.h).
#include "decode.h"

#include "../isa.h"

namespace fastlmk {

void decode(const DecodeArgs& a) { FASTLMK_BY_ISA(decode, a); }
void soft_argmax_forward(const SoftArgmaxArgs& a) { FASTLMK_BY_ISA(soft_argmax_forward, a); }
void soft_argmax_backward(const SoftArgmaxArgs& a) { FASTLMK_BY_ISA(soft_argmax_backward, a); }
void decode_simcc(const SimccDecodeArgs& a) { FASTLMK_BY_ISA(decode_simcc, a); }

}  // namespace fastlmk
