// Visualization splat (fastlmk/reference/splat.py is the spec). Raw addresses of contiguous buffers, dtype 0 =
// float32, 1 = float64 for xy, depth, value, image, weight_sum and the gradients; kernels run on the caller's
// stream (a cudaStream_t passed as an integer) and never synchronise.
#pragma once

#include <cstdint>

namespace fastlmk {
namespace cuda {

// xy (B, Q, 2), depth (B, Q), value (B, Q) -> image (B, H, W), weight_sum (B, H, W), visible (B, Q) uint8.
// zbuf (uint64) and owner (int32) are scratch of B * (H + 2 margin) * (W + 2 margin) elements each, with
// margin = floor(radius + 0.5); Q must be below 2^31 - 1.
void splat_forward(const void* xy, const void* depth, const void* value, int dtype, int64_t b, int64_t q,
                   int64_t h, int64_t w, double sigma, double radius, int64_t margin, void* zbuf, void* owner,
                   void* image, void* weight_sum, void* visible, uintptr_t stream);

// grad_image, image and weight_sum (B, H, W), visible (B, Q) uint8 as saved by the forward -> grad_xy (B, Q, 2),
// grad_value (B, Q); hidden vertices get 0.
void splat_backward(const void* grad_image, const void* xy, const void* value, const void* image,
                    const void* weight_sum, const void* visible, int dtype, int64_t b, int64_t q, int64_t h,
                    int64_t w, double sigma, double radius, void* grad_xy, void* grad_value, uintptr_t stream);

}  // namespace cuda
}  // namespace fastlmk
