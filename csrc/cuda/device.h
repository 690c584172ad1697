#pragma once

namespace fastlmk {
namespace cuda {

int runtime_version();  // e.g. 13000 for CUDA 13.0
int driver_version();   // 0 without a driver
int device_count();     // 0 without a driver or device

}  // namespace cuda
}  // namespace fastlmk
