// Heatmap-encoding family (render_gaussian, render_disc, render_offsets, heatmap_loss): CPU entry points.
//
// All buffers are contiguous. Keypoints are (B, N, K, 2) as (x, y): N instances per image (N = 1 for the
// single-instance ops), channel c = b * K + k; `param` is per channel (BK,): sigma for Gaussians and losses,
// the radius for discs and offset fields. A Gaussian channel is the maximum over the instances whose window
// holds the pixel (0 where none does); discs and offsets have N = 1. Keypoints, param and the weights share
// the compute dtype (float32, or float64 when the heatmap dtype is float64).
#pragma once

#include <cstdint>

#include "../common.h"

namespace fastlmk {

// The codes and their names, in code order; Python (the CPU and Triton calls alike) reads them as
// fastlmk._C.ENUMS.
enum RenderKind : int { kGaussian = 0, kDisc = 1, kOffsets = 2 };
enum LossKind : int { kMse = 0, kBceLogits = 1, kAwing = 2 };
enum Reduction : int { kNone = 0, kSum = 1, kMean = 2 };
// Where a Gaussian's centre and window lie (per axis, r = radius * sigma): kContinuous at x, the pixels
// |j - x| <= r; kRounded likewise at floor(x + 0.5); kMmpose and kUdp as mmpose's patch arithmetic,
// mu = trunc(x + 0.5), the pixels [trunc(mu - r), trunc(mu + r + 1)), the centre at
// trunc(mu - r) + floor(r + 0.5), plus x - mu for kUdp.
enum Center : int { kContinuous = 0, kRounded = 1, kMmpose = 2, kUdp = 3 };
inline constexpr const char* kRenderKindNames[] = {"gaussian", "disc", "offsets"};
inline constexpr const char* kLossKindNames[] = {"mse", "bce_logits", "awing"};
inline constexpr const char* kReductionNames[] = {"none", "sum", "mean"};
inline constexpr const char* kCenterNames[] = {"continuous", "rounded", "mmpose", "udp"};
enum SimccKind : int { kSimccGaussian = 0, kSimccStandard = 1 };
inline constexpr const char* kSimccKindNames[] = {"gaussian", "standard"};

struct RenderArgs {
  int kind;
  const void* kp;
  const void* param;
  const void* weight;  // (B, N, K), scales each instance; may be null
  void* out;           // (BK, P, H, W), P = 2 for offsets, else 1
  int compute_dtype;   // kFloat32 or kFloat64
  int out_dtype;
  int64_t bk, k, n, h, w;  // channels, keypoints per image, instances
  int center;     // Center (Gaussian only)
  double radius;  // Gaussian truncation in units of sigma
  int nthreads;
};

struct LossArgs {
  int kind;
  const void* pred;  // (BK, H, W)
  const void* kp;
  const void* param;            // sigma
  const void* weight;           // (BK,) multiplies each channel's loss; may be null
  const void* instance_weight;  // (B, N, K) scales each instance's target; may be null
  int compute_dtype;
  int pred_dtype;  // dtype of pred, out, grad_out and grad_pred
  int64_t bk, k, n, h, w;
  int center;
  double radius;
  double awing[4];  // alpha, omega, epsilon, theta
  int reduction;
  void* out;             // forward: (BK, H, W) for kNone, one element otherwise
  const void* grad_out;  // backward: same shape as out
  void* grad_pred;       // backward: (BK, H, W)
  int nthreads;
};

// SimCC labels: per channel one vector per axis, over the WX x bins and the HY y bins. kSimccGaussian:
// weight * scale[a] * exp(-(j - c)^2 / (2 sigma[a]^2)) at every bin j (no truncation); kSimccStandard:
// weight * smoothing / (n - 1) at every bin and weight * (1 - smoothing) at bin floor(c + 0.5) when it
// exists. A non-finite keypoint or a zero weight gives zero vectors.
struct SimccArgs {
  int kind;
  const void* kp;      // (BK, 2) as (x, y) in bins
  const void* weight;  // (BK,) or null
  void* out_x;         // (BK, WX)
  void* out_y;         // (BK, HY)
  int compute_dtype;
  int out_dtype;
  int64_t bk, wx, hy;
  double sigma[2];  // per axis (x, y)
  double scale[2];  // the Gaussian's peak per axis
  double smoothing;
  int nthreads;
};

#define FASTLMK_ENCODE_DECLARE(ns)          \
  namespace ns {                            \
  void render(const RenderArgs& a);         \
  void loss_forward(const LossArgs& a);     \
  void loss_backward(const LossArgs& a);    \
  void render_simcc(const SimccArgs& a);    \
  }

FASTLMK_ENCODE_DECLARE(scalar)
FASTLMK_ENCODE_DECLARE(avx2)

// Entry points: run the kernels of the active instruction set (csrc/isa.h).
void render(const RenderArgs& a);
void loss_forward(const LossArgs& a);
void loss_backward(const LossArgs& a);
void render_simcc(const SimccArgs& a);

}  // namespace fastlmk
