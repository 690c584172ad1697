// Heatmap-encoding kernels, compiled once per instruction set: the including file defines FASTLMK_ISA_NS
// (and, for AVX2, a target pragma). Parallel over the B*K channels with OpenMP; each channel is independent,
// so results do not depend on the thread count.
//
// Per channel: zero fill, then write only the keypoint's window |j - cx| <= r, |i - cy| <= r. The Gaussian
// is evaluated separably (exp(-dx^2/2s^2) * exp(-dy^2/2s^2)). The fused loss never stores the target: each
// row of the target is formed in a small buffer (zeros outside the window) and consumed at once.
#ifndef FASTLMK_ISA_NS
#error "define FASTLMK_ISA_NS before including encode_kernels.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "encode.h"

namespace fastlmk {
namespace FASTLMK_ISA_NS {
namespace {

// Pixels p in [0, n) with |p - c| <= r (the reference's exact predicate); empty when lo > hi.
template <class S>
inline void axis_window(S c, S r, int64_t n, int64_t& lo, int64_t& hi) {
  lo = 0;
  hi = -1;
  const S a = std::ceil(c - r), b = std::floor(c + r);
  if (!(a <= b) || b < S(0) || a > S(n - 1)) return;
  lo = a < S(0) ? 0 : int64_t(a);
  hi = b > S(n - 1) ? n - 1 : int64_t(b);
  // ceil/floor of c -/+ r may round differently from |p - c|: settle the ends on the predicate itself.
  while (lo > 0 && std::abs(S(lo - 1) - c) <= r) --lo;
  while (lo <= hi && !(std::abs(S(lo) - c) <= r)) ++lo;
  while (hi < n - 1 && std::abs(S(hi + 1) - c) <= r) ++hi;
  while (hi >= lo && !(std::abs(S(hi) - c) <= r)) --hi;
}

// The window of one channel and its (weighted) separable Gaussian profiles.
template <class S>
struct Channel {
  bool empty = true;
  int64_t i0 = 0, i1 = -1, j0 = 0, j1 = -1;
  S cx = 0, cy = 0;

  Channel(S x, S y, S r, bool rounded, int64_t h, int64_t w) {
    if (!std::isfinite(x) || !std::isfinite(y)) return;
    cx = rounded ? std::floor(x + S(0.5)) : x;
    cy = rounded ? std::floor(y + S(0.5)) : y;
    axis_window(cx, r, w, j0, j1);
    axis_window(cy, r, h, i0, i1);
    empty = j0 > j1 || i0 > i1;
  }

  // gx[j] = exp(-(j - cx)^2 / 2s^2) on [j0, j1]; gy[i] likewise on [i0, i1], times `scale`.
  void profiles(S sigma, S scale, S* gx, S* gy) const {
    const S k = S(-0.5) / (sigma * sigma);
    for (int64_t j = j0; j <= j1; ++j) gx[j] = std::exp((S(j) - cx) * (S(j) - cx) * k);
    for (int64_t i = i0; i <= i1; ++i) gy[i] = std::exp((S(i) - cy) * (S(i) - cy) * k) * scale;
  }
};

template <class S, class T>
void render_impl(const RenderArgs& a) {
  const S* kp = static_cast<const S*>(a.kp);
  const S* param = static_cast<const S*>(a.param);
  const S* weight = static_cast<const S*>(a.weight);
  T* out = static_cast<T*>(a.out);
  const int64_t H = a.h, W = a.w, plane = H * W, planes = a.kind == kOffsets ? 2 : 1;
#pragma omp parallel num_threads(a.nthreads)
  {
    S* gx = static_cast<S*>(std::malloc(sizeof(S) * size_t(W + H)));
    S* gy = gx + W;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < a.bk; ++c) {
      T* o = out + c * planes * plane;
      std::memset(static_cast<void*>(o), 0, sizeof(T) * size_t(planes * plane));
      const S wt = weight ? weight[c] : S(1), x = kp[2 * c], y = kp[2 * c + 1], p = param[c];
      if (wt == S(0)) continue;
      const S r = a.kind == kGaussian ? S(a.radius) * p : p;
      const Channel<S> ch(x, y, r, a.kind == kGaussian && a.rounded, H, W);
      if (ch.empty) continue;
      if (a.kind == kGaussian) {
        ch.profiles(p, wt, gx, gy);
        for (int64_t i = ch.i0; i <= ch.i1; ++i)
          for (int64_t j = ch.j0; j <= ch.j1; ++j) store(o[i * W + j], gy[i] * gx[j]);
      } else if (a.kind == kDisc) {
        for (int64_t i = ch.i0; i <= ch.i1; ++i)
          for (int64_t j = ch.j0; j <= ch.j1; ++j) {
            const S dx = S(j) - x, dy = S(i) - y;
            if (dx * dx + dy * dy <= r * r) store(o[i * W + j], wt);
          }
      } else {  // offsets: (x - j, y - i) in two planes; the weight only masks
        for (int64_t i = ch.i0; i <= ch.i1; ++i)
          for (int64_t j = ch.j0; j <= ch.j1; ++j) {
            store(o[i * W + j], x - S(j));
            store(o[plane + i * W + j], y - S(i));
          }
      }
    }
    std::free(gx);
  }
}

// Element losses l(p, t) and dl/dp; q = {alpha, omega, epsilon, theta} (used by the Adaptive Wing loss).
template <class S>
struct Mse {
  static S value(S p, S t, const S*) { return (p - t) * (p - t); }
  static S grad(S p, S t, const S*) { return S(2) * (p - t); }
};

template <class S>
struct BceLogits {  // binary cross-entropy on logits, the stable form
  static S value(S p, S t, const S*) { return std::max(p, S(0)) - p * t + std::log1p(std::exp(-std::abs(p))); }
  static S grad(S p, S t, const S*) { return S(1) / (S(1) + std::exp(-p)) - t; }
};

template <class S>
struct Awing {  // Adaptive Wing (Wang et al. 2019)
  // Linear part beyond theta: A * d - C, continuous with the log part.
  static void linear(S t, const S* q, S& A, S& C) {
    const S e = q[0] - t, u = q[3] / q[2], ue = std::pow(u, e);
    A = q[1] * e * std::pow(u, e - S(1)) / (q[2] * (S(1) + ue));
    C = q[3] * A - q[1] * std::log1p(ue);
  }
  static S value(S p, S t, const S* q) {
    const S d = std::abs(p - t);
    if (d < q[3]) return q[1] * std::log1p(std::pow(d / q[2], q[0] - t));
    S A, C;
    linear(t, q, A, C);
    return A * d - C;
  }
  static S grad(S p, S t, const S* q) {
    const S d = std::abs(p - t), sgn = S((p > t) - (p < t)), e = q[0] - t;
    if (d < q[3]) {
      const S u = d / q[2];
      return sgn * q[1] * e * std::pow(u, e - S(1)) / (q[2] * (S(1) + std::pow(u, e)));
    }
    S A, C;
    linear(t, q, A, C);
    return sgn * A;
  }
};

// Calls body(c, off, n, t, wt) over spans of each channel c that cover it in order: the n pixels from flat
// offset off, with t the target there, or t == nullptr where the target is 0 (rows outside the window),
// so most of the map is handled in long, vectorisable runs. Shared by the fused forward and backward.
template <class S, class Body>
void for_each_target_span(const LossArgs& a, Body body) {
  const S* kp = static_cast<const S*>(a.kp);
  const S* sigma = static_cast<const S*>(a.param);
  const S* weight = static_cast<const S*>(a.weight);
  const int64_t H = a.h, W = a.w;
#pragma omp parallel num_threads(a.nthreads)
  {
    S* buf = static_cast<S*>(std::calloc(size_t(2 * W + H), sizeof(S)));
    S *gx = buf, *gy = buf + W, *row = buf + W + H;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < a.bk; ++c) {
      const S wt = weight ? weight[c] : S(1), s = sigma[c];
      const Channel<S> ch(kp[2 * c], kp[2 * c + 1], S(a.radius) * s, a.rounded, H, W);
      const int64_t base = c * H * W;
      if (ch.empty) {
        body(c, base, H * W, static_cast<const S*>(nullptr), wt);
        continue;
      }
      ch.profiles(s, S(1), gx, gy);
      std::fill(row, row + W, S(0));
      if (ch.i0 > 0) body(c, base, ch.i0 * W, static_cast<const S*>(nullptr), wt);
      for (int64_t i = ch.i0; i <= ch.i1; ++i) {
        for (int64_t j = ch.j0; j <= ch.j1; ++j) row[j] = gy[i] * gx[j];
        body(c, base + i * W, W, static_cast<const S*>(row), wt);
      }
      if (ch.i1 < H - 1) body(c, base + (ch.i1 + 1) * W, (H - 1 - ch.i1) * W, static_cast<const S*>(nullptr), wt);
    }
    std::free(buf);
  }
}

// sum_j l(p[j], t[j]) over a span; t == nullptr means a zero target.
template <class S, class T, template <class> class L>
S span_loss_sum(const T* p, const S* t, int64_t n, const S* q) {
  S acc = 0;
  if (t) {
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; ++j) acc += L<S>::value(load<S>(p[j]), t[j], q);
  } else {
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; ++j) acc += L<S>::value(load<S>(p[j]), S(0), q);
  }
  return acc;
}

template <class S, class T, template <class> class L>
void loss_forward_impl(const LossArgs& a) {
  const T* pred = static_cast<const T*>(a.pred);
  T* out = static_cast<T*>(a.out);
  const S q[4] = {S(a.awing[0]), S(a.awing[1]), S(a.awing[2]), S(a.awing[3])};
  if (a.reduction == kNone) {
    for_each_target_span<S>(a, [&](int64_t, int64_t off, int64_t n, const S* t, S wt) {
      for (int64_t j = 0; j < n; ++j)
        store(out[off + j], wt * L<S>::value(load<S>(pred[off + j]), t ? t[j] : S(0), q));
    });
    return;
  }
  double* partial = static_cast<double*>(std::calloc(size_t(a.bk), sizeof(double)));
  if (!partial) throw std::bad_alloc();
  for_each_target_span<S>(a, [&](int64_t c, int64_t off, int64_t n, const S* t, S wt) {
    partial[c] += double(wt) * double(span_loss_sum<S, T, L>(pred + off, t, n, q));
  });
  double total = 0;  // fixed order: bitwise reproducible
  for (int64_t c = 0; c < a.bk; ++c) total += partial[c];
  std::free(partial);
  if (a.reduction == kMean) total /= double(a.bk * a.h * a.w);
  store(out[0], S(total));
}

template <class S, class T, template <class> class L>
void loss_backward_impl(const LossArgs& a) {
  const T* pred = static_cast<const T*>(a.pred);
  const T* go = static_cast<const T*>(a.grad_out);
  T* gp = static_cast<T*>(a.grad_pred);
  const S q[4] = {S(a.awing[0]), S(a.awing[1]), S(a.awing[2]), S(a.awing[3])};
  const bool per_pixel = a.reduction == kNone;
  S g = per_pixel ? S(0) : load<S>(go[0]);
  if (a.reduction == kMean) g = S(double(g) / double(a.bk * a.h * a.w));
  for_each_target_span<S>(a, [&](int64_t, int64_t off, int64_t n, const S* t, S wt) {
    const S gw = g * wt;
    if (per_pixel) {
      for (int64_t j = 0; j < n; ++j)
        store(gp[off + j], load<S>(go[off + j]) * wt * L<S>::grad(load<S>(pred[off + j]), t ? t[j] : S(0), q));
    } else if (t) {
      for (int64_t j = 0; j < n; ++j) store(gp[off + j], gw * L<S>::grad(load<S>(pred[off + j]), t[j], q));
    } else {
      for (int64_t j = 0; j < n; ++j) store(gp[off + j], gw * L<S>::grad(load<S>(pred[off + j]), S(0), q));
    }
  });
}

template <class S, class T>
void loss_dispatch(const LossArgs& a, bool backward) {
  switch (a.kind) {
    case kMse: return backward ? loss_backward_impl<S, T, Mse>(a) : loss_forward_impl<S, T, Mse>(a);
    case kBceLogits:
      return backward ? loss_backward_impl<S, T, BceLogits>(a) : loss_forward_impl<S, T, BceLogits>(a);
    case kAwing: return backward ? loss_backward_impl<S, T, Awing>(a) : loss_forward_impl<S, T, Awing>(a);
  }
  throw std::invalid_argument("fastlmk: unknown loss kind");
}

struct RenderOp {
  const RenderArgs& a;
  template <class S, class T>
  void run() const { render_impl<S, T>(a); }
};

struct LossOp {
  const LossArgs& a;
  bool backward;
  template <class S, class T>
  void run() const { loss_dispatch<S, T>(a, backward); }
};

}  // namespace

void render(const RenderArgs& a) { by_dtype(a.compute_dtype, a.out_dtype, RenderOp{a}); }
void loss_forward(const LossArgs& a) { by_dtype(a.compute_dtype, a.pred_dtype, LossOp{a, false}); }
void loss_backward(const LossArgs& a) { by_dtype(a.compute_dtype, a.pred_dtype, LossOp{a, true}); }

}  // namespace FASTLMK_ISA_NS
}  // namespace fastlmk
