// fastlmk._C: pybind11 bindings of the CPU kernels. Tensors cross as raw addresses of contiguous buffers
// (0 for an absent optional buffer); validation and all torch integration live in Python (fastlmk/ops).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "decode/decode.h"
#include "encode/encode.h"
#include "isa.h"
#include "splat/splat.h"
#include "xnor/xnor.h"

namespace py = pybind11;
using fastlmk::Isa;

namespace {

const void* cptr(uintptr_t p) { return reinterpret_cast<const void*>(p); }
void* mptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw std::invalid_argument("isa must be 'scalar', 'avx2' or 'avx512', got '" + name + "'");
}

fastlmk::LossArgs loss_args(int kind, uintptr_t pred, uintptr_t kp, uintptr_t sigma, uintptr_t weight,
                            int compute_dtype, int pred_dtype, int64_t bk, int64_t h, int64_t w, bool rounded,
                            double radius, double alpha, double omega, double epsilon, double theta,
                            int reduction, int nthreads) {
  fastlmk::LossArgs a{};
  a.kind = kind;
  a.pred = cptr(pred);
  a.kp = cptr(kp);
  a.param = cptr(sigma);
  a.weight = cptr(weight);
  a.compute_dtype = compute_dtype;
  a.pred_dtype = pred_dtype;
  a.bk = bk;
  a.h = h;
  a.w = w;
  a.rounded = rounded;
  a.radius = radius;
  a.awing[0] = alpha;
  a.awing[1] = omega;
  a.awing[2] = epsilon;
  a.awing[3] = theta;
  a.reduction = reduction;
  a.nthreads = nthreads;
  return a;
}

#define FASTLMK_LOSS_ARGS                                                                            \
  py::arg("kind"), py::arg("pred"), py::arg("keypoints"), py::arg("sigma"), py::arg("weight"),        \
      py::arg("compute_dtype"), py::arg("pred_dtype"), py::arg("bk"), py::arg("h"), py::arg("w"),     \
      py::arg("rounded"), py::arg("radius"), py::arg("alpha"), py::arg("omega"), py::arg("epsilon"), \
      py::arg("theta"), py::arg("reduction"), py::arg("nthreads")

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastlmk CPU kernels (C++17, OpenMP, AVX2 with run-time dispatch)";

  m.def("isa", []() {
        const Isa isa = fastlmk::active_isa();
        return std::string(isa == Isa::kAvx512 ? "avx512" : isa == Isa::kAvx2 ? "avx2" : "scalar");
      },
        "Instruction set the kernels currently run with.");
  m.def("isa_supported", [](const std::string& name) { return fastlmk::isa_supported(parse_isa(name)); });
  m.def("set_isa", [](const std::string& name) { fastlmk::set_isa(parse_isa(name)); },
        "Force 'scalar', 'avx2' or 'avx512' (for tests and benchmarks).");

  m.def(
      "render",
      [](int kind, uintptr_t kp, uintptr_t param, uintptr_t weight, uintptr_t out, int compute_dtype,
         int out_dtype, int64_t bk, int64_t h, int64_t w, bool rounded, double radius, int nthreads) {
        fastlmk::RenderArgs a{kind,      cptr(kp), cptr(param), cptr(weight), mptr(out), compute_dtype,
                              out_dtype, bk,       h,           w,            rounded,   radius,
                              nthreads};
        fastlmk::render(a);
      },
      py::arg("kind"), py::arg("keypoints"), py::arg("param"), py::arg("weight"), py::arg("out"),
      py::arg("compute_dtype"), py::arg("out_dtype"), py::arg("bk"), py::arg("h"), py::arg("w"),
      py::arg("rounded"), py::arg("radius"), py::arg("nthreads"), py::call_guard<py::gil_scoped_release>());

  m.def(
      "heatmap_loss_forward",
      [](int kind, uintptr_t pred, uintptr_t kp, uintptr_t sigma, uintptr_t weight, int compute_dtype,
         int pred_dtype, int64_t bk, int64_t h, int64_t w, bool rounded, double radius, double alpha,
         double omega, double epsilon, double theta, int reduction, int nthreads, uintptr_t out) {
        auto a = loss_args(kind, pred, kp, sigma, weight, compute_dtype, pred_dtype, bk, h, w, rounded, radius,
                           alpha, omega, epsilon, theta, reduction, nthreads);
        a.out = mptr(out);
        fastlmk::loss_forward(a);
      },
      FASTLMK_LOSS_ARGS, py::arg("out"), py::call_guard<py::gil_scoped_release>());

  m.def(
      "heatmap_loss_backward",
      [](int kind, uintptr_t pred, uintptr_t kp, uintptr_t sigma, uintptr_t weight, int compute_dtype,
         int pred_dtype, int64_t bk, int64_t h, int64_t w, bool rounded, double radius, double alpha,
         double omega, double epsilon, double theta, int reduction, int nthreads, uintptr_t grad_out,
         uintptr_t grad_pred) {
        auto a = loss_args(kind, pred, kp, sigma, weight, compute_dtype, pred_dtype, bk, h, w, rounded, radius,
                           alpha, omega, epsilon, theta, reduction, nthreads);
        a.grad_out = cptr(grad_out);
        a.grad_pred = mptr(grad_pred);
        fastlmk::loss_backward(a);
      },
      FASTLMK_LOSS_ARGS, py::arg("grad_out"), py::arg("grad_pred"), py::call_guard<py::gil_scoped_release>());

  m.def(
      "decode",
      [](int method, uintptr_t maps, uintptr_t offsets, uintptr_t affine, int compute_dtype, int map_dtype,
         int64_t bk, int64_t k_per_batch, int64_t h, int64_t w, int blur, int window, int topk, uintptr_t coords,
         uintptr_t scores, int nthreads) {
        fastlmk::DecodeArgs a{method, cptr(maps), cptr(offsets), cptr(affine), compute_dtype, map_dtype,
                              bk,     k_per_batch, h,          w,            blur,          window,
                              topk,   mptr(coords), mptr(scores), nthreads};
        fastlmk::decode(a);
      },
      py::arg("method"), py::arg("maps"), py::arg("offsets"), py::arg("affine"), py::arg("compute_dtype"),
      py::arg("map_dtype"), py::arg("bk"), py::arg("k_per_batch"), py::arg("h"), py::arg("w"), py::arg("blur"),
      py::arg("window"), py::arg("topk"), py::arg("coords"), py::arg("scores"), py::arg("nthreads"),
      py::call_guard<py::gil_scoped_release>());

  m.def(
      "soft_argmax_forward",
      [](uintptr_t maps, int compute_dtype, int map_dtype, int64_t bk, int64_t h, int64_t w, double beta,
         bool relu, uintptr_t coords, uintptr_t stat, int nthreads) {
        fastlmk::SoftArgmaxArgs a{cptr(maps), compute_dtype, map_dtype, bk, h, w, beta, relu, mptr(coords),
                                  mptr(stat), nullptr, nullptr, nullptr, nthreads};
        fastlmk::soft_argmax_forward(a);
      },
      py::arg("maps"), py::arg("compute_dtype"), py::arg("map_dtype"), py::arg("bk"), py::arg("h"), py::arg("w"),
      py::arg("beta"), py::arg("relu"), py::arg("coords"), py::arg("stat"), py::arg("nthreads"),
      py::call_guard<py::gil_scoped_release>());

  m.def(
      "soft_argmax_backward",
      [](uintptr_t maps, int compute_dtype, int map_dtype, int64_t bk, int64_t h, int64_t w, double beta,
         bool relu, uintptr_t coords, uintptr_t stat, uintptr_t grad_coords, uintptr_t grad_stat,
         uintptr_t grad_maps, int nthreads) {
        fastlmk::SoftArgmaxArgs a{cptr(maps), compute_dtype, map_dtype, bk, h, w, beta, relu,
                                  mptr(coords), mptr(stat), cptr(grad_coords), cptr(grad_stat),
                                  mptr(grad_maps), nthreads};
        fastlmk::soft_argmax_backward(a);
      },
      py::arg("maps"), py::arg("compute_dtype"), py::arg("map_dtype"), py::arg("bk"), py::arg("h"), py::arg("w"),
      py::arg("beta"), py::arg("relu"), py::arg("coords"), py::arg("stat"), py::arg("grad_coords"),
      py::arg("grad_stat"), py::arg("grad_maps"), py::arg("nthreads"), py::call_guard<py::gil_scoped_release>());

  m.def(
      "splat_forward",
      [](uintptr_t xy, uintptr_t depth, uintptr_t value, int dtype, int64_t b, int64_t q, int64_t h, int64_t w,
         double sigma, double radius, int64_t margin, int64_t candidates, uintptr_t image, uintptr_t weight_sum,
         uintptr_t visible, int nthreads) {
        fastlmk::SplatArgs a{};
        a.xy = cptr(xy), a.depth = cptr(depth), a.value = cptr(value), a.dtype = dtype;
        a.b = b, a.q = q, a.h = h, a.w = w, a.sigma = sigma, a.radius = radius;
        a.margin = margin, a.candidates = candidates, a.nthreads = nthreads;
        a.image = mptr(image), a.weight_sum = mptr(weight_sum), a.visible = static_cast<uint8_t*>(mptr(visible));
        fastlmk::splat_forward(a);
      },
      py::arg("xy"), py::arg("depth"), py::arg("value"), py::arg("dtype"), py::arg("b"), py::arg("q"), py::arg("h"),
      py::arg("w"), py::arg("sigma"), py::arg("radius"), py::arg("margin"), py::arg("candidates"), py::arg("image"),
      py::arg("weight_sum"), py::arg("visible"), py::arg("nthreads"), py::call_guard<py::gil_scoped_release>());

  m.def(
      "splat_backward",
      [](uintptr_t grad_image, uintptr_t xy, uintptr_t value, uintptr_t image, uintptr_t weight_sum,
         uintptr_t visible, int dtype, int64_t b, int64_t q, int64_t h, int64_t w, double sigma, double radius,
         int64_t candidates, uintptr_t grad_xy, uintptr_t grad_value, int nthreads) {
        fastlmk::SplatArgs a{};
        a.grad_image = cptr(grad_image), a.xy = cptr(xy), a.value = cptr(value), a.dtype = dtype;
        a.image = mptr(image), a.weight_sum = mptr(weight_sum), a.visible = static_cast<uint8_t*>(mptr(visible));
        a.b = b, a.q = q, a.h = h, a.w = w, a.sigma = sigma, a.radius = radius, a.candidates = candidates;
        a.grad_xy = mptr(grad_xy), a.grad_value = mptr(grad_value), a.nthreads = nthreads;
        fastlmk::splat_backward(a);
      },
      py::arg("grad_image"), py::arg("xy"), py::arg("value"), py::arg("image"), py::arg("weight_sum"),
      py::arg("visible"), py::arg("dtype"), py::arg("b"), py::arg("q"), py::arg("h"), py::arg("w"), py::arg("sigma"),
      py::arg("radius"), py::arg("candidates"), py::arg("grad_xy"), py::arg("grad_value"), py::arg("nthreads"),
      py::call_guard<py::gil_scoped_release>());

  m.def(
      "pack_bits",
      [](uintptr_t x, int dtype, int64_t n, int64_t c, int64_t p, int64_t stride_n, int64_t stride_c,
         int64_t stride_p, uintptr_t out, int nthreads) {
        fastlmk::PackArgs a{cptr(x), dtype, n, c, p, stride_n, stride_c, stride_p,
                            static_cast<uint64_t*>(mptr(out)), nthreads};
        return fastlmk::pack_bits(a);
      },
      py::arg("x"), py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("p"), py::arg("stride_n"),
      py::arg("stride_c"), py::arg("stride_p"), py::arg("out"), py::arg("nthreads"),
      py::call_guard<py::gil_scoped_release>(), "Packs signs into (N, P, words); returns the number of NaNs.");

  m.def(
      "binary_conv2d",
      [](uintptr_t x, uintptr_t weight, uintptr_t alpha, uintptr_t bias, uintptr_t scale, uintptr_t shift, int dtype,
         int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw, int64_t groups,
         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t ho,
         int64_t wo, bool pad_ones, bool packed_out, uintptr_t out, int nthreads) {
        fastlmk::XnorConvArgs a{static_cast<const uint64_t*>(cptr(x)), static_cast<const uint64_t*>(cptr(weight)),
                                cptr(alpha), cptr(bias), cptr(scale), cptr(shift), dtype, n, c, h, w, o, kh, kw,
                                groups, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, ho, wo, pad_ones,
                                packed_out, mptr(out), nthreads};
        fastlmk::binary_conv2d(a);
      },
      py::arg("x"), py::arg("weight"), py::arg("alpha"), py::arg("bias"), py::arg("scale"), py::arg("shift"),
      py::arg("dtype"), py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"), py::arg("o"), py::arg("kh"),
      py::arg("kw"), py::arg("groups"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
      py::arg("dil_h"), py::arg("dil_w"), py::arg("ho"), py::arg("wo"), py::arg("pad_ones"), py::arg("packed_out"),
      py::arg("out"), py::arg("nthreads"), py::call_guard<py::gil_scoped_release>());
}
