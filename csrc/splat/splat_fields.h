// The fields of SplatArgs that the CPU and CUDA splat kernels share, for their bindings (csrc/bind.h); each
// binding adds its device's own.
#pragma once

#include <vector>

#include "../bind.h"
#include "splat.h"

namespace fastlmk {

template <class Args>
std::vector<bind::Field<Args>> splat_fields() {
  return {FASTLMK_FIELD(Args, xy),    FASTLMK_FIELD(Args, value),      FASTLMK_FIELD(Args, dtype),
          FASTLMK_FIELD(Args, b),     FASTLMK_FIELD(Args, q),          FASTLMK_FIELD(Args, h),
          FASTLMK_FIELD(Args, w),     FASTLMK_FIELD(Args, sigma),      FASTLMK_FIELD(Args, radius),
          FASTLMK_FIELD(Args, image), FASTLMK_FIELD(Args, weight_sum), FASTLMK_FIELD(Args, visible)};
}

template <class Args>
std::vector<bind::Field<Args>> splat_forward_fields() {
  return splat_fields<Args>() + std::vector{FASTLMK_FIELD(Args, depth), FASTLMK_FIELD(Args, margin)};
}

template <class Args>
std::vector<bind::Field<Args>> splat_backward_fields() {
  return splat_fields<Args>() + std::vector{FASTLMK_FIELD(Args, grad_image), FASTLMK_FIELD(Args, grad_xy),
                                            FASTLMK_FIELD(Args, grad_value)};
}

}  // namespace fastlmk
