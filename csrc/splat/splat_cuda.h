// Visualization splat (fastlmk/reference/splat.py is the spec). Raw addresses of contiguous buffers, dtype 0 =
// float32, 1 = float64 for xy, depth, value, image, weight_sum and the gradients; kernels run on the caller's
// stream (a cudaStream_t passed as an integer) and never synchronise.
#pragma once

#include <cstdint>

#include "splat.h"

namespace fastlmk {
namespace cuda {

// The CPU kernels' fields (candidates and nthreads unused) plus the z-buffer scratch and the stream.
struct SplatCudaArgs : SplatArgs {
  void* zbuf;        // forward: (B (H + 2 m) (W + 2 m)) int64 cells
  void* owner;       // forward: idem, int32
  uintptr_t stream;  // cudaStream_t
};

void splat_forward(const SplatCudaArgs& a);
void splat_backward(const SplatCudaArgs& a);

}  // namespace cuda
}  // namespace fastlmk
