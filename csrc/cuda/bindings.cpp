// fastlmk._cuda: pybind11 bindings of the CUDA kernels. Importing it touches no device, so it imports
// cleanly on a machine without a GPU. Kernels take raw addresses and the caller's cudaStream_t.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "device.h"
#include "splat.h"

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
}
