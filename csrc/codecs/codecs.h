// Per-sample encoding of fastlmk.codecs: mmpose's target rule (which keypoints a target draws, and the
// keypoint_weights it returns) and the render, in one call on one sample's NumPy buffers. The batched tensor
// path (fastlmk/codecs.py, encode_batch) states the same rule in torch; tests hold both to mmpose.
//
// The rule, in float32 as mmpose's NumPy arithmetic on float32 keypoints: a keypoint with visible >= 0.5 is
// drawn when its window [lo, hi) meets the map on both axes (lo < size and hi >= 0); a seen keypoint whose
// window misses gets weight 0, every other weight is its visibility. NaN or infinite keypoints never meet it.
#pragma once

#include <cstdint>

namespace fastlmk {

// One sample of N instances of K keypoints. The caller checks every shape; the buffers are contiguous.
struct CodecSample {
  const float* kp;      // (N, K, 2) as (x, y), input-image pixels
  const void* visible;  // (N, K)
  int visible_dtype;    // kFloat32 or kFloat64; weights has the same
  void* weights;        // out (N, K): keypoint_weights
  int64_t n, k;
  int nthreads;
};

// MSRAHeatmap and UDPHeatmap("gaussian"): x / scale on the map, windows by `center` (Center of encode.h):
// kMmpose and kUdp lo = trunc(mu - 3 sigma), hi = trunc(mu + 3 sigma + 1), mu = trunc(x + 0.5);
// kContinuous (DARK) lo = x - 3 sigma, hi = x + 3 sigma + 1 and the Gaussian on the whole map.
struct HeatmapCodecArgs : CodecSample {
  float* heatmaps;  // out (K, H, W): the drawn instances merged by max
  int64_t h, w;
  float scale[2];   // input pixels per heatmap pixel, (x, y)
  double sigma;
  int center;
};

// SimCCLabel: bins mu = round(x * split) (half to even); Gaussian labels lo = mu - 3 sigma,
// hi = mu + 3 sigma + 1 (in double, as mmpose's float64 sigma), one-hot ("standard") lo = hi = mu.
struct SimccCodecArgs : CodecSample {
  float* out_x;  // out (N, K, WX)
  float* out_y;  // out (N, K, HY)
  int64_t wx, hy;
  float split;       // simcc_split_ratio
  int kind;          // SimccKind of encode.h
  double sigma[2];   // per axis (x, y), in bins
  double scale[2];   // the Gaussian's peak per axis
  double smoothing;  // label_smooth_weight
};

void encode_heatmap_codec(const HeatmapCodecArgs& a);
void encode_simcc_codec(const SimccCodecArgs& a);

}  // namespace fastlmk
