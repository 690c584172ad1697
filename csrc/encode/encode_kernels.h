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

// The pixels [lo, hi] of one axis that a Gaussian centred by the rule `center` covers, and its centre c.
template <class S>
inline void axis_span(S x, S r, int center, int64_t n, int64_t& lo, int64_t& hi, S& c) {
  lo = 0;
  hi = -1;
  if (center == kContinuous || center == kRounded) {
    c = center == kRounded ? std::floor(x + S(0.5)) : x;
    axis_window(c, r, n, lo, hi);
    return;
  }
  const S mu = std::trunc(x + S(0.5));  // mmpose: (x + 0.5).astype(int64), in x's dtype
  const double first = std::trunc(double(mu) - double(r)), last = std::trunc(double(mu) + double(r) + 1.0) - 1.0;
  c = S(first + std::floor(double(r) + 0.5)) + (center == kUdp ? x - mu : S(0));
  if (!(first <= last) || last < 0.0 || first > double(n - 1)) return;
  lo = first < 0.0 ? 0 : int64_t(first);
  hi = last > double(n - 1) ? n - 1 : int64_t(last);
}

// The window of one instance of a channel and its (weighted) separable Gaussian profiles.
template <class S>
struct Channel {
  bool empty = true;
  int64_t i0 = 0, i1 = -1, j0 = 0, j1 = -1;
  S cx = 0, cy = 0;

  Channel() = default;
  Channel(S x, S y, S r, int center, int64_t h, int64_t w) {
    if (!std::isfinite(x) || !std::isfinite(y)) return;
    axis_span(x, r, center, w, j0, j1, cx);
    axis_span(y, r, center, h, i0, i1, cy);
    empty = j0 > j1 || i0 > i1;
  }

  bool holds(int64_t i, int64_t j) const { return i0 <= i && i <= i1 && j0 <= j && j <= j1; }

  // gx[j] = exp(-(j - cx)^2 / 2s^2) on [j0, j1]; gy[i] likewise on [i0, i1], times `scale`.
  void profiles(S sigma, S scale, S* gx, S* gy) const {
    const S k = S(-0.5) / (sigma * sigma);
    for (int64_t j = j0; j <= j1; ++j) gx[j] = std::exp((S(j) - cx) * (S(j) - cx) * k);
    for (int64_t i = i0; i <= i1; ++i) gy[i] = std::exp((S(i) - cy) * (S(i) - cy) * k) * scale;
  }
};

// The Gaussian instances of one channel: those of non-zero weight with a non-empty window, in instance
// order, with their profiles. The channel's value at a pixel is the maximum over the instances holding it.
template <class S>
struct Instances {
  int64_t n = 0, H, W;
  Channel<S>* ch;
  S* gx;  // (N, W)
  S* gy;  // (N, H)

  Instances(int64_t N, int64_t h, int64_t w) : H(h), W(w) {
    ch = new Channel<S>[size_t(N)];
    gx = new S[size_t(N * (W + H))];
    gy = gx + N * W;
  }
  ~Instances() {
    delete[] ch;
    delete[] gx;
  }
  Instances(const Instances&) = delete;
  Instances& operator=(const Instances&) = delete;

  // Instances of channel c = b * K + k: keypoints (B, N, K, 2), weights (B, N, K) or null.
  void gather(const S* kp, const S* weight, int64_t c, int64_t K, int64_t N, S sigma, S radius, int center) {
    n = 0;
    const int64_t first = (c / K) * N * K + c % K;
    for (int64_t q = 0; q < N; ++q) {
      const int64_t at = first + q * K;
      const S wt = weight ? weight[at] : S(1);
      if (wt == S(0)) continue;
      const Channel<S> one(kp[2 * at], kp[2 * at + 1], radius, center, H, W);
      if (one.empty) continue;
      one.profiles(sigma, wt, gx + n * W, gy + n * H);
      ch[n++] = one;
    }
  }

  S value(int64_t q, int64_t i, int64_t j) const { return gy[q * H + i] * gx[q * W + j]; }

  // Whether an instance before q holds pixel (i, j): then q's value is merged by max, else it is stored.
  bool earlier(int64_t q, int64_t i, int64_t j) const {
    for (int64_t p = 0; p < q; ++p)
      if (ch[p].holds(i, j)) return true;
    return false;
  }

  // Writes row i of the channel into row[0, W) (zeros outside every window); false if no instance holds it.
  bool row(int64_t i, S* out) const {
    bool any = false;
    for (int64_t q = 0; q < n; ++q) {
      const Channel<S>& c = ch[q];
      if (i < c.i0 || i > c.i1) continue;
      if (!any) std::fill(out, out + W, S(0));
      for (int64_t j = c.j0; j <= c.j1; ++j) {
        const S v = value(q, i, j);
        out[j] = any && earlier(q, i, j) ? std::max(out[j], v) : v;
      }
      any = true;
    }
    return any;
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
    Instances<S> inst(a.kind == kGaussian ? a.n : 1, H, W);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < a.bk; ++c) {
      T* o = out + c * planes * plane;
      std::memset(static_cast<void*>(o), 0, sizeof(T) * size_t(planes * plane));
      const S p = param[c];
      if (a.kind == kGaussian) {
        inst.gather(kp, weight, c, a.k, a.n, p, S(a.radius) * p, a.center);
        for (int64_t q = 0; q < inst.n; ++q) {
          const Channel<S>& ch = inst.ch[q];
          for (int64_t i = ch.i0; i <= ch.i1; ++i)
            for (int64_t j = ch.j0; j <= ch.j1; ++j) {
              const S v = inst.value(q, i, j);
              store(o[i * W + j], q && inst.earlier(q, i, j) ? std::max(load<S>(o[i * W + j]), v) : v);
            }
        }
        continue;
      }
      const S wt = weight ? weight[c] : S(1), x = kp[2 * c], y = kp[2 * c + 1];
      if (wt == S(0)) continue;
      const Channel<S> ch(x, y, p, kContinuous, H, W);
      if (ch.empty) continue;
      if (a.kind == kDisc) {
        for (int64_t i = ch.i0; i <= ch.i1; ++i)
          for (int64_t j = ch.j0; j <= ch.j1; ++j) {
            const S dx = S(j) - x, dy = S(i) - y;
            if (dx * dx + dy * dy <= p * p) store(o[i * W + j], wt);
          }
      } else {  // offsets: (x - j, y - i) in two planes; the weight only masks
        for (int64_t i = ch.i0; i <= ch.i1; ++i)
          for (int64_t j = ch.j0; j <= ch.j1; ++j) {
            store(o[i * W + j], x - S(j));
            store(o[plane + i * W + j], y - S(i));
          }
      }
    }
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
// offset off, with t the target there, or t == nullptr where the target is 0 (rows no instance holds), so
// most of the map is handled in long, vectorisable runs. Shared by the fused forward and backward.
template <class S, class Body>
void for_each_target_span(const LossArgs& a, Body body) {
  const S* kp = static_cast<const S*>(a.kp);
  const S* sigma = static_cast<const S*>(a.param);
  const S* weight = static_cast<const S*>(a.weight);
  const S* iweight = static_cast<const S*>(a.instance_weight);
  const int64_t H = a.h, W = a.w;
#pragma omp parallel num_threads(a.nthreads)
  {
    Instances<S> inst(a.n, H, W);
    S* row = new S[size_t(W)];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < a.bk; ++c) {
      const S wt = weight ? weight[c] : S(1), s = sigma[c];
      inst.gather(kp, iweight, c, a.k, a.n, s, S(a.radius) * s, a.center);
      const int64_t base = c * H * W;
      int64_t zeros = 0;  // rows of zero target not yet handed to body
      for (int64_t i = 0; i < H; ++i) {
        if (!inst.row(i, row)) {
          ++zeros;
          continue;
        }
        if (zeros) body(c, base + (i - zeros) * W, zeros * W, static_cast<const S*>(nullptr), wt);
        zeros = 0;
        body(c, base + i * W, W, static_cast<const S*>(row), wt);
      }
      if (zeros) body(c, base + (H - zeros) * W, zeros * W, static_cast<const S*>(nullptr), wt);
    }
    delete[] row;
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

// vexp(x) is exactly 0 for x < -kExpZero<S>: its cut-off for float, past std::exp's underflow for double.
template <class S>
constexpr double kExpZero = 87.3;
template <>
constexpr double kExpZero<double> = 750.0;

// One SimCC label vector of n bins at centre c (see SimccArgs).
template <class S, class T>
void simcc_vector(const SimccArgs& a, int axis, S c, S wt, int64_t n, T* out) {
  if (a.kind == kSimccGaussian) {
    const S k = S(-0.5) / (S(a.sigma[axis]) * S(a.sigma[axis])), peak = wt * S(a.scale[axis]);
    // Only the bins within `reach` of c can be non-zero (the margin covers the rounding of the exponent);
    // the others are peak * 0 exactly, as the formula gives them, unless peak is not finite.
    int lo = 0, hi = int(n);  // 32-bit indices convert to float in SIMD registers
    if (std::isfinite(peak)) {
      const double reach = std::sqrt(kExpZero<S> / -double(k)) * 1.001 + 1.0;
      lo = int(std::clamp(std::ceil(double(c) - reach), 0.0, double(n)));
      hi = int(std::clamp(std::floor(double(c) + reach) + 1.0, double(lo), double(n)));
    }
    for (int j = 0; j < lo; ++j) store(out[j], peak * S(0));
    for (int j = hi; j < int(n); ++j) store(out[j], peak * S(0));
#pragma omp simd
    for (int j = lo; j < hi; ++j) store(out[j], peak * vexp((S(j) - c) * (S(j) - c) * k));
    return;
  }
  const S floor_value = n > 1 ? wt * S(a.smoothing) / S(n - 1) : S(0);
  for (int64_t j = 0; j < n; ++j) store(out[j], floor_value);
  const S bin = std::floor(c + S(0.5));
  if (bin >= S(0) && bin < S(n)) store(out[int64_t(bin)], wt * (S(1) - S(a.smoothing)));
}

template <class S, class T>
void simcc_impl(const SimccArgs& a) {
  const S* kp = static_cast<const S*>(a.kp);
  const S* weight = static_cast<const S*>(a.weight);
  T* out_x = static_cast<T*>(a.out_x);
  T* out_y = static_cast<T*>(a.out_y);
#pragma omp parallel for schedule(static) num_threads(a.nthreads)
  for (int64_t c = 0; c < a.bk; ++c) {
    const S wt = weight ? weight[c] : S(1), x = kp[2 * c], y = kp[2 * c + 1];
    T* ox = out_x + c * a.wx;
    T* oy = out_y + c * a.hy;
    if (wt == S(0) || !std::isfinite(x) || !std::isfinite(y)) {
      std::memset(static_cast<void*>(ox), 0, sizeof(T) * size_t(a.wx));
      std::memset(static_cast<void*>(oy), 0, sizeof(T) * size_t(a.hy));
      continue;
    }
    simcc_vector<S, T>(a, 0, x, wt, a.wx, ox);
    simcc_vector<S, T>(a, 1, y, wt, a.hy, oy);
  }
}

struct SimccOp {
  const SimccArgs& a;
  template <class S, class T>
  void run() const { simcc_impl<S, T>(a); }
};

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
void render_simcc(const SimccArgs& a) { by_dtype(a.compute_dtype, a.out_dtype, SimccOp{a}); }

}  // namespace FASTLMK_ISA_NS
}  // namespace fastlmk
