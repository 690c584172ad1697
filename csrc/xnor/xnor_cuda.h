// XNOR bit-packed binary convolution (fastlmk/reference/xnor.py is the spec). Raw addresses of buffers on one
// device; kernels run on the caller's stream (a cudaStream_t passed as an integer) and never synchronise.
#pragma once

#include <cstdint>

namespace fastlmk {
namespace cuda {

// x viewed as (N, C, P) with element strides (stride_n, stride_c, stride_p), dtype 0 = float32, 1 = float64,
// 2 = float16, 3 = bfloat16 -> out (N, P, ceil(C/64)) uint64, contiguous: channel c is bit c % 64 of word
// c / 64, set where x < 0 (-0 and NaN give 0); bits past C are 0.
void pack_bits(const void* x, int dtype, int64_t n, int64_t c, int64_t p, int64_t stride_n, int64_t stride_c,
               int64_t stride_p, void* out, uintptr_t stream);

// x packed (N, H, W, ceil(C/64)), weight packed (O, KH, KW, ceil(C/groups/64)), alpha and the optional bias,
// scale, shift (null when absent) (O,) in dtype 0 = float32 or 1 = float64 ->
// y = ((alpha dot + bias) scale + shift) per output channel, dot the exact integer sum of the +-1 products
// (pad_ones: taps outside the map read +1, else they are skipped); out is y (N, O, Ho, Wo) in the dtype, or
// with packed_out its signs packed as (N, Ho, Wo, ceil(O/64)) uint64. All buffers contiguous.
void binary_conv2d(const void* x, const void* weight, const void* alpha, const void* bias, const void* scale,
                   const void* shift, int dtype, int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh,
                   int64_t kw, int64_t groups, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                   int64_t dil_h, int64_t dil_w, int64_t ho, int64_t wo, bool pad_ones, bool packed_out, void* out,
                   uintptr_t stream);

}  // namespace cuda
}  // namespace fastlmk
