// Visualization splat: V(p) = sum_q value_q w_qp / D(p), D(p) = sum_q w_qp, w_qp = exp(-|p - xy_q|^2 / 2 sigma^2)
// over the visible vertices whose window holds p (V = 0 where D = 0); fastlmk/reference/splat.py is the spec.
// Arithmetic in the input dtype (float with expf for float32, double for float64); no float atomics, so every
// output is the same run to run.
//
// Visibility: a z-buffer over the cells within m = floor(radius + 0.5) of the map, in three passes over the
// vertices after an init: atomicMin of an order-preserving integer key of the depth per cell, then atomicMin
// of the vertex index among the vertices holding that minimum (ties to the lowest index), then visible = owns
// its cell. Integer minima do not depend on the order of the atomics.
// Forward: a gather, one thread per pixel, over the owners of the cells around it (at most one visible vertex
// per cell) in row-major order. Backward: a gather, one thread per vertex, over its window:
// dL/dvalue_q = sum_p w_qp T_p, dL/dx_q = sum_p w_qp (u_p - x_q) / sigma^2 (value_q T_p - S_p) (y alike), with
// T = G / D and S = T V per pixel (0 where D = 0).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../cuda/check.cuh"
#include "splat_cuda.h"

namespace fastlmk {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kEmpty = INT_MAX;  // owner of a cell no vertex holds

// Blocks for a grid-stride loop over n > 0 items.
unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 30));
}

#define FASTLMK_GRID_STRIDE(t, n)                                                          \
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < (n); \
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)

__device__ __forceinline__ float exponential(float a) { return expf(a); }
__device__ __forceinline__ double exponential(double a) { return exp(a); }

// The z-buffer: cells cx in [-m, w - 1 + m], cy in [-m, h - 1 + m] of each batch, row-major, gw wide.
struct Grid {
  int64_t q, h, w, m, gw, cells;  // cells per batch: (h + 2m) gw
};

// Window of a vertex along one axis: pixel u belongs to x when u - floor(x - r) is one of the n candidates
// 0 .. n - 1 and |u - x| <= r (the map bounds are the caller's); coef = -1 / (2 sigma^2).
template <class S>
struct Window {
  S r, last, coef;  // last = n - 1
  int64_t n;
};

template <class S>
__device__ __forceinline__ bool in_window(S u, S x, S d, const Window<S>& win) {
  const S k = u - floor(x - win.r);
  return k >= S(0) && k <= win.last && fabs(d) <= win.r;
}

// Z-buffer cell of vertex t (flat b * Q + q), or -1 when its xy or depth is not finite or the cell is off the grid.
template <class S>
__device__ __forceinline__ int64_t vertex_cell(const S* __restrict__ xy, const S* __restrict__ depth, int64_t t,
                                               const Grid& g) {
  const S x = xy[2 * t], y = xy[2 * t + 1], d = depth[t];
  if (!(isfinite(x) && isfinite(y) && isfinite(d))) return -1;
  const S cx = floor(x + S(0.5)), cy = floor(y + S(0.5));
  if (!(cx >= S(-g.m) && cx <= S(g.w - 1 + g.m) && cy >= S(-g.m) && cy <= S(g.h - 1 + g.m))) return -1;
  return t / g.q * g.cells + (static_cast<int64_t>(cy) + g.m) * g.gw + static_cast<int64_t>(cx) + g.m;
}

// Unsigned key ordered as the depth, -0 and +0 equal: flip the sign bit of non-negative doubles, all bits of
// negative ones.
template <class S>
__device__ __forceinline__ unsigned long long depth_key(S d) {
  const auto bits = static_cast<unsigned long long>(__double_as_longlong(static_cast<double>(d) + 0.0));
  return bits >> 63 ? ~bits : bits | (1ull << 63);
}

__global__ void zbuffer_init(unsigned long long* __restrict__ zbuf, int* __restrict__ owner, int64_t n) {
  FASTLMK_GRID_STRIDE(t, n) {
    zbuf[t] = ~0ull;
    owner[t] = kEmpty;
  }
}

template <class S>
__global__ void zbuffer_depth(const S* __restrict__ xy, const S* __restrict__ depth, int64_t verts, Grid g,
                              unsigned long long* __restrict__ zbuf) {
  FASTLMK_GRID_STRIDE(t, verts) {
    const int64_t c = vertex_cell(xy, depth, t, g);
    if (c >= 0) atomicMin(zbuf + c, depth_key(depth[t]));
  }
}

template <class S>
__global__ void zbuffer_owner(const S* __restrict__ xy, const S* __restrict__ depth, int64_t verts, Grid g,
                              const unsigned long long* __restrict__ zbuf, int* __restrict__ owner) {
  FASTLMK_GRID_STRIDE(t, verts) {
    const int64_t c = vertex_cell(xy, depth, t, g);
    if (c >= 0 && depth_key(depth[t]) == zbuf[c]) atomicMin(owner + c, static_cast<int>(t % g.q));
  }
}

template <class S>
__global__ void zbuffer_visible(const S* __restrict__ xy, const S* __restrict__ depth, int64_t verts, Grid g,
                                const int* __restrict__ owner, uint8_t* __restrict__ visible) {
  FASTLMK_GRID_STRIDE(t, verts) {
    const int64_t c = vertex_cell(xy, depth, t, g);
    visible[t] = c >= 0 && owner[c] == static_cast<int>(t % g.q);
  }
}

// One thread per pixel (b, i, j): the cells within m of it, in row-major order (all inside the grid).
template <class S>
__global__ void splat_gather(const S* __restrict__ xy, const S* __restrict__ value, const int* __restrict__ owner,
                             int64_t pixels, Grid g, Window<S> win, S* __restrict__ image,
                             S* __restrict__ weight_sum) {
  FASTLMK_GRID_STRIDE(p, pixels) {
    const int64_t j = p % g.w, i = p / g.w % g.h, b = p / (g.w * g.h);
    const S su = static_cast<S>(j), sv = static_cast<S>(i);
    const int64_t y0 = i - g.m, y1 = i + g.m, x0 = j - g.m, x1 = j + g.m;
    S den = 0, num = 0;
    for (int64_t cy = y0; cy <= y1; ++cy) {
      const int* row = owner + b * g.cells + (cy + g.m) * g.gw + g.m;
      for (int64_t cx = x0; cx <= x1; ++cx) {
        const int o = row[cx];
        if (o == kEmpty) continue;
        const int64_t t = b * g.q + o;
        const S x = xy[2 * t], y = xy[2 * t + 1];
        const S dx = su - x, dy = sv - y;
        if (!(in_window(su, x, dx, win) && in_window(sv, y, dy, win))) continue;
        const S wq = exponential((dx * dx + dy * dy) * win.coef);
        den += wq;
        num += value[t] * wq;
      }
    }
    weight_sum[p] = den;
    image[p] = den > S(0) ? num / den : S(0);
  }
}

// One thread per vertex: its n x n window candidates inside the map, accumulated in registers.
template <class S>
__global__ void splat_grad(const S* __restrict__ grad_image, const S* __restrict__ xy, const S* __restrict__ value,
                           const S* __restrict__ image, const S* __restrict__ weight_sum,
                           const uint8_t* __restrict__ visible, int64_t verts, int64_t q, int64_t h, int64_t w,
                           Window<S> win, S inv_sigma2, S* __restrict__ grad_xy, S* __restrict__ grad_value) {
  FASTLMK_GRID_STRIDE(t, verts) {
    S gx = 0, gy = 0, gv = 0;
    if (visible[t]) {
      const S x = xy[2 * t], y = xy[2 * t + 1], val = value[t];
      const S u0 = floor(x - win.r), v0 = floor(y - win.r);
      const S umax = static_cast<S>(w - 1), vmax = static_cast<S>(h - 1);
      const int64_t plane = t / q * h;
      for (int64_t ky = 0; ky < win.n; ++ky) {
        const S v = v0 + static_cast<S>(ky), dy = v - y;
        if (!(fabs(dy) <= win.r && v >= S(0) && v <= vmax)) continue;
        const int64_t row = (plane + static_cast<int64_t>(v)) * w;
        for (int64_t kx = 0; kx < win.n; ++kx) {
          const S u = u0 + static_cast<S>(kx), dx = u - x;
          if (!(fabs(dx) <= win.r && u >= S(0) && u <= umax)) continue;
          const int64_t p = row + static_cast<int64_t>(u);
          const S d = weight_sum[p];
          if (!(d > S(0))) continue;  // T = S = 0 there
          const S tp = grad_image[p] / d, sp = tp * image[p];
          const S wq = exponential((dx * dx + dy * dy) * win.coef);
          const S c = wq * (val * tp - sp);
          gv += wq * tp;
          gx += c * dx;
          gy += c * dy;
        }
      }
    }
    grad_xy[2 * t] = gx * inv_sigma2;
    grad_xy[2 * t + 1] = gy * inv_sigma2;
    grad_value[t] = gv;
  }
}

template <class S>
Window<S> make_window(double sigma, double radius) {
  const auto n = static_cast<int64_t>(std::floor(2 * radius)) + 2;
  return {static_cast<S>(radius), static_cast<S>(n - 1), static_cast<S>(-0.5 / (sigma * sigma)), n};
}

template <class S>
void forward(const S* xy, const S* depth, const S* value, int64_t b, int64_t q, int64_t h, int64_t w, double sigma,
             double radius, int64_t m, unsigned long long* zbuf, int* owner, S* image, S* weight_sum,
             uint8_t* visible, cudaStream_t stream) {
  const Grid g{q, h, w, m, w + 2 * m, (h + 2 * m) * (w + 2 * m)};
  const int64_t cells = b * g.cells, verts = b * q, pixels = b * h * w;
  if (cells > 0) {
    zbuffer_init<<<blocks_for(cells), kThreads, 0, stream>>>(zbuf, owner, cells);
    FASTLMK_CUDA_CHECK_LAUNCH();
  }
  if (verts > 0) {
    zbuffer_depth<<<blocks_for(verts), kThreads, 0, stream>>>(xy, depth, verts, g, zbuf);
    FASTLMK_CUDA_CHECK_LAUNCH();
    zbuffer_owner<<<blocks_for(verts), kThreads, 0, stream>>>(xy, depth, verts, g, zbuf, owner);
    FASTLMK_CUDA_CHECK_LAUNCH();
    zbuffer_visible<<<blocks_for(verts), kThreads, 0, stream>>>(xy, depth, verts, g, owner, visible);
    FASTLMK_CUDA_CHECK_LAUNCH();
  }
  if (pixels > 0) {
    const Window<S> win = make_window<S>(sigma, radius);
    splat_gather<<<blocks_for(pixels), kThreads, 0, stream>>>(xy, value, owner, pixels, g, win, image, weight_sum);
    FASTLMK_CUDA_CHECK_LAUNCH();
  }
}

template <class S>
void backward(const S* grad_image, const S* xy, const S* value, const S* image, const S* weight_sum,
              const uint8_t* visible, int64_t b, int64_t q, int64_t h, int64_t w, double sigma, double radius,
              S* grad_xy, S* grad_value, cudaStream_t stream) {
  const int64_t verts = b * q;
  if (verts == 0) return;
  splat_grad<<<blocks_for(verts), kThreads, 0, stream>>>(grad_image, xy, value, image, weight_sum, visible, verts,
                                                         q, h, w, make_window<S>(sigma, radius),
                                                         static_cast<S>(1 / (sigma * sigma)), grad_xy, grad_value);
  FASTLMK_CUDA_CHECK_LAUNCH();
}

void check_dtype(int dtype) {
  if (dtype != 0 && dtype != 1)
    throw std::invalid_argument("splat: dtype must be 0 (float32) or 1 (float64), got " + std::to_string(dtype));
}

}  // namespace

void splat_forward(const SplatCudaArgs& a) {
  check_dtype(a.dtype);
  if (a.q >= kEmpty) throw std::invalid_argument("splat: at most 2^31 - 2 vertices per batch (int32 z-buffer owners)");
  auto* zb = static_cast<unsigned long long*>(a.zbuf);
  auto* own = static_cast<int*>(a.owner);
  const auto st = reinterpret_cast<cudaStream_t>(a.stream);
  if (a.dtype == 0)
    forward(static_cast<const float*>(a.xy), static_cast<const float*>(a.depth), static_cast<const float*>(a.value),
            a.b, a.q, a.h, a.w, a.sigma, a.radius, a.margin, zb, own, static_cast<float*>(a.image),
            static_cast<float*>(a.weight_sum), a.visible, st);
  else
    forward(static_cast<const double*>(a.xy), static_cast<const double*>(a.depth),
            static_cast<const double*>(a.value), a.b, a.q, a.h, a.w, a.sigma, a.radius, a.margin, zb, own,
            static_cast<double*>(a.image), static_cast<double*>(a.weight_sum), a.visible, st);
}

void splat_backward(const SplatCudaArgs& a) {
  check_dtype(a.dtype);
  const auto st = reinterpret_cast<cudaStream_t>(a.stream);
  if (a.dtype == 0)
    backward(static_cast<const float*>(a.grad_image), static_cast<const float*>(a.xy),
             static_cast<const float*>(a.value), static_cast<const float*>(a.image),
             static_cast<const float*>(a.weight_sum), a.visible, a.b, a.q, a.h, a.w, a.sigma, a.radius,
             static_cast<float*>(a.grad_xy), static_cast<float*>(a.grad_value), st);
  else
    backward(static_cast<const double*>(a.grad_image), static_cast<const double*>(a.xy),
             static_cast<const double*>(a.value), static_cast<const double*>(a.image),
             static_cast<const double*>(a.weight_sum), a.visible, a.b, a.q, a.h, a.w, a.sigma, a.radius,
             static_cast<double*>(a.grad_xy), static_cast<double*>(a.grad_value), st);
}

}  // namespace cuda
}  // namespace fastlmk
