// XNOR binary convolution (seed 002 Eq. 5.1-5.2, docs/ops.md 4): CPU entry points.
//
// Packed tensors hold signs as bits of 64-bit words with the channels innermost: bit c % 64 of word c / 64
// is set where the value is negative (sign(0) = +1). Semantics: fastlmk/reference/xnor.py.
#pragma once

#include <cstdint>

#include "../common.h"

namespace fastlmk {

struct PackArgs {
  const void* x;  // (N, C, P) with element strides (stride_n, stride_c, stride_p): stride_p == 1 or stride_c == 1
  int dtype;      // storage dtype code of x
  int64_t n, c, p, stride_n, stride_c, stride_p;
  uint64_t* out;  // (N, P, ceil(C / 64)), contiguous
  int nthreads;
};

struct XnorConvArgs {
  const uint64_t* x;       // (N, H, W, ceil(C / 64))
  const uint64_t* weight;  // (O, KH, KW, ceil(C / groups / 64))
  const void* alpha;       // (O,) in `dtype`; bias, scale, shift likewise, or null
  const void* bias;
  const void* scale;
  const void* shift;
  int dtype;  // float32 or float64: the epilogue's and the float output's
  int64_t n, c, h, w, o, kh, kw, groups, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, ho, wo;
  bool pad_ones;    // pad with +1 (else taps outside the map count 0)
  bool packed_out;  // out: (N, Ho, Wo, ceil(O / 64)) bits of y < 0, else (N, O, Ho, Wo) floats
  void* out;
  int nthreads;
};

#define FASTLMK_XNOR_DECLARE(ns)                \
  namespace ns {                                \
  int64_t pack_bits(const PackArgs& a);         \
  void binary_conv2d(const XnorConvArgs& a);    \
  }

FASTLMK_XNOR_DECLARE(scalar)
FASTLMK_XNOR_DECLARE(avx2)
FASTLMK_XNOR_DECLARE(avx512)

// Returns the number of NaN values met (their bit is left 0).
int64_t pack_bits(const PackArgs& a);
void binary_conv2d(const XnorConvArgs& a);

}  // namespace fastlmk
