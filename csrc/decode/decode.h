// Decoding family (decode, soft_argmax): CPU entry points.
//
// Maps are contiguous (BK, H, W) in their storage dtype; every other buffer is contiguous in the compute
// dtype (float64 for float64 maps, else float32). Parallel over channels with OpenMP.
#pragma once

#include <cstdint>

#include "../common.h"

namespace fastlmk {

// The codes of the methods; Python (the CPU and Triton calls alike) reads them as fastlmk._C.ENUMS.
enum DecodeMethod : int {
  kArgmax = 0, kQuarter = 1, kWsm = 2, kParabola = 3, kDark = 4, kLocalSoftargmax = 5, kTopk = 6, kOffset = 7
};
inline constexpr const char* kDecodeMethodNames[] = {"argmax", "quarter",          "wsm",  "parabola",
                                                     "dark",   "local_softargmax", "topk", "offset"};
static_assert(sizeof(kDecodeMethodNames) / sizeof(*kDecodeMethodNames) == kOffset + 1, "one name per method");

// The flip test: the maps of the horizontally flipped image, flipped back and averaged with the maps before
// decoding, without building the average in memory. Channel c = b K + k reads flipped channel
// b K + flip_index[k] (k itself when flip_index is null) at column W - 1 - j, or W - max(j, 1) with
// flip_shift (mmpose's shift_heatmap); the average is (maps + flipped back) / 2 in the compute dtype.
struct FlipArgs {
  const void* flipped;         // (BK, H, W) in the maps' dtype, or null: no flip test
  const int64_t* flip_index;   // (K,) a permutation of 0..K-1, or null
  bool flip_shift;
};

struct DecodeArgs : FlipArgs {
  int method;
  const void* maps;     // (BK, H, W)
  const void* offsets;  // (BK, 2, H, W) for kOffset, else null
  const void* flipped_offsets;  // (BK, 2, H, W) with flipped for kOffset: x negated when flipped back
  const void* affine;   // (B, 2, 3) or null; channel c belongs to batch c / k_per_batch
  int compute_dtype;
  int map_dtype;
  int64_t bk, k_per_batch, h, w;
  int blur;    // odd DARK kernel size
  int window;  // local soft-argmax radius
  int topk;    // 1 <= topk <= H*W
  void* coords;  // (BK, 2)
  void* scores;  // (BK,)
  int nthreads;
};

struct SoftArgmaxArgs : FlipArgs {
  const void* maps;  // (BK, H, W)
  int compute_dtype;
  int map_dtype;
  int64_t bk, k_per_batch, h, w;
  double beta;
  bool relu;
  void* coords;             // (BK, 2): written by the forward, read by the backward
  void* stat;               // (BK,): logsumexp(beta h) (softmax) or sum relu(h) (relu)
  const void* grad_coords;  // backward (no flip test): (BK, 2)
  const void* grad_stat;    // backward: (BK,)
  void* grad_maps;          // backward: (BK, H, W) in the maps' dtype
  int nthreads;
};

// SimCC decoding: per channel the first maximum of its x vector (WX bins) and of its y vector (HY bins);
// the score is the smaller of the two maxima. A vector holding NaN gives a NaN location and score.
struct SimccDecodeArgs {
  const void* x;  // (BK, WX)
  const void* y;  // (BK, HY)
  int compute_dtype;
  int map_dtype;
  int64_t bk, wx, hy;
  void* locs;    // (BK, 2)
  void* scores;  // (BK,)
  int nthreads;
};

#define FASTLMK_DECODE_DECLARE(ns)                    \
  namespace ns {                                      \
  void decode(const DecodeArgs& a);                   \
  void soft_argmax_forward(const SoftArgmaxArgs& a);  \
  void soft_argmax_backward(const SoftArgmaxArgs& a); \
  void decode_simcc(const SimccDecodeArgs& a);        \
  }

FASTLMK_DECODE_DECLARE(scalar)
FASTLMK_DECODE_DECLARE(avx2)

void decode(const DecodeArgs& a);
void soft_argmax_forward(const SoftArgmaxArgs& a);
void soft_argmax_backward(const SoftArgmaxArgs& a);
void decode_simcc(const SimccDecodeArgs& a);

}  // namespace fastlmk
