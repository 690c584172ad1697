// Decoding kernels, compiled once per instruction set: the including file defines FASTLMK_ISA_NS (and, for
// AVX2, a target pragma and FASTLMK_AVX2). One channel per OpenMP iteration, so results do not depend on
// the thread count.
//
// decode: one scan of the map finds the first maximum (and NaN); the refinements then read a few pixels
// around it (wsm and topk rescan the map, which is in cache by then, with vector compares). DARK blurs only the region its 5x5
// Taylor patch needs. soft_argmax: the forward reads the map twice (max, then exp-sums; the channel is in
// cache), the backward reads it once and writes the gradient once.
#ifndef FASTLMK_ISA_NS
#error "define FASTLMK_ISA_NS before including decode_kernels.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "decode.h"

namespace fastlmk {
namespace FASTLMK_ISA_NS {
namespace {

template <class S>
struct Peak {
  S value;
  int64_t index;
  bool nan;
};

// First maximum in row-major order; NaN anywhere sets `nan`.
template <class S, class T>
Peak<S> scan(const T* m, int64_t n) {
  Peak<S> p{load<S>(m[0]), 0, false};
  p.nan = p.value != p.value;
  for (int64_t i = 1; i < n; ++i) {
    const S v = load<S>(m[i]);
    p.nan |= v != v;
    if (v > p.value) {
      p.value = v;
      p.index = i;
    }
  }
  return p;
}

#ifdef FASTLMK_AVX2
// float32 maps: a max-only pass (four independent 8-lane vmaxps chains and a NaN flag, as fast as a plain
// reduction), then the first position equal to the maximum, searched 8 lanes at a time in the cached map.
template <>
Peak<float> scan<float, float>(const float* m, int64_t n) {
  if (n < 32) {
    Peak<float> p{m[0], 0, m[0] != m[0]};
    for (int64_t i = 1; i < n; ++i) {
      p.nan |= m[i] != m[i];
      if (m[i] > p.value) p.value = m[i], p.index = i;
    }
    return p;
  }
  __m256 acc[4], nan = _mm256_setzero_ps();
  for (int l = 0; l < 4; ++l) {
    acc[l] = _mm256_loadu_ps(m + 8 * l);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(acc[l], acc[l], _CMP_UNORD_Q));
  }
  int64_t i = 32;
  for (; i + 32 <= n; i += 32)
    for (int l = 0; l < 4; ++l) {
      const __m256 v = _mm256_loadu_ps(m + i + 8 * l);
      acc[l] = _mm256_max_ps(acc[l], v);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(acc[0], acc[1]), _mm256_max_ps(acc[2], acc[3])));
  float top = lanes[0];
  for (int l = 1; l < 8; ++l) top = lanes[l] > top ? lanes[l] : top;
  bool has_nan = _mm256_movemask_ps(nan) != 0;
  for (; i < n; ++i) {
    has_nan |= m[i] != m[i];
    top = m[i] > top ? m[i] : top;
  }
  if (has_nan) return {top, 0, true};
  const __m256 target = _mm256_set1_ps(top);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(m + j), target, _CMP_EQ_OQ));
    if (hit) {
      j += __builtin_ctz(unsigned(hit));
      return {m[j], j, false};
    }
  }
  while (m[j] != top) ++j;
  return {m[j], j, false};
}
#endif

// The flip test (FlipArgs): the column of the flipped map that lands on column j, and the flipped channel of
// channel ch.
inline int64_t flip_column(int64_t j, int64_t W, bool shift) { return shift ? W - std::max<int64_t>(j, 1) : W - 1 - j; }
inline int64_t flip_channel(const FlipArgs& f, int64_t ch, int64_t k_per_batch) {
  const int64_t k = ch % k_per_batch;
  return ch - k + (f.flip_index ? f.flip_index[k] : k);
}

// The channel being decoded: its map, size and first maximum at (x, y). In the flip test (f, the flipped
// channel) the map read is the average of m and f at the mirrored column (flip_column), in registers.
template <class S, class T>
struct Map {
  const T* m;
  int64_t H, W, x, y;
  const T* f = nullptr;
  bool shift = false;
  S at(int64_t i, int64_t j) const {
    const S v = load<S>(m[i * W + j]);
    return f ? (v + load<S>(f[i * W + flip_column(j, W, shift)])) * S(0.5) : v;
  }
};

// scan() of a flip-test map: the first maximum of the average, computed as it is read.
template <class S, class T>
Peak<S> scan_average_any(const Map<S, T>& c) {
  Peak<S> p{c.at(0, 0), 0, false};
  p.nan = p.value != p.value;
  for (int64_t i = 0; i < c.H; ++i)
    for (int64_t j = 0; j < c.W; ++j) {
      const S v = c.at(i, j);
      p.nan |= v != v;
      if (v > p.value) p.value = v, p.index = i * c.W + j;
    }
  return p;
}

template <class S, class T>
Peak<S> scan_average(const Map<S, T>& c) { return scan_average_any(c); }

#ifdef FASTLMK_AVX2
// float32, rows of at least 8: as scan(), a max-only pass (four vmaxps chains over the sums m + mirror, whose
// maximum halved is the average's, and a NaN flag), then the first position where the average equals it, in
// the maps the first pass left in cache. The 8 mirrored columns of a block are one load, reversed in the
// register (with the shift, the first 8 read W-1, W-1, W-2, .., W-7); the row tails (W mod 8) are scalar.
template <bool kShift>
Peak<float> scan_average_avx2(const Map<float, float>& c) {
  const int64_t H = c.H, W = c.W;
  const __m256i reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  const __m256i first = _mm256_setr_epi32(7, 7, 6, 5, 4, 3, 2, 1);
  auto sum = [&](int64_t i, int64_t j) {  // m + mirror at columns j..j+7 of row i
    const float* mirror = c.f + i * W;
    const __m256 back = !kShift ? _mm256_permutevar8x32_ps(_mm256_loadu_ps(mirror + W - 8 - j), reverse)
                        : j == 0 ? _mm256_permutevar8x32_ps(_mm256_loadu_ps(mirror + W - 8), first)
                                 : _mm256_permutevar8x32_ps(_mm256_loadu_ps(mirror + W - 7 - j), reverse);
    return _mm256_add_ps(_mm256_loadu_ps(c.m + i * W + j), back);
  };
  const __m256 lowest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 acc0 = lowest, acc1 = lowest, acc2 = lowest, acc3 = lowest, nan8 = _mm256_setzero_ps();
  float top = -std::numeric_limits<float>::infinity();
  bool nan = false;
  // the mirrored rows are read backwards, which the hardware prefetcher follows poorly: prefetch both maps
  // about 4 KB ahead, one line in 16 floats
  const int64_t ahead = std::max<int64_t>(1, 1024 / W) * W;
  for (int64_t i = 0; i < H; ++i) {
    if ((i + 1) * W + ahead <= H * W)
      for (int64_t j = 0; j < W; j += 16) {
        _mm_prefetch(reinterpret_cast<const char*>(c.m + i * W + ahead + j), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c.f + i * W + ahead + j), _MM_HINT_T0);
      }
    int64_t j = 0;
    for (; j + 32 <= W; j += 32) {
      const __m256 v0 = sum(i, j), v1 = sum(i, j + 8), v2 = sum(i, j + 16), v3 = sum(i, j + 24);
      acc0 = _mm256_max_ps(acc0, v0);
      acc1 = _mm256_max_ps(acc1, v1);
      acc2 = _mm256_max_ps(acc2, v2);
      acc3 = _mm256_max_ps(acc3, v3);
      // unordered: either is NaN
      nan8 = _mm256_or_ps(nan8, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
    }
    for (; j + 8 <= W; j += 8) {
      const __m256 v = sum(i, j);
      acc0 = _mm256_max_ps(acc0, v);
      nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    for (; j < W; ++j) {
      const float v = c.at(i, j);
      nan |= v != v;
      top = v > top ? v : top;
    }
  }
  if (nan || _mm256_movemask_ps(nan8)) return {0.0f, 0, true};
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(acc0, acc1), _mm256_max_ps(acc2, acc3)));
  for (int l = 0; l < 8; ++l) top = lanes[l] * 0.5f > top ? lanes[l] * 0.5f : top;  // halving is monotone
  const __m256 target = _mm256_set1_ps(top), half = _mm256_set1_ps(0.5f);
  for (int64_t i = 0; i < H; ++i) {
    int64_t j = 0;
    for (; j + 8 <= W; j += 8) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_mul_ps(sum(i, j), half), target, _CMP_EQ_OQ));
      if (hit) return {top, i * W + j + __builtin_ctz(unsigned(hit)), false};
    }
    for (; j < W; ++j)
      if (c.at(i, j) == top) return {top, i * W + j, false};
  }
  return {top, 0, false};  // not reached: the maximum is one of the values
}

template <>
Peak<float> scan_average<float, float>(const Map<float, float>& c) {
  if (c.W < 8 || c.H * c.W >= (int64_t(1) << 31)) return scan_average_any(c);
  return c.shift ? scan_average_avx2<true>(c) : scan_average_avx2<false>(c);
}
#endif

// 0.25 * sign(right - left) per axis, interior pixels only.
template <class S, class T>
void quarter(const Map<S, T>& c, S& dx, S& dy) {
  auto step = [](S lo, S hi) { return S(0.25) * S((hi > lo) - (hi < lo)); };
  if (c.x >= 1 && c.x <= c.W - 2) dx = step(c.at(c.y, c.x - 1), c.at(c.y, c.x + 1));
  if (c.y >= 1 && c.y <= c.H - 2) dy = step(c.at(c.y - 1, c.x), c.at(c.y + 1, c.x));
}

// A quarter pixel toward the second maximum: the first maximum of the other pixels (two vector scans).
template <class S, class T>
void wsm(const Map<S, T>& c, S& dx, S& dy) {
  const int64_t n = c.H * c.W, peak = c.y * c.W + c.x;
  if (n == 1) return;
  int64_t second;
  if (peak == 0 || peak == n - 1) {
    second = scan<S, T>(c.m + (peak == 0), n - 1).index + (peak == 0);
  } else {
    const Peak<S> before = scan<S, T>(c.m, peak), after = scan<S, T>(c.m + peak + 1, n - peak - 1);
    second = after.value > before.value ? after.index + peak + 1 : before.index;
  }
  const S ex = S(second % c.W - c.x), ey = S(second / c.W - c.y), norm = std::sqrt(ex * ex + ey * ey);
  dx = S(0.25) * ex / norm;
  dy = S(0.25) * ey / norm;
}

// Vertex of the parabola through (-1, lo), (0, mid), (1, hi), clamped to [-0.5, 0.5]; 0 when flat or
// when one of the three is infinite.
template <class S>
S parabola_axis(S lo, S mid, S hi) {
  const S denom = lo - S(2) * mid + hi;
  if (denom == S(0) || !std::isfinite(denom)) return S(0);  // flat, or an infinite value among the three
  return std::min(S(0.5), std::max(S(-0.5), S(0.5) * (lo - hi) / denom));
}

template <class S, class T>
void parabola(const Map<S, T>& c, S& dx, S& dy) {
  const S mid = c.at(c.y, c.x);
  if (c.x >= 1 && c.x <= c.W - 2) dx = parabola_axis(c.at(c.y, c.x - 1), mid, c.at(c.y, c.x + 1));
  if (c.y >= 1 && c.y <= c.H - 2) dy = parabola_axis(c.at(c.y - 1, c.x), mid, c.at(c.y + 1, c.x));
}

// DARK (mmpose's refine_keypoints_dark) in double: blur the 5x5 patch around the peak (separable kernel g
// of size 2r+1, zero outside the map), rescale by peak / patch maximum, clamp at 1e-10, log, then one
// Newton step x -= H^-1 grad with central differences. Only for 1 < x < W-2, 1 < y < H-2 and det(H) != 0.
template <class S, class T>
void dark(const Map<S, T>& c, const double* g, int r, double* rows, S& dx, S& dy) {
  if (!(c.x > 1 && c.x < c.W - 2 && c.y > 1 && c.y < c.H - 2)) return;
  const int span = 5 + 2 * r;
  for (int a = 0; a < span; ++a) {  // horizontal pass: rows y-2-r .. y+2+r at columns x-2 .. x+2
    const int64_t i = c.y - 2 - r + a;
    for (int b = 0; b < 5; ++b) {
      double acc = 0;
      if (i >= 0 && i < c.H)
        for (int t = -r; t <= r; ++t) {
          const int64_t j = c.x - 2 + b + t;
          if (j >= 0 && j < c.W) acc += g[t + r] * double(c.at(i, j));
        }
      rows[a * 5 + b] = acc;
    }
  }
  double L[5][5], top = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < 5; ++a)  // vertical pass
    for (int b = 0; b < 5; ++b) {
      double acc = 0;
      for (int t = 0; t <= 2 * r; ++t) acc += g[t] * rows[(a + t) * 5 + b];
      L[a][b] = acc;
      top = std::max(top, acc);
    }
  const double scale = top > 0 ? double(c.at(c.y, c.x)) / top : 1.0;
  for (auto& row : L)
    for (double& v : row) v = std::log(std::max(v * scale, 1e-10));
  const double gx = 0.5 * (L[2][3] - L[2][1]), gy = 0.5 * (L[3][2] - L[1][2]);
  const double hxx = 0.25 * (L[2][4] - 2 * L[2][2] + L[2][0]), hyy = 0.25 * (L[4][2] - 2 * L[2][2] + L[0][2]);
  const double hxy = 0.25 * (L[3][3] - L[1][3] - L[3][1] + L[1][1]);
  const double det = hxx * hyy - hxy * hxy;
  if (det == 0) return;
  dx = S(-(hyy * gx - hxy * gy) / det);
  dy = S(-(hxx * gy - hxy * gx) / det);
}

// Mean of the pixel centres in the (2r+1)^2 window around the peak, weighted by max(h, 0).
template <class S, class T>
void local_softargmax(const Map<S, T>& c, int r, S& dx, S& dy) {
  S sw = 0, sx = 0, sy = 0;
  for (int64_t i = std::max<int64_t>(c.y - r, 0); i <= std::min<int64_t>(c.y + r, c.H - 1); ++i)
    for (int64_t j = std::max<int64_t>(c.x - r, 0); j <= std::min<int64_t>(c.x + r, c.W - 1); ++j) {
      const S v = std::max(c.at(i, j), S(0));
      sw += v;
      sx += v * S(j - c.x);
      sy += v * S(i - c.y);
    }
  if (sw > S(0)) dx = sx / sw, dy = sy / sw;
}

// A lower bound of the k-th largest value of the map: the k-th largest of the smallest window around the
// peak holding at least k pixels (any k pixels bound it from below). `buf` is scratch.
template <class S, class T>
S kth_bound(const Map<S, T>& c, int k, std::vector<std::pair<S, int64_t>>& buf) {
  buf.clear();
  for (int64_t r = 0;; ++r) {
    const int64_t i0 = std::max<int64_t>(c.y - r, 0), i1 = std::min<int64_t>(c.y + r, c.H - 1);
    const int64_t j0 = std::max<int64_t>(c.x - r, 0), j1 = std::min<int64_t>(c.x + r, c.W - 1);
    if ((i1 - i0 + 1) * (j1 - j0 + 1) < k) continue;
    for (int64_t i = i0; i <= i1; ++i)
      for (int64_t j = j0; j <= j1; ++j) buf.push_back({c.at(i, j), 0});
    break;
  }
  std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(),
                   [](const std::pair<S, int64_t>& a, const std::pair<S, int64_t>& b) { return a.first > b.first; });
  return buf[k - 1].first;
}

// H3R: softmax over the k largest values (ties: lower index first) of their pixel centres. Small k keeps
// the set sorted during one scan in runs of 16 pixels; a run is skipped after one vector compare when none
// of its pixels can enter (below the bound of kth_bound, or not above the set's last value once it is
// full). Large k partially sorts the indices.
template <class S, class T>
void topk(const Map<S, T>& c, int k, std::vector<std::pair<S, int64_t>>& top, S& x, S& y) {
  const int64_t n = c.H * c.W;
  if (k <= 32) {
    const S bound = kth_bound(c, k, top);
    top.clear();
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
      const int64_t i1 = std::min(n, i0 + 16);
      const bool full = int(top.size()) == k;
      const S t = full ? top.back().first : bound;
      int hits = 0;
      if (full) {
#pragma omp simd reduction(+ : hits)
        for (int64_t i = i0; i < i1; ++i) hits += load<S>(c.m[i]) > t;
      } else {
#pragma omp simd reduction(+ : hits)
        for (int64_t i = i0; i < i1; ++i) hits += load<S>(c.m[i]) >= t;
      }
      if (hits == 0) continue;
      for (int64_t i = i0; i < i1; ++i) {
        const S v = load<S>(c.m[i]);
        if (int(top.size()) == k ? !(v > top.back().first) : !(v >= bound)) continue;
        if (int(top.size()) == k) top.pop_back();
        auto pos = std::upper_bound(top.begin(), top.end(), v,
                                    [](S val, const std::pair<S, int64_t>& e) { return val > e.first; });
        top.insert(pos, {v, i});
      }
    }
  } else {
    std::vector<int64_t> idx(n);
    for (int64_t i = 0; i < n; ++i) idx[i] = i;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
      const S va = load<S>(c.m[a]), vb = load<S>(c.m[b]);
      return va > vb || (va == vb && a < b);
    });
    top.clear();
    for (int i = 0; i < k; ++i) top.push_back({load<S>(c.m[idx[i]]), idx[i]});
  }
  S sw = 0, sx = 0, sy = 0;
  for (const auto& e : top) {
    const S p = std::exp(e.first - top.front().first);
    sw += p;
    sx += p * S(e.second % c.W);
    sy += p * S(e.second / c.W);
  }
  x = sx / sw;
  y = sy / sw;
}

// out = (channel ch of maps + its flipped channel flipped back) / 2, in the compute dtype.
template <class S, class T>
void flip_average(const FlipArgs& f, const T* maps, int64_t ch, int64_t k_per_batch, int64_t H, int64_t W, S* out) {
  const T* m = maps + ch * H * W;
  const T* fm = static_cast<const T*>(f.flipped) + flip_channel(f, ch, k_per_batch) * H * W;
  const int64_t o = f.flip_shift ? 0 : 1;  // column j >= 1 reads W - o - j (flip_column); j = 0 reads W - 1
  for (int64_t i = 0; i < H; ++i) {
    const T* row = m + i * W;
    const T* mirror = fm + i * W + W - o;
    S* dst = out + i * W;
    dst[0] = (load<S>(row[0]) + load<S>(fm[i * W + W - 1])) * S(0.5);
#pragma omp simd
    for (int64_t j = 1; j < W; ++j) dst[j] = (load<S>(row[j]) + load<S>(mirror[-j])) * S(0.5);
  }
}

#ifdef FASTLMK_AVX2
// float32 maps: 8 columns at a time, the mirrored 8 loaded as one vector and reversed in the register.
template <>
void flip_average<float, float>(const FlipArgs& f, const float* maps, int64_t ch, int64_t k_per_batch, int64_t H,
                                int64_t W, float* out) {
  const float* m = maps + ch * H * W;
  const float* fm = static_cast<const float*>(f.flipped) + flip_channel(f, ch, k_per_batch) * H * W;
  const int64_t o = f.flip_shift ? 0 : 1;
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256i reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  for (int64_t i = 0; i < H; ++i) {
    const float* row = m + i * W;
    const float* mirror = fm + i * W + W - o;
    float* dst = out + i * W;
    dst[0] = (row[0] + fm[i * W + W - 1]) * 0.5f;
    int64_t j = 1;
    for (; j + 8 <= W; j += 8) {  // mirror[-j - 7 .. -j]: columns W - o - j - 7 >= 0 .. W - o - j <= W - 1
      const __m256 back = _mm256_permutevar8x32_ps(_mm256_loadu_ps(mirror - j - 7), reverse);
      _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(row + j), back), half));
    }
    for (; j < W; ++j) dst[j] = (row[j] + mirror[-j]) * 0.5f;
  }
}
#endif

// The scratch a thread decodes with: DARK's blurred rows, the top-k set and, in the flip test, the average.
template <class S>
struct Scratch {
  std::vector<double> rows;
  std::vector<std::pair<S, int64_t>> top;
  std::vector<S> average;
};

// Decodes channel ch of map m (the channel itself, or the flip average) into coords and scores; with
// `flipped` (the flipped channel, or null), of the average of the two, computed as they are read.
template <class S, class T>
void decode_channel(const DecodeArgs& a, const T* m, const T* flipped, int64_t ch, const double* g, int r,
                    Scratch<S>& s) {
  const int64_t H = a.h, W = a.w, n = H * W;
  const Map<S, T> c0{m, H, W, 0, 0, flipped, a.flip_shift};
  const Peak<S> p = flipped ? scan_average(c0) : scan<S, T>(m, n);
  const Map<S, T> c{m, H, W, p.index % W, p.index / W, flipped, a.flip_shift};
  S x = S(c.x), y = S(c.y), dx = 0, dy = 0;
  if (p.nan) {
    x = y = std::numeric_limits<S>::quiet_NaN();
  } else {
    switch (a.method) {
      case kQuarter: quarter(c, dx, dy); break;
      case kWsm: wsm(c, dx, dy); break;
      case kParabola: parabola(c, dx, dy); break;
      case kDark: dark(c, g, r, s.rows.data(), dx, dy); break;
      case kLocalSoftargmax: local_softargmax(c, a.window, dx, dy); break;
      case kTopk: topk(c, a.topk, s.top, x, y); break;
      case kOffset: {
        const S* off = static_cast<const S*>(a.offsets) + 2 * ch * n;
        dx = off[p.index];
        dy = off[n + p.index];
        if (a.flipped) {  // the flipped image's offset at the mirrored pixel, its x negated
          const S* f = static_cast<const S*>(a.flipped_offsets) + 2 * flip_channel(a, ch, a.k_per_batch) * n;
          const int64_t q = c.y * W + flip_column(c.x, W, a.flip_shift);
          dx = (dx - f[q]) * S(0.5);
          dy = (dy + f[n + q]) * S(0.5);
        }
        break;
      }
      default: break;
    }
    x += dx;
    y += dy;
  }
  if (a.affine) {
    const S* A = static_cast<const S*>(a.affine) + 6 * (ch / a.k_per_batch);
    const S ax = A[0] * x + A[1] * y + A[2], ay = A[3] * x + A[4] * y + A[5];
    x = ax, y = ay;
  }
  S* coords = static_cast<S*>(a.coords);
  coords[2 * ch] = x;
  coords[2 * ch + 1] = y;
  static_cast<S*>(a.scores)[ch] = p.nan ? std::numeric_limits<S>::quiet_NaN() : p.value;
}

template <class S, class T>
void decode_impl(const DecodeArgs& a) {
  const T* maps = static_cast<const T*>(a.maps);
  const int64_t n = a.h * a.w;
  const int r = a.method == kDark ? (a.blur - 1) / 2 : 0;  // blur <= MAX_BLUR (checked in Python)
  std::vector<double> g(size_t(2 * r + 1));
  if (a.method == kDark && r <= 3) {  // DARK's kernel: OpenCV's for sigma = 0, a fixed table up to size 7
    static const double kSmall[4][7] = {{1.0},
                                        {0.25, 0.5, 0.25},
                                        {0.0625, 0.25, 0.375, 0.25, 0.0625},
                                        {0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125}};
    for (int t = 0; t <= 2 * r; ++t) g[t] = kSmall[r][t];
  } else if (a.method == kDark) {  // else the Gaussian of sigma 0.3 (r - 1) + 0.8, normalised
    const double sd = 0.3 * (r - 1) + 0.8;
    double sum = 0;
    for (int t = -r; t <= r; ++t) sum += g[t + r] = std::exp(-double(t * t) / (2 * sd * sd));
    for (double& v : g) v /= sum;
  }
#pragma omp parallel num_threads(a.nthreads)
  {
    Scratch<S> s;
    s.rows.resize(size_t(5 * (5 + 2 * r)));
    if (a.flipped && (a.method == kWsm || a.method == kTopk)) s.average.resize(size_t(n));
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < a.bk; ++ch) {
      if (a.flipped && (a.method == kWsm || a.method == kTopk)) {
        // these rescan the map: the average of this channel, once, in the thread's cache
        flip_average(a, maps, ch, a.k_per_batch, a.h, a.w, s.average.data());
        decode_channel<S, S>(a, s.average.data(), nullptr, ch, g.data(), r, s);
      } else {
        const T* f = a.flipped ? static_cast<const T*>(a.flipped) + flip_channel(a, ch, a.k_per_batch) * n : nullptr;
        decode_channel<S, T>(a, maps + ch * n, f, ch, g.data(), r, s);
      }
    }
  }
}

// soft_argmax forward: coords = sum_p w_p (j_p, i_p); softmax w = exp(beta h - lse), stat = lse; relu
// w = relu(h) / S, stat = S (the map centre when S = 0; NaN coordinates when S is NaN). Row sums keep the
// accumulation short.
template <class S, class T>
void soft_argmax_channel(const SoftArgmaxArgs& a, const T* m, int64_t ch) {
  S* coords = static_cast<S*>(a.coords);
  S* stat = static_cast<S*>(a.stat);
  const int64_t H = a.h, W = a.w;
  const int w = int(W);  // 32-bit column indices convert to float in SIMD registers (64-bit ones do not)
  const S beta = S(a.beta);
  S top = -std::numeric_limits<S>::infinity();  // NaN is skipped here and propagates through vexp
  if (!a.relu) {
#pragma omp simd reduction(max : top)
    for (int64_t p = 0; p < H * W; ++p) {
      const S v = load<S>(m[p]);
      top = v > top ? v : top;
    }
  }
  S total = 0, sx = 0, sy = 0;
  for (int64_t i = 0; i < H; ++i) {
    S rs = 0, rx = 0;
    const T* row = m + i * W;
    if (a.relu) {
#pragma omp simd reduction(+ : rs, rx)
      for (int j = 0; j < w; ++j) {
        const S v = load<S>(row[j]), r = v > S(0) || v != v ? v : S(0);
        rs += r;
        rx += r * S(j);
      }
    } else {
#pragma omp simd reduction(+ : rs, rx)
      for (int j = 0; j < w; ++j) {
        const S e = vexp(beta * (load<S>(row[j]) - top));
        rs += e;
        rx += e * S(j);
      }
    }
    total += rs;
    sx += rx;
    sy += rs * S(i);
  }
  if (a.relu && total == S(0)) {
    coords[2 * ch] = S(W - 1) / 2;
    coords[2 * ch + 1] = S(H - 1) / 2;
  } else {
    coords[2 * ch] = sx / total;
    coords[2 * ch + 1] = sy / total;
  }
  stat[ch] = a.relu ? total : beta * top + std::log(total);
}

// soft_argmax forward: coords = sum_p w_p (j_p, i_p); softmax w = exp(beta h - lse), stat = lse; relu
// w = relu(h) / S, stat = S (the map centre when S = 0). Row sums keep the accumulation short. In the flip
// test each thread averages one channel at a time into its scratch.
template <class S, class T>
void soft_argmax_forward_impl(const SoftArgmaxArgs& a) {
  const T* maps = static_cast<const T*>(a.maps);
  const int64_t n = a.h * a.w;
#pragma omp parallel num_threads(a.nthreads)
  {
    std::vector<S> average(a.flipped ? size_t(n) : 0);
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < a.bk; ++ch) {
      if (a.flipped) {
        flip_average(a, maps, ch, a.k_per_batch, a.h, a.w, average.data());
        soft_argmax_channel<S, S>(a, average.data(), ch);
      } else {
        soft_argmax_channel<S, T>(a, maps + ch * n, ch);
      }
    }
  }
}

// soft_argmax backward: dL/dh = beta p (g . (pos - coords) + g_stat) (softmax, p = exp(beta h - lse)) or
// [h > 0] (g . (pos - coords) / S + g_stat) (relu; 0 when S = 0, NaN when S is NaN).
template <class S, class T>
void soft_argmax_backward_impl(const SoftArgmaxArgs& a) {
  const T* maps = static_cast<const T*>(a.maps);
  const S* coords = static_cast<const S*>(a.coords);
  const S* stat = static_cast<const S*>(a.stat);
  const S* gc = static_cast<const S*>(a.grad_coords);
  const S* gs = static_cast<const S*>(a.grad_stat);
  T* out = static_cast<T*>(a.grad_maps);
  const int64_t H = a.h, W = a.w;
  const int w = int(W);
  const S beta = S(a.beta);
#pragma omp parallel for schedule(static) num_threads(a.nthreads)
  for (int64_t ch = 0; ch < a.bk; ++ch) {
    const T* m = maps + ch * H * W;
    T* o = out + ch * H * W;
    const S gx = gc[2 * ch], gy = gc[2 * ch + 1], g_stat = gs[ch], x = coords[2 * ch], y = coords[2 * ch + 1];
    const S s = stat[ch];
    const bool ok = s != S(0);  // S = 0: no gradient; NaN passes
    const S inv = ok ? S(1) / s : S(0), g_stat_ok = ok ? g_stat : S(0);
    for (int64_t i = 0; i < H; ++i) {
      const S row = gy * (S(i) - y) - gx * x;  // g . (pos - coords) = gx j + row
      const T* mi = m + i * W;
      T* oi = o + i * W;
      if (a.relu) {
#pragma omp simd
        for (int j = 0; j < w; ++j)
          store(oi[j], load<S>(mi[j]) > S(0) ? (gx * S(j) + row) * inv + g_stat_ok : S(0));
      } else {
#pragma omp simd
        for (int j = 0; j < w; ++j)
          store(oi[j], beta * vexp(beta * load<S>(mi[j]) - s) * (gx * S(j) + row + g_stat));
      }
    }
  }
}

template <class S, class T>
void decode_simcc_impl(const SimccDecodeArgs& a) {
  const T* xs = static_cast<const T*>(a.x);
  const T* ys = static_cast<const T*>(a.y);
  S* locs = static_cast<S*>(a.locs);
  S* scores = static_cast<S*>(a.scores);
  const S nan = std::numeric_limits<S>::quiet_NaN();
#pragma omp parallel for schedule(static) num_threads(a.nthreads)
  for (int64_t c = 0; c < a.bk; ++c) {
    const Peak<S> px = scan<S, T>(xs + c * a.wx, a.wx), py = scan<S, T>(ys + c * a.hy, a.hy);
    locs[2 * c] = px.nan ? nan : S(px.index);
    locs[2 * c + 1] = py.nan ? nan : S(py.index);
    scores[c] = px.nan || py.nan ? nan : std::min(px.value, py.value);
  }
}

struct SimccDecodeOp {
  const SimccDecodeArgs& a;
  template <class S, class T>
  void run() const { decode_simcc_impl<S, T>(a); }
};

struct DecodeOp {
  const DecodeArgs& a;
  template <class S, class T>
  void run() const { decode_impl<S, T>(a); }
};

struct SoftArgmaxOp {
  const SoftArgmaxArgs& a;
  bool backward;
  template <class S, class T>
  void run() const { backward ? soft_argmax_backward_impl<S, T>(a) : soft_argmax_forward_impl<S, T>(a); }
};

}  // namespace

void decode(const DecodeArgs& a) { by_dtype(a.compute_dtype, a.map_dtype, DecodeOp{a}); }
void soft_argmax_forward(const SoftArgmaxArgs& a) { by_dtype(a.compute_dtype, a.map_dtype, SoftArgmaxOp{a, false}); }
void soft_argmax_backward(const SoftArgmaxArgs& a) { by_dtype(a.compute_dtype, a.map_dtype, SoftArgmaxOp{a, true}); }
void decode_simcc(const SimccDecodeArgs& a) { by_dtype(a.compute_dtype, a.map_dtype, SimccDecodeOp{a}); }

}  // namespace FASTLMK_ISA_NS
}  // namespace fastlmk
