// Entry points of the encoding family: run the kernels of the active instruction set (csrc/isa.h).
#include "encode.h"

#include "../isa.h"

namespace fastlmk {

void render(const RenderArgs& a) { FASTLMK_BY_ISA(render, a); }
void loss_forward(const LossArgs& a) { FASTLMK_BY_ISA(loss_forward, a); }
void loss_backward(const LossArgs& a) { FASTLMK_BY_ISA(loss_backward, a); }
void render_simcc(const SimccArgs& a) { FASTLMK_BY_ISA(render_simcc, a); }

}  // namespace fastlmk
