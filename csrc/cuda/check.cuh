// Error checking for CUDA calls and kernel launches; raises a Python RuntimeError through pybind11.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define FASTLMK_CUDA_CHECK(expr)                                                                      \
  do {                                                                                                \
    cudaError_t err_ = (expr);                                                                        \
    if (err_ != cudaSuccess)                                                                          \
      throw std::runtime_error(std::string("fastlmk CUDA error: ") + cudaGetErrorString(err_) + " (" + \
                               #expr + ")");                                                          \
  } while (0)

// After a launch on a caller-provided stream: report configuration errors without synchronising.
#define FASTLMK_CUDA_CHECK_LAUNCH() FASTLMK_CUDA_CHECK(cudaGetLastError())
