// Heatmap-encoding family (render_gaussian, render_disc, render_offsets, heatmap_loss): CPU entry points.
//
// All buffers are contiguous. Keypoints are (BK, 2) as (x, y); `param` is per channel (BK,): sigma for
// Gaussians and losses, the radius for discs and offset fields; `weight` (BK,) or null. Keypoints, param and
// weight share the compute dtype (float32, or float64 when the heatmap dtype is float64).
#pragma once

#include <cstdint>

#include "../common.h"

namespace fastlmk {

// The codes and their names, in code order; Python (the CPU and Triton calls alike) reads them as
// fastlmk._C.ENUMS.
enum RenderKind : int { kGaussian = 0, kDisc = 1, kOffsets = 2 };
enum LossKind : int { kMse = 0, kBceLogits = 1, kAwing = 2 };
enum Reduction : int { kNone = 0, kSum = 1, kMean = 2 };
inline constexpr const char* kRenderKindNames[] = {"gaussian", "disc", "offsets"};
inline constexpr const char* kLossKindNames[] = {"mse", "bce_logits", "awing"};
inline constexpr const char* kReductionNames[] = {"none", "sum", "mean"};

struct RenderArgs {
  int kind;
  const void* kp;
  const void* param;
  const void* weight;  // may be null
  void* out;           // (BK, P, H, W), P = 2 for offsets, else 1
  int compute_dtype;   // kFloat32 or kFloat64
  int out_dtype;
  int64_t bk, h, w;
  bool rounded;   // centre at floor(x + 0.5) (Gaussian only)
  double radius;  // Gaussian truncation in units of sigma
  int nthreads;
};

struct LossArgs {
  int kind;
  const void* pred;  // (BK, H, W)
  const void* kp;
  const void* param;   // sigma
  const void* weight;  // may be null
  int compute_dtype;
  int pred_dtype;      // dtype of pred, out, grad_out and grad_pred
  int64_t bk, h, w;
  bool rounded;
  double radius;
  double awing[4];  // alpha, omega, epsilon, theta
  int reduction;
  void* out;             // forward: (BK, H, W) for kNone, one element otherwise
  const void* grad_out;  // backward: same shape as out
  void* grad_pred;       // backward: (BK, H, W)
  int nthreads;
};

#define FASTLMK_ENCODE_DECLARE(ns)          \
  namespace ns {                            \
  void render(const RenderArgs& a);         \
  void loss_forward(const LossArgs& a);     \
  void loss_backward(const LossArgs& a);    \
  }

FASTLMK_ENCODE_DECLARE(scalar)
FASTLMK_ENCODE_DECLARE(avx2)

// Entry points: run the kernels of the active instruction set (csrc/isa.h).
void render(const RenderArgs& a);
void loss_forward(const LossArgs& a);
void loss_backward(const LossArgs& a);

}  // namespace fastlmk
