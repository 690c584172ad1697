// fastlmk._C: pybind11 bindings of the CPU kernels, each its argument struct's fields (csrc/bind.h), and the
// kernels' enum codes (ENUMS). Tensors cross as raw addresses of contiguous buffers (0 for an absent optional
// buffer); validation and all torch integration live in Python (fastlmk/ops).
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bind.h"

#include "codecs/codecs.h"
#include "decode/decode.h"
#include "encode/encode.h"
#include "isa.h"
#include "splat/splat_fields.h"
#include "xnor/xnor_fields.h"

namespace py = pybind11;
using fastlmk::Isa;
using fastlmk::bind::def_kernel;
using fastlmk::bind::Field;
using fastlmk::bind::operator+;

namespace {

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw std::invalid_argument("isa must be 'scalar', 'avx2' or 'avx512', got '" + name + "'");
}

// The fields of fastlmk::CodecSample, which both codec encodings extend.
template <class Args>
std::vector<Field<Args>> codec_sample_fields() {
  return {FASTLMK_FIELD(Args, kp),      FASTLMK_FIELD(Args, visible), FASTLMK_FIELD(Args, visible_dtype),
          FASTLMK_FIELD(Args, weights), FASTLMK_FIELD(Args, n),       FASTLMK_FIELD(Args, k),
          FASTLMK_FIELD(Args, nthreads)};
}

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

  py::dict enums;
  enums["decode_method"] = fastlmk::bind::codes(fastlmk::kDecodeMethodNames);
  enums["render_kind"] = fastlmk::bind::codes(fastlmk::kRenderKindNames);
  enums["loss_kind"] = fastlmk::bind::codes(fastlmk::kLossKindNames);
  enums["reduction"] = fastlmk::bind::codes(fastlmk::kReductionNames);
  enums["center"] = fastlmk::bind::codes(fastlmk::kCenterNames);
  enums["simcc_kind"] = fastlmk::bind::codes(fastlmk::kSimccKindNames);
  m.attr("ENUMS") = enums;

  using fastlmk::RenderArgs;
  def_kernel(m, "render", &fastlmk::render,
             {FASTLMK_FIELD(RenderArgs, kind), FASTLMK_FIELD(RenderArgs, kp), FASTLMK_FIELD(RenderArgs, param),
              FASTLMK_FIELD(RenderArgs, weight), FASTLMK_FIELD(RenderArgs, out),
              FASTLMK_FIELD(RenderArgs, compute_dtype), FASTLMK_FIELD(RenderArgs, out_dtype),
              FASTLMK_FIELD(RenderArgs, bk), FASTLMK_FIELD(RenderArgs, k), FASTLMK_FIELD(RenderArgs, n),
              FASTLMK_FIELD(RenderArgs, h), FASTLMK_FIELD(RenderArgs, w), FASTLMK_FIELD(RenderArgs, center),
              FASTLMK_FIELD(RenderArgs, radius),
              FASTLMK_FIELD(RenderArgs, nthreads)});

  using fastlmk::LossArgs;
  const std::vector<Field<LossArgs>> loss = {
      FASTLMK_FIELD(LossArgs, kind),          FASTLMK_FIELD(LossArgs, pred),       FASTLMK_FIELD(LossArgs, kp),
      FASTLMK_FIELD(LossArgs, param),         FASTLMK_FIELD(LossArgs, weight),     FASTLMK_FIELD(LossArgs, instance_weight),
      FASTLMK_FIELD(LossArgs, compute_dtype), FASTLMK_FIELD(LossArgs, pred_dtype), FASTLMK_FIELD(LossArgs, bk),
      FASTLMK_FIELD(LossArgs, k),             FASTLMK_FIELD(LossArgs, n),          FASTLMK_FIELD(LossArgs, h),
      FASTLMK_FIELD(LossArgs, w),             FASTLMK_FIELD(LossArgs, center),
      FASTLMK_FIELD(LossArgs, radius),        FASTLMK_FIELD(LossArgs, awing),      FASTLMK_FIELD(LossArgs, reduction),
      FASTLMK_FIELD(LossArgs, nthreads)};
  def_kernel(m, "heatmap_loss_forward", &fastlmk::loss_forward, loss + std::vector{FASTLMK_FIELD(LossArgs, out)});
  def_kernel(m, "heatmap_loss_backward", &fastlmk::loss_backward,
             loss + std::vector{FASTLMK_FIELD(LossArgs, grad_out), FASTLMK_FIELD(LossArgs, grad_pred)});

  using fastlmk::SimccArgs;
  def_kernel(m, "render_simcc", &fastlmk::render_simcc,
             {FASTLMK_FIELD(SimccArgs, kind), FASTLMK_FIELD(SimccArgs, kp), FASTLMK_FIELD(SimccArgs, weight),
              FASTLMK_FIELD(SimccArgs, out_x), FASTLMK_FIELD(SimccArgs, out_y),
              FASTLMK_FIELD(SimccArgs, compute_dtype), FASTLMK_FIELD(SimccArgs, out_dtype),
              FASTLMK_FIELD(SimccArgs, bk), FASTLMK_FIELD(SimccArgs, wx), FASTLMK_FIELD(SimccArgs, hy),
              FASTLMK_FIELD(SimccArgs, sigma), FASTLMK_FIELD(SimccArgs, scale), FASTLMK_FIELD(SimccArgs, smoothing),
              FASTLMK_FIELD(SimccArgs, nthreads)});

  using fastlmk::SimccDecodeArgs;
  def_kernel(m, "decode_simcc", &fastlmk::decode_simcc,
             {FASTLMK_FIELD(SimccDecodeArgs, x), FASTLMK_FIELD(SimccDecodeArgs, y),
              FASTLMK_FIELD(SimccDecodeArgs, compute_dtype), FASTLMK_FIELD(SimccDecodeArgs, map_dtype),
              FASTLMK_FIELD(SimccDecodeArgs, bk), FASTLMK_FIELD(SimccDecodeArgs, wx), FASTLMK_FIELD(SimccDecodeArgs, hy),
              FASTLMK_FIELD(SimccDecodeArgs, locs), FASTLMK_FIELD(SimccDecodeArgs, scores),
              FASTLMK_FIELD(SimccDecodeArgs, nthreads)});

  using fastlmk::HeatmapCodecArgs;
  using fastlmk::SimccCodecArgs;
  def_kernel(m, "encode_heatmap_codec", &fastlmk::encode_heatmap_codec,
             codec_sample_fields<HeatmapCodecArgs>() +
                 std::vector{FASTLMK_FIELD(HeatmapCodecArgs, heatmaps), FASTLMK_FIELD(HeatmapCodecArgs, h),
                             FASTLMK_FIELD(HeatmapCodecArgs, w), FASTLMK_FIELD(HeatmapCodecArgs, scale),
                             FASTLMK_FIELD(HeatmapCodecArgs, sigma), FASTLMK_FIELD(HeatmapCodecArgs, center)});
  def_kernel(m, "encode_simcc_codec", &fastlmk::encode_simcc_codec,
             codec_sample_fields<SimccCodecArgs>() +
                 std::vector{FASTLMK_FIELD(SimccCodecArgs, out_x), FASTLMK_FIELD(SimccCodecArgs, out_y),
                             FASTLMK_FIELD(SimccCodecArgs, wx), FASTLMK_FIELD(SimccCodecArgs, hy),
                             FASTLMK_FIELD(SimccCodecArgs, split), FASTLMK_FIELD(SimccCodecArgs, kind),
                             FASTLMK_FIELD(SimccCodecArgs, sigma), FASTLMK_FIELD(SimccCodecArgs, scale),
                             FASTLMK_FIELD(SimccCodecArgs, smoothing)});

  using fastlmk::DecodeArgs;
  def_kernel(m, "decode", &fastlmk::decode,
             {FASTLMK_FIELD(DecodeArgs, method), FASTLMK_FIELD(DecodeArgs, maps), FASTLMK_FIELD(DecodeArgs, offsets),
              FASTLMK_FIELD(DecodeArgs, affine), FASTLMK_FIELD(DecodeArgs, compute_dtype),
              FASTLMK_FIELD(DecodeArgs, map_dtype), FASTLMK_FIELD(DecodeArgs, bk),
              FASTLMK_FIELD(DecodeArgs, k_per_batch), FASTLMK_FIELD(DecodeArgs, h), FASTLMK_FIELD(DecodeArgs, w),
              FASTLMK_FIELD(DecodeArgs, blur), FASTLMK_FIELD(DecodeArgs, window), FASTLMK_FIELD(DecodeArgs, topk),
              FASTLMK_FIELD(DecodeArgs, coords), FASTLMK_FIELD(DecodeArgs, scores),
              FASTLMK_FIELD(DecodeArgs, flipped), FASTLMK_FIELD(DecodeArgs, flipped_offsets),
              FASTLMK_FIELD(DecodeArgs, flip_index), FASTLMK_FIELD(DecodeArgs, flip_shift),
              FASTLMK_FIELD(DecodeArgs, nthreads)});

  using fastlmk::SoftArgmaxArgs;
  const std::vector<Field<SoftArgmaxArgs>> soft = {
      FASTLMK_FIELD(SoftArgmaxArgs, maps),   FASTLMK_FIELD(SoftArgmaxArgs, compute_dtype),
      FASTLMK_FIELD(SoftArgmaxArgs, map_dtype), FASTLMK_FIELD(SoftArgmaxArgs, bk),
      FASTLMK_FIELD(SoftArgmaxArgs, h),      FASTLMK_FIELD(SoftArgmaxArgs, w),
      FASTLMK_FIELD(SoftArgmaxArgs, beta),   FASTLMK_FIELD(SoftArgmaxArgs, relu),
      FASTLMK_FIELD(SoftArgmaxArgs, coords), FASTLMK_FIELD(SoftArgmaxArgs, stat),
      FASTLMK_FIELD(SoftArgmaxArgs, nthreads)};
  def_kernel(m, "soft_argmax_forward", &fastlmk::soft_argmax_forward,
             soft + std::vector{FASTLMK_FIELD(SoftArgmaxArgs, k_per_batch), FASTLMK_FIELD(SoftArgmaxArgs, flipped),
                                FASTLMK_FIELD(SoftArgmaxArgs, flip_index),
                                FASTLMK_FIELD(SoftArgmaxArgs, flip_shift)});
  def_kernel(m, "soft_argmax_backward", &fastlmk::soft_argmax_backward,
             soft + std::vector{FASTLMK_FIELD(SoftArgmaxArgs, grad_coords), FASTLMK_FIELD(SoftArgmaxArgs, grad_stat),
                                FASTLMK_FIELD(SoftArgmaxArgs, grad_maps)});

  using fastlmk::SplatArgs;
  const std::vector nthreads = {FASTLMK_FIELD(SplatArgs, candidates), FASTLMK_FIELD(SplatArgs, nthreads)};
  def_kernel(m, "splat_forward", &fastlmk::splat_forward, fastlmk::splat_forward_fields<SplatArgs>() + nthreads);
  def_kernel(m, "splat_backward", &fastlmk::splat_backward, fastlmk::splat_backward_fields<SplatArgs>() + nthreads);

  using fastlmk::PackArgs;
  using fastlmk::XnorConvArgs;
  def_kernel(m, "pack_bits", &fastlmk::pack_bits,
             fastlmk::pack_fields<PackArgs>() + std::vector{FASTLMK_FIELD(PackArgs, nthreads)},
             "Packs signs into (N, P, words); returns the number of NaNs.");
  def_kernel(m, "binary_conv2d", &fastlmk::binary_conv2d,
             fastlmk::conv_fields<XnorConvArgs>() + std::vector{FASTLMK_FIELD(XnorConvArgs, nthreads)});
}
