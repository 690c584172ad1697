// Runtime queries of fastlmk._cuda. Host code compiled by nvcc; CUDA op families add their kernels beside it.
#include "check.cuh"
#include "device.h"

namespace fastlmk {
namespace cuda {

int runtime_version() {
  int v = 0;
  FASTLMK_CUDA_CHECK(cudaRuntimeGetVersion(&v));
  return v;
}

int driver_version() {
  int v = 0;  // 0 when no driver is installed
  if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return v;
}

int device_count() {
  int n = 0;  // no driver or no device is not an error here: zero devices
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace cuda
}  // namespace fastlmk
