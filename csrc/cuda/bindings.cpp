// fastlmk._cuda: pybind11 bindings of the CUDA kernels. Importing it touches no device, so it imports
// cleanly on a machine without a GPU. Kernels take raw addresses and the caller's cudaStream_t.
#include <pybind11/pybind11.h>

#include "device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastlmk CUDA kernels";
  m.def("runtime_version", &fastlmk::cuda::runtime_version, "CUDA runtime version built against (13000 = 13.0).");
  m.def("driver_version", &fastlmk::cuda::driver_version, "Installed driver's CUDA version, 0 without a driver.");
  m.def("device_count", &fastlmk::cuda::device_count, "Visible CUDA devices, 0 without a driver or device.");
}
