// Splat kernels, compiled once per instruction set: the including file defines FASTLMK_ISA_NS (and, for
// AVX2, a target pragma and FASTLMK_AVX2).
//
// Forward, two passes:
//  1. z-buffer, one batch per OpenMP iteration: each cell of the (H + 2m) x (W + 2m) grid keeps the vertex of
//     smallest depth, scanning vertices in index order with a strict `<` (ties to the lowest index); a vertex
//     is visible when it owns its cell.
//  2. accumulation, one (batch, band of rows) per iteration: the band adds the separable Gaussian window of
//     each visible vertex to its rows, in vertex order. Every pixel sums its contributions in that order
//     whatever the band split, so results do not depend on the thread count.
// Backward: one vertex per iteration gathers G / D and G V / D over its window (no scatter, no atomics).
#ifndef FASTLMK_ISA_NS
#error "define FASTLMK_ISA_NS before including splat_kernels.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "splat.h"

namespace fastlmk {
namespace FASTLMK_ISA_NS {
namespace {

// The in-window candidates of one axis inside [lo, hi): `c = floor(x - r) + k` (k < n) with |c - x| <= r,
// which are contiguous. Writes their Gaussian factors exp(-(c - x)^2 inv) to `e` and the first one to
// `first`; returns how many there are.
template <class T>
int64_t span(T x, T r, int64_t n, int64_t lo, int64_t hi, T inv, int64_t* first, T* e) {
  const T c0 = std::floor(x - r);
  int64_t count = 0;
  for (int64_t k = 0; k < n; ++k) {
    const T c = c0 + T(k);
    const T d = c - x;
    if (std::fabs(d) <= r && c >= T(lo) && c < T(hi)) {
      if (count == 0) *first = int64_t(c);
      e[count++] = std::exp(-d * d * inv);
    }
  }
  return count;
}

// Index of the z-buffer cell of a vertex, or -1 when it is non-finite or too far from the map to reach it.
template <class T>
int64_t cell(T x, T y, T d, int64_t h, int64_t w, int64_t m) {
  if (!(std::isfinite(x) && std::isfinite(y) && std::isfinite(d))) return -1;
  const T cx = std::floor(x + T(0.5)), cy = std::floor(y + T(0.5));
  if (!(cx >= T(-m) && cx <= T(w - 1 + m) && cy >= T(-m) && cy <= T(h - 1 + m))) return -1;
  return (int64_t(cy) + m) * (w + 2 * m) + (int64_t(cx) + m);
}

template <class T>
void forward(const SplatArgs& a) {
  const T* xy = static_cast<const T*>(a.xy);
  const T* depth = static_cast<const T*>(a.depth);
  const T* value = static_cast<const T*>(a.value);
  T* image = static_cast<T*>(a.image);
  T* wsum = static_cast<T*>(a.weight_sum);
  const int64_t b = a.b, q = a.q, h = a.h, w = a.w, m = a.margin, n = a.candidates;
  const int64_t cells = (h + 2 * m) * (w + 2 * m);
  const T r = T(a.radius), inv = T(1) / (T(2) * T(a.sigma) * T(a.sigma));

#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(a.nthreads, std::max<int64_t>(b, 1))))
  {
    std::vector<int32_t> owner(static_cast<size_t>(cells));
    std::vector<int64_t> cell_of(static_cast<size_t>(q));
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < b; ++bi) {
      std::fill(owner.begin(), owner.end(), -1);
      const T* z = depth + bi * q;
      for (int64_t i = 0; i < q; ++i) {
        const int64_t c = cell(xy[2 * (bi * q + i)], xy[2 * (bi * q + i) + 1], z[i], h, w, m);
        cell_of[i] = c;
        if (c >= 0 && (owner[c] < 0 || z[i] < z[owner[c]])) owner[c] = int32_t(i);
      }
      uint8_t* vis = a.visible + bi * q;
      for (int64_t i = 0; i < q; ++i) vis[i] = cell_of[i] >= 0 && owner[cell_of[i]] == i;
    }
  }

  // bands: enough (batch, band) tasks for every thread, bands of whole rows
  const int64_t bands = std::min<int64_t>(h, std::max<int64_t>(1, (2 * a.nthreads + b - 1) / std::max<int64_t>(b, 1)));
  const int64_t rows = (h + bands - 1) / bands;
#pragma omp parallel num_threads(a.nthreads)
  {
    std::vector<T> ex(static_cast<size_t>(n)), ey(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < b * bands; ++task) {
      const int64_t bi = task / bands, lo = (task % bands) * rows, hi = std::min(h, lo + rows);
      if (lo >= hi) continue;
      T* num = image + bi * h * w;
      T* den = wsum + bi * h * w;
      std::fill(num + lo * w, num + hi * w, T(0));
      std::fill(den + lo * w, den + hi * w, T(0));
      for (int64_t i = bi * q; i < (bi + 1) * q; ++i) {
        if (!a.visible[i]) continue;
        const T x = xy[2 * i], y = xy[2 * i + 1], val = value[i];
        int64_t v0 = 0, u0 = 0;
        const int64_t nv = span(y, r, n, lo, hi, inv, &v0, ey.data());
        if (nv == 0) continue;
        const int64_t nu = span(x, r, n, 0, w, inv, &u0, ex.data());
        for (int64_t kv = 0; kv < nv; ++kv) {
          T* nrow = num + (v0 + kv) * w + u0;
          T* drow = den + (v0 + kv) * w + u0;
          const T e = ey[kv];
          for (int64_t ku = 0; ku < nu; ++ku) {
            const T wt = e * ex[ku];
            nrow[ku] += val * wt;
            drow[ku] += wt;
          }
        }
      }
      for (int64_t p = lo * w; p < hi * w; ++p) num[p] = den[p] > T(0) ? num[p] / den[p] : T(0);
    }
  }
}

template <class T>
void backward(const SplatArgs& a) {
  const T* xy = static_cast<const T*>(a.xy);
  const T* value = static_cast<const T*>(a.value);
  const T* image = static_cast<const T*>(a.image);
  const T* wsum = static_cast<const T*>(a.weight_sum);
  const T* grad = static_cast<const T*>(a.grad_image);
  T* gxy = static_cast<T*>(a.grad_xy);
  T* gval = static_cast<T*>(a.grad_value);
  const int64_t q = a.q, h = a.h, w = a.w, n = a.candidates;
  const T r = T(a.radius), s2 = T(a.sigma) * T(a.sigma), inv = T(1) / (T(2) * s2);
#pragma omp parallel num_threads(a.nthreads)
  {
    std::vector<T> ex(static_cast<size_t>(n)), ey(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < a.b * q; ++i) {
      T sv = 0, sx = 0, sy = 0;
      if (a.visible[i]) {
        const T x = xy[2 * i], y = xy[2 * i + 1], val = value[i];
        const int64_t base = (i / q) * h * w;
        int64_t u0 = 0, v0 = 0;
        const int64_t nu = span(x, r, n, 0, w, inv, &u0, ex.data());
        const int64_t nv = span(y, r, n, 0, h, inv, &v0, ey.data());
        for (int64_t kv = 0; kv < nv; ++kv) {
          const T dy = T(v0 + kv) - y;
          const int64_t row = base + (v0 + kv) * w + u0;
          for (int64_t ku = 0; ku < nu; ++ku) {
            const T d = wsum[row + ku];
            if (!(d > T(0))) continue;
            const T t = grad[row + ku] / d;
            const T wt = ey[kv] * ex[ku];
            const T c = wt * (val * t - t * image[row + ku]);
            sv += wt * t;
            sx += c * (T(u0 + ku) - x);
            sy += c * dy;
          }
        }
      }
      gval[i] = sv;
      gxy[2 * i] = sx / s2;
      gxy[2 * i + 1] = sy / s2;
    }
  }
}

template <template <class> class F>
void by_float(int dtype, const SplatArgs& a) {
  if (dtype == kFloat32) return F<float>::run(a);
  if (dtype == kFloat64) return F<double>::run(a);
  throw std::invalid_argument("fastlmk splat: dtype must be float32 or float64");
}

template <class T> struct Forward { static void run(const SplatArgs& a) { forward<T>(a); } };
template <class T> struct Backward { static void run(const SplatArgs& a) { backward<T>(a); } };

}  // namespace

void splat_forward(const SplatArgs& a) { by_float<Forward>(a.dtype, a); }
void splat_backward(const SplatArgs& a) { by_float<Backward>(a.dtype, a); }

}  // namespace FASTLMK_ISA_NS
}  // namespace fastlmk
