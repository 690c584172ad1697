// The fields of PackArgs and XnorConvArgs that the CPU and CUDA kernels share, for their bindings
// (csrc/bind.h); each binding adds its device's own.
#pragma once

#include <vector>

#include "../bind.h"
#include "xnor.h"

namespace fastlmk {

template <class Args>
std::vector<bind::Field<Args>> pack_fields() {
  return {FASTLMK_FIELD(Args, x),        FASTLMK_FIELD(Args, dtype),    FASTLMK_FIELD(Args, n),
          FASTLMK_FIELD(Args, c),        FASTLMK_FIELD(Args, p),        FASTLMK_FIELD(Args, stride_n),
          FASTLMK_FIELD(Args, stride_c), FASTLMK_FIELD(Args, stride_p), FASTLMK_FIELD(Args, out)};
}

template <class Args>
std::vector<bind::Field<Args>> conv_fields() {
  return {FASTLMK_FIELD(Args, x),        FASTLMK_FIELD(Args, weight),     FASTLMK_FIELD(Args, alpha),
          FASTLMK_FIELD(Args, bias),     FASTLMK_FIELD(Args, scale),      FASTLMK_FIELD(Args, shift),
          FASTLMK_FIELD(Args, dtype),    FASTLMK_FIELD(Args, n),          FASTLMK_FIELD(Args, c),
          FASTLMK_FIELD(Args, h),        FASTLMK_FIELD(Args, w),          FASTLMK_FIELD(Args, o),
          FASTLMK_FIELD(Args, kh),       FASTLMK_FIELD(Args, kw),         FASTLMK_FIELD(Args, groups),
          FASTLMK_FIELD(Args, stride_h), FASTLMK_FIELD(Args, stride_w),   FASTLMK_FIELD(Args, pad_h),
          FASTLMK_FIELD(Args, pad_w),    FASTLMK_FIELD(Args, dil_h),      FASTLMK_FIELD(Args, dil_w),
          FASTLMK_FIELD(Args, ho),       FASTLMK_FIELD(Args, wo),         FASTLMK_FIELD(Args, pad_ones),
          FASTLMK_FIELD(Args, packed_out), FASTLMK_FIELD(Args, out)};
}

}  // namespace fastlmk
