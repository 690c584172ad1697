// Visualization splat (seed 003 Eq. 9-10, docs/ops.md 3): CPU entry points.
//
// Every buffer is contiguous in the data dtype (float32 or float64, which is also the compute dtype), except
// `visible`, one byte per vertex. Semantics (cells, windows, visibility): fastlmk/reference/splat.py.
#pragma once

#include <cstdint>

#include "../common.h"

namespace fastlmk {

struct SplatArgs {
  const void* xy;     // (B, Q, 2)
  const void* depth;  // (B, Q), forward only
  const void* value;  // (B, Q)
  int dtype;
  int64_t b, q, h, w;
  double sigma, radius;
  int64_t margin;          // z-buffer cells beyond the map on each side: floor(radius + 0.5)
  int64_t candidates;      // window candidates per axis: floor(2 radius) + 2
  void* image;             // (B, H, W): written by the forward, read by the backward
  void* weight_sum;        // (B, H, W): idem
  uint8_t* visible;        // (B, Q): idem
  const void* grad_image;  // backward: (B, H, W)
  void* grad_xy;           // backward: (B, Q, 2)
  void* grad_value;        // backward: (B, Q)
  int nthreads;
};

#define FASTLMK_SPLAT_DECLARE(ns)            \
  namespace ns {                             \
  void splat_forward(const SplatArgs& a);    \
  void splat_backward(const SplatArgs& a);   \
  }

FASTLMK_SPLAT_DECLARE(scalar)
FASTLMK_SPLAT_DECLARE(avx2)

void splat_forward(const SplatArgs& a);
void splat_backward(const SplatArgs& a);

}  // namespace fastlmk
