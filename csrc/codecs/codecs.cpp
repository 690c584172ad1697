// Per-sample codec encoding (codecs.h): the target rule, then the render kernels of the active instruction
// set. Built with baseline flags, so that no multiply-add is contracted and the float32 arithmetic of the
// rule is NumPy's.
#include "codecs.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "../common.h"
#include "../encode/encode.h"

namespace fastlmk {
namespace {

// Writes keypoint_weights and the render weights `drawn` (1 for a drawn keypoint, else 0), given whether
// keypoint q's window meets the map.
template <class V, class Meets>
void weigh_as(const CodecSample& a, const Meets& meets, float* drawn) {
  const V* vis = static_cast<const V*>(a.visible);
  V* weights = static_cast<V*>(a.weights);
  for (int64_t q = 0; q < a.n * a.k; ++q) {
    const bool seen = vis[q] >= V(0.5), in = meets(q);
    weights[q] = seen && !in ? V(0) : vis[q];
    drawn[q] = seen && in ? 1.0f : 0.0f;
  }
}

template <class Meets>
void weigh(const CodecSample& a, const Meets& meets, float* drawn) {
  if (a.visible_dtype == kFloat32) return weigh_as<float>(a, meets, drawn);
  if (a.visible_dtype == kFloat64) return weigh_as<double>(a, meets, drawn);
  throw std::invalid_argument("fastlmk: visible must be float32 or float64");
}

}  // namespace

void encode_heatmap_codec(const HeatmapCodecArgs& a) {
  const int64_t m = a.n * a.k;
  std::vector<float> kp(static_cast<size_t>(2 * m)), drawn(static_cast<size_t>(m)), sigma(static_cast<size_t>(a.k), float(a.sigma));
  for (int64_t q = 0; q < 2 * m; ++q) kp[size_t(q)] = a.kp[q] / a.scale[q % 2];
  const float r = float(3.0 * a.sigma), size[2] = {float(a.w), float(a.h)};
  weigh(a, [&](int64_t q) {
    for (int axis = 0; axis < 2; ++axis) {
      const float x = kp[size_t(2 * q + axis)];
      float lo, hi;
      if (a.center == kContinuous) {
        lo = x - r;
        hi = x + r + 1.0f;
      } else {
        const float mu = std::trunc(x + 0.5f);
        lo = std::trunc(mu - r);
        hi = std::trunc(mu + r + 1.0f);
      }
      if (!(lo < size[axis] && hi >= 0.0f)) return false;
    }
    return true;
  }, drawn.data());
  RenderArgs r_args{};
  r_args.kind = kGaussian;
  r_args.kp = kp.data();
  r_args.param = sigma.data();
  r_args.weight = drawn.data();
  r_args.out = a.heatmaps;
  r_args.compute_dtype = r_args.out_dtype = kFloat32;
  r_args.bk = r_args.k = a.k;
  r_args.n = a.n;
  r_args.h = a.h;
  r_args.w = a.w;
  r_args.center = a.center;
  // the DARK Gaussian covers the whole map of every drawn keypoint
  r_args.radius = a.center == kContinuous ? (double(std::max(a.w, a.h)) + 3.0 * a.sigma + 2.0) / a.sigma : 3.0;
  r_args.nthreads = a.nthreads;
  render(r_args);
}

void encode_simcc_codec(const SimccCodecArgs& a) {
  const int64_t m = a.n * a.k;
  std::vector<float> bins(static_cast<size_t>(2 * m)), drawn(static_cast<size_t>(m));
  for (int64_t q = 0; q < 2 * m; ++q) bins[size_t(q)] = std::nearbyint(a.kp[q] * a.split);
  const double size[2] = {double(a.wx), double(a.hy)};
  weigh(a, [&](int64_t q) {
    for (int axis = 0; axis < 2; ++axis) {
      const double mu = bins[size_t(2 * q + axis)], r = a.kind == kSimccGaussian ? 3.0 * a.sigma[axis] : 0.0;
      if (!std::isfinite(mu)) return false;
      const double lo = mu - r, hi = a.kind == kSimccGaussian ? mu + r + 1.0 : mu;
      if (!(lo < size[axis] && hi >= 0.0)) return false;
    }
    return true;
  }, drawn.data());
  SimccArgs s{};
  s.kind = a.kind;
  s.kp = bins.data();
  s.weight = drawn.data();
  s.out_x = a.out_x;
  s.out_y = a.out_y;
  s.compute_dtype = s.out_dtype = kFloat32;
  s.bk = m;
  s.wx = a.wx;
  s.hy = a.hy;
  std::copy(a.sigma, a.sigma + 2, s.sigma);
  std::copy(a.scale, a.scale + 2, s.scale);
  s.smoothing = a.smoothing;
  s.nthreads = a.nthreads;
  render_simcc(s);
}

}  // namespace fastlmk
