// fastlmk._cuda: pybind11 bindings of the CUDA kernels. Importing it touches no device, so it imports
// cleanly on a machine without a GPU. Kernels take raw addresses and the caller's cudaStream_t.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "device.h"
#include "../splat/splat_cuda.h"
#include "../xnor/xnor_cuda.h"

namespace py = pybind11;

namespace {

const void* cptr(uintptr_t p) { return reinterpret_cast<const void*>(p); }
void* mptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastlmk CUDA kernels";
  m.def("runtime_version", &fastlmk::cuda::runtime_version, "CUDA runtime version built against (13000 = 13.0).");
  m.def("driver_version", &fastlmk::cuda::driver_version, "Installed driver's CUDA version, 0 without a driver.");
  m.def("device_count", &fastlmk::cuda::device_count, "Visible CUDA devices, 0 without a driver or device.");

  m.def(
      "splat_forward",
      [](uintptr_t xy, uintptr_t depth, uintptr_t value, int dtype, int64_t b, int64_t q, int64_t h, int64_t w,
         double sigma, double radius, int64_t margin, uintptr_t zbuf, uintptr_t owner, uintptr_t image,
         uintptr_t weight_sum, uintptr_t visible, uintptr_t stream) {
        fastlmk::cuda::splat_forward(cptr(xy), cptr(depth), cptr(value), dtype, b, q, h, w, sigma, radius, margin,
                                     mptr(zbuf), mptr(owner), mptr(image), mptr(weight_sum), mptr(visible), stream);
      },
      py::arg("xy"), py::arg("depth"), py::arg("value"), py::arg("dtype"), py::arg("b"), py::arg("q"), py::arg("h"),
      py::arg("w"), py::arg("sigma"), py::arg("radius"), py::arg("margin"), py::arg("zbuf"), py::arg("owner"),
      py::arg("image"), py::arg("weight_sum"), py::arg("visible"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>());

  m.def(
      "splat_backward",
      [](uintptr_t grad_image, uintptr_t xy, uintptr_t value, uintptr_t image, uintptr_t weight_sum,
         uintptr_t visible, int dtype, int64_t b, int64_t q, int64_t h, int64_t w, double sigma, double radius,
         uintptr_t grad_xy, uintptr_t grad_value, uintptr_t stream) {
        fastlmk::cuda::splat_backward(cptr(grad_image), cptr(xy), cptr(value), cptr(image), cptr(weight_sum),
                                      cptr(visible), dtype, b, q, h, w, sigma, radius, mptr(grad_xy),
                                      mptr(grad_value), stream);
      },
      py::arg("grad_image"), py::arg("xy"), py::arg("value"), py::arg("image"), py::arg("weight_sum"),
      py::arg("visible"), py::arg("dtype"), py::arg("b"), py::arg("q"), py::arg("h"), py::arg("w"), py::arg("sigma"),
      py::arg("radius"), py::arg("grad_xy"), py::arg("grad_value"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>());

  m.def(
      "pack_bits",
      [](uintptr_t x, int dtype, int64_t n, int64_t c, int64_t p, int64_t stride_n, int64_t stride_c,
         int64_t stride_p, uintptr_t out, uintptr_t stream) {
        fastlmk::cuda::pack_bits(cptr(x), dtype, n, c, p, stride_n, stride_c, stride_p, mptr(out), stream);
      },
      py::arg("x"), py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("p"), py::arg("stride_n"),
      py::arg("stride_c"), py::arg("stride_p"), py::arg("out"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>());

  m.def(
      "binary_conv2d",
      [](uintptr_t x, uintptr_t weight, uintptr_t alpha, uintptr_t bias, uintptr_t scale, uintptr_t shift, int dtype,
         int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw, int64_t groups,
         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t ho,
         int64_t wo, bool pad_ones, bool packed_out, uintptr_t out, uintptr_t stream) {
        fastlmk::cuda::binary_conv2d(cptr(x), cptr(weight), cptr(alpha), cptr(bias), cptr(scale), cptr(shift), dtype,
                                     n, c, h, w, o, kh, kw, groups, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                                     ho, wo, pad_ones, packed_out, mptr(out), stream);
      },
      py::arg("x"), py::arg("weight"), py::arg("alpha"), py::arg("bias"), py::arg("scale"), py::arg("shift"),
      py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"), py::arg("o"), py::arg("kh"),
      py::arg("kw"), py::arg("groups"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
      py::arg("dil_h"), py::arg("dil_w"), py::arg("ho"), py::arg("wo"), py::arg("pad_ones"), py::arg("packed_out"),
      py::arg("out"), py::arg("stream"), py::call_guard<py::gil_scoped_release>());
}
