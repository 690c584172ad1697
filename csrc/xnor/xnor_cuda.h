// XNOR bit-packed binary convolution (fastlmk/reference/xnor.py is the spec). Raw addresses of buffers on one
// device; kernels run on the caller's stream (a cudaStream_t passed as an integer) and never synchronise.
#pragma once

#include <cstdint>

#include "xnor.h"

namespace fastlmk {
namespace cuda {

// The CPU kernels' fields (nthreads unused) plus the stream (a cudaStream_t).
struct PackCudaArgs : PackArgs {
  uintptr_t stream;
};
struct XnorConvCudaArgs : XnorConvArgs {
  uintptr_t stream;
};

void pack_bits(const PackCudaArgs& a);
void binary_conv2d(const XnorConvCudaArgs& a);

}  // namespace cuda
}  // namespace fastlmk
