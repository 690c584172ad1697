// fastlmk._cuda: pybind11 bindings of the CUDA kernels, each its argument struct's fields (csrc/bind.h).
// Importing it touches no device, so it imports cleanly on a machine without a GPU. Kernels take raw addresses
// and the caller's cudaStream_t.
#include <pybind11/pybind11.h>

#include <vector>

#include "../bind.h"
#include "../splat/splat_cuda.h"
#include "../splat/splat_fields.h"
#include "../xnor/xnor_cuda.h"
#include "../xnor/xnor_fields.h"
#include "device.h"

namespace py = pybind11;
using fastlmk::bind::def_kernel;
using fastlmk::bind::operator+;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastlmk CUDA kernels";
  m.def("runtime_version", &fastlmk::cuda::runtime_version, "CUDA runtime version built against (13000 = 13.0).");
  m.def("driver_version", &fastlmk::cuda::driver_version, "Installed driver's CUDA version, 0 without a driver.");
  m.def("device_count", &fastlmk::cuda::device_count, "Visible CUDA devices, 0 without a driver or device.");

  using fastlmk::cuda::SplatCudaArgs;
  const std::vector stream = {FASTLMK_FIELD(SplatCudaArgs, stream)};
  def_kernel(m, "splat_forward", &fastlmk::cuda::splat_forward,
             fastlmk::splat_forward_fields<SplatCudaArgs>() + stream +
                 std::vector{FASTLMK_FIELD(SplatCudaArgs, zbuf), FASTLMK_FIELD(SplatCudaArgs, owner)});
  def_kernel(m, "splat_backward", &fastlmk::cuda::splat_backward,
             fastlmk::splat_backward_fields<SplatCudaArgs>() + stream);

  using fastlmk::cuda::PackCudaArgs;
  using fastlmk::cuda::XnorConvCudaArgs;
  def_kernel(m, "pack_bits", &fastlmk::cuda::pack_bits,
             fastlmk::pack_fields<PackCudaArgs>() + std::vector{FASTLMK_FIELD(PackCudaArgs, stream)});
  def_kernel(m, "binary_conv2d", &fastlmk::cuda::binary_conv2d,
             fastlmk::conv_fields<XnorConvCudaArgs>() + std::vector{FASTLMK_FIELD(XnorConvCudaArgs, stream)});
}
