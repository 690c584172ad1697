// XNOR bit-packed binary convolution (fastlmk/reference/xnor.py is the spec). Signs live as bits of 64-bit
// words, channels innermost (bit set = negative = -1), so the dot product of two +-1 vectors of `bits` channels
// is bits - 2 popcount(x ^ w).
//
// pack_bits: the signs of a float tensor viewed as (N, C, P), either one thread per output word looping over its
// 64 channels (adjacent threads read adjacent p: coalesced in NCHW) or, when channels are contiguous, one thread
// per channel slot and a warp ballot per 32-bit half word.
// binary_conv2d: implicit GEMM over the "items" (tap, word) of the packed weight (O, KH, KW, WG). A block of 128
// threads owns a tile of up to 32 output channels inside one group (their weights staged in shared memory, chunk
// by chunk) and a tile of flat output positions (n, oy, ox); each thread holds 8 channels x 2 positions in
// registers, reusing each x word it loads for its 8 channels and each (broadcast) weight for its 2 positions.
// A group not starting at a word boundary is extracted from x with a funnel shift across two words. The
// popcounts go through a carry-save adder: per accumulator a running "ones" word absorbs two items at a time,
// ones + a + b = sum + 2 carry, so one popcount per two words (the loop is bound by the integer pipe, not POPC).
// Outside taps are masked to 0 ("zeros" padding, not counted) or read an all-zero word (+1, "ones" padding).
// Then the epilogue in the affine dtype, ((alpha dot + bias) scale + shift), each step rounded separately; packed
// output goes through shared memory as 32-bit halves of the words.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../cuda/check.cuh"
#include "xnor_cuda.h"

namespace fastlmk {
namespace cuda {
namespace {

using u64 = unsigned long long;

constexpr int kThreads = 256;  // pack kernels

// Blocks for a grid-stride loop over n > 0 items (a multiple of 32 threads per step keeps warps whole).
unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 30));
}

#define FASTLMK_GRID_STRIDE(t, n)                                                          \
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < (n); \
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------------------------------------------------
// pack_bits

struct Half {  // float16 bits
  uint16_t bits;
};
struct BFloat {  // bfloat16 bits
  uint16_t bits;
};

// x < 0: false for -0 and NaN.
__device__ __forceinline__ bool negative(float v) { return v < 0.0f; }
__device__ __forceinline__ bool negative(double v) { return v < 0.0; }
// Sign bit set and magnitude in (0, inf]: the magnitude minus one, unsigned, is below the bits of inf.
__device__ __forceinline__ bool negative(Half v) {
  return (v.bits >> 15) && static_cast<unsigned>(v.bits & 0x7fff) - 1u < 0x7c00u;
}
__device__ __forceinline__ bool negative(BFloat v) {
  return (v.bits >> 15) && static_cast<unsigned>(v.bits & 0x7fff) - 1u < 0x7f80u;
}

// One thread per output word (n, word, p), p fastest: loops over the word's channels.
template <class T>
__global__ void pack_words(const T* __restrict__ x, int64_t n, int64_t c, int64_t p, int64_t stride_n,
                           int64_t stride_c, int64_t stride_p, int64_t words, u64* __restrict__ out) {
  FASTLMK_GRID_STRIDE(t, n * words * p) {
    const int64_t pi = t % p, r = t / p, wd = r % words, ni = r / words;
    const T* src = x + ni * stride_n + pi * stride_p + wd * 64 * stride_c;
    const int count = static_cast<int>(min(c - wd * 64, int64_t{64}));
    u64 bits = 0;
#pragma unroll 8
    for (int b = 0; b < count; ++b) bits |= static_cast<u64>(negative(src[b * stride_c])) << b;
    out[(ni * p + pi) * words + wd] = bits;
  }
}

// One thread per channel slot (n, p, slot), slots = 64 words, fastest: every warp covers one 32-bit half word
// (the total is a multiple of 64 and the grid stride of 32), which its ballot gives (slots past C are 0).
template <class T>
__global__ void pack_ballot(const T* __restrict__ x, int64_t n, int64_t c, int64_t p, int64_t stride_n,
                            int64_t stride_c, int64_t stride_p, int64_t words, unsigned* __restrict__ out) {
  const int64_t slots = words * 64;
  FASTLMK_GRID_STRIDE(t, n * p * slots) {
    const int64_t ci = t % slots, r = t / slots, pi = r % p, ni = r / p;
    const bool neg = ci < c && negative(x[ni * stride_n + pi * stride_p + ci * stride_c]);
    const unsigned bits = __ballot_sync(0xffffffffu, neg);
    if ((threadIdx.x & 31) == 0) out[t >> 5] = bits;  // little-endian: half t/32 of the words
  }
}

template <class T>
void pack(const void* x, int64_t n, int64_t c, int64_t p, int64_t stride_n, int64_t stride_c, int64_t stride_p,
          void* out, cudaStream_t stream) {
  const auto* src = static_cast<const T*>(x);
  const int64_t words = (c + 63) / 64;
  if (stride_c == 1 && c > 32 && (stride_p != 1 || p == 1)) {  // channels-last
    pack_ballot<<<blocks_for(n * p * words * 64), kThreads, 0, stream>>>(src, n, c, p, stride_n, stride_c, stride_p,
                                                                          words, static_cast<unsigned*>(out));
  } else {
    pack_words<<<blocks_for(n * words * p), kThreads, 0, stream>>>(src, n, c, p, stride_n, stride_c, stride_p,
                                                                    words, static_cast<u64*>(out));
  }
  FASTLMK_CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------------------
// binary_conv2d

constexpr int kConvThreads = 128;   // 4 warps; 3 blocks per SM (<= 168 registers)
constexpr int kOut = 8;              // output channels per thread, the same for the whole warp
constexpr int kPos = 2;              // positions per thread, 32 apart (lane-consecutive in the warp)
constexpr int kWeightWords = 4096;   // shared weight chunk: 32 KB
constexpr int kMaxChunk = 128;       // items per chunk at most
constexpr int kMaxBlockPositions = 32 * kPos * (kConvThreads / 32);  // with one warp along the channels
static_assert(kMaxChunk <= kConvThreads, "one thread per item entry");
static_assert(kOut * kConvThreads / 32 <= 64, "a block's channels fit in one 64-bit word per position");

struct Conv {
  int64_t positions, plane;      // N Ho Wo, Ho Wo
  int h, w, wo, o;               // input map, output width, output channels
  int cg, og, wx, wg;            // channels per group (in, out), words per x pixel and per weight tap
  int kh, kw, items;             // kernel size, KH KW WG
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int warps_o, block_o, block_pos, o_tiles;  // block tile: block_o = kOut warps_o channels x block_pos positions
  u64 last_mask;                 // valid bits of a group's last word
  bool pad_ones;
};

// Image and offset in the output plane of flat position gp (past the end: the last one's, never written).
__device__ __forceinline__ void position(const Conv& p, int64_t gp, int64_t& img, int64_t& rem) {
  gp = min(gp, p.positions - 1);
  img = gp / p.plane;
  rem = gp - img * p.plane;
}

// Item k = (ky, kx, j) (tap (ky, kx), word j: the innermost index of the packed weight) as the kernel needs it,
// one table entry per item of a chunk in shared memory.
struct __align__(16) Item {
  int64_t off;  // word of x relative to the window's top-left pixel: (dy W + dx) WX + w0 + j
  u64 mask;     // valid bits of the group's word j; 0 for the padding item of an odd count
  int dy, dx;   // tap offset in the input map: ky dil_h, kx dil_w
  bool hi_in;   // the x word after `off` exists (else its bits are past C)
};

__device__ __forceinline__ Item make_item(const Conv& p, int k, int w0) {
  Item it{};
  if (k < p.items) {
    const int j = k % p.wg, tap = k / p.wg, kx = tap % p.kw, ky = tap / p.kw;
    it.dy = ky * p.dil_h;
    it.dx = kx * p.dil_w;
    it.off = (static_cast<int64_t>(it.dy) * p.w + it.dx) * p.wx + w0 + j;
    it.mask = j == p.wg - 1 ? p.last_mask : ~0ull;
    it.hi_in = w0 + j + 1 < p.wx;
  }
  return it;
}

// The group's word of x for item `it` at each of the thread's positions, its bits past the group cleared (the
// staged weights' are too), and the mask to apply to both halves of its xor: 0 where the tap is outside the map
// with zeros padding, else all ones. Outside the map x reads 0 (+1); the padding item reads 0 (mask 0) and has
// weights 0. Branch-free: a word that is not needed is read at x[0] (always there) and dropped.
template <bool kAligned>
__device__ __forceinline__ void load_item(const u64* __restrict__ x, const Conv& p, const Item it, int shift,
                                          const int64_t (&pix0)[kPos], const int (&iy0)[kPos],
                                          const int (&ix0)[kPos], u64 (&xv)[kPos], unsigned (&mv)[kPos]) {
#pragma unroll
  for (int i = 0; i < kPos; ++i) {
    const bool inside = (static_cast<unsigned>(iy0[i] + it.dy) < static_cast<unsigned>(p.h)) &
                        (static_cast<unsigned>(ix0[i] + it.dx) < static_cast<unsigned>(p.w));
    const int64_t at = inside ? pix0[i] + it.off : 0;
    u64 v = __ldg(x + at);
    if (!kAligned) {  // the group starts at bit `shift` of word w0: funnel shift across two words
      // Without a next word (hi_in false) the bits taken from x[0] are past C, cleared by the mask below.
      const u64 hi = __ldg(x + (inside & it.hi_in ? at + 1 : 0));
      v = (v >> shift) | ((hi << 1) << (63 - shift));
    }
    xv[i] = inside ? v & it.mask : 0ull;
    mv[i] = inside | p.pad_ones ? ~0u : 0u;
  }
}

__device__ __forceinline__ u64 both(unsigned m) { return static_cast<u64>(m) << 32 | m; }

__device__ __forceinline__ float to_affine(int v, float) { return __int2float_rn(v); }
__device__ __forceinline__ double to_affine(int v, double) { return __int2double_rn(v); }
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }

// Block (blockIdx.x: positions [gp0, gp0 + block_pos); blockIdx.y: group g, channel tile `tile` of it).
// Warp `warp` covers channels ob + kOut (warp % warps_o) + [0, kOut) and, lane by lane, the positions
// gp0 + 32 (kPos (warp / warps_o) + i) + lane, i < kPos. Per chunk of items: the item table and the weights go to
// shared memory, then each pair of items is one carry-save step of every accumulator. kAligned: every group
// starts at a word boundary. kPacked: out is (positions, ceil(O/64)) words, else (N, O, Ho, Wo) in S.
template <class S, bool kAligned, bool kPacked>
__global__ void __launch_bounds__(kConvThreads, 3)
    xnor_conv(const u64* __restrict__ x, const u64* __restrict__ weight, const S* __restrict__ alpha,
              const S* __restrict__ bias, const S* __restrict__ scale, const S* __restrict__ shift, Conv p,
              void* __restrict__ out) {
  __shared__ __align__(16) u64 ws[kWeightWords];   // weights of a chunk, [channel][item]
  __shared__ Item items[kMaxChunk];                 // its items
  __shared__ u64 sbits[kMaxBlockPositions];         // kPacked: sign bits of the block's channels per position

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wo_i = warp % p.warps_o, wp_i = warp / p.warps_o;
  const int g = blockIdx.y / p.o_tiles, tile = blockIdx.y % p.o_tiles;
  const int ob = g * p.og + tile * p.block_o;                 // first channel of the block
  const int n_o = min(p.block_o, p.og - tile * p.block_o);    // channels of the block
  const int c0 = g * p.cg, w0 = c0 >> 6, shift_bits = c0 & 63;  // the group's first input channel
  const int64_t gp0 = static_cast<int64_t>(blockIdx.x) * p.block_pos;

  // Per position: top-left input pixel of the window and its word index.
  int64_t pix0[kPos];
  int iy0[kPos], ix0[kPos];
#pragma unroll
  for (int i = 0; i < kPos; ++i) {
    int64_t img, rem;
    position(p, gp0 + (wp_i * kPos + i) * 32 + lane, img, rem);
    const int oy = static_cast<int>(rem / p.wo), ox = static_cast<int>(rem - static_cast<int64_t>(oy) * p.wo);
    iy0[i] = oy * p.stride_h - p.pad_h;
    ix0[i] = ox * p.stride_w - p.pad_w;
    pix0[i] = ((img * p.h + iy0[i]) * p.w + ix0[i]) * p.wx;
  }

  int carries[kPos][kOut];  // popcount of the carry words (weight 2)
  u64 ones[kPos][kOut];     // carry-save running sum (weight 1)
#pragma unroll
  for (int i = 0; i < kPos; ++i)
#pragma unroll
    for (int q = 0; q < kOut; ++q) {
      carries[i][q] = 0;
      ones[i][q] = 0;
    }

  const int chunk = min(kWeightWords / p.block_o, kMaxChunk) & ~1;  // items per chunk, even
  for (int k0 = 0; k0 < p.items; k0 += chunk) {
    const int kc = min(chunk, p.items - k0);
    const int kc2 = (kc + 1) & ~1;  // rounded up to pairs, the padding item's weights 0
    __syncthreads();                // the previous chunk is consumed
    if (threadIdx.x < kc2) items[threadIdx.x] = make_item(p, k0 + threadIdx.x, w0);  // kc2 <= kMaxChunk <= threads
    __syncthreads();
    for (int ol = warp; ol < p.block_o; ol += kConvThreads / 32) {  // a warp per channel: coalesced
      const int64_t row = static_cast<int64_t>(ob + ol) * p.items + k0;
      for (int kk = lane; kk < kc2; kk += 32)
        ws[ol * kc2 + kk] = ol < n_o && kk < kc ? __ldg(weight + row + kk) & items[kk].mask : 0ull;
    }
    __syncthreads();

    const u64* wrow = ws + wo_i * kOut * kc2;
#pragma unroll 1
    for (int kk = 0; kk < kc2; kk += 2) {
      u64 xa[kPos], xb[kPos];
      unsigned ma[kPos], mb[kPos];
      load_item<kAligned>(x, p, items[kk], shift_bits, pix0, iy0, ix0, xa, ma);
      load_item<kAligned>(x, p, items[kk + 1], shift_bits, pix0, iy0, ix0, xb, mb);
#pragma unroll
      for (int q = 0; q < kOut; ++q) {
        const ulonglong2 wv = *reinterpret_cast<const ulonglong2*>(wrow + q * kc2 + kk);  // broadcast
#pragma unroll
        for (int i = 0; i < kPos; ++i) {
          const u64 a = (xa[i] ^ wv.x) & both(ma[i]), b = (xb[i] ^ wv.y) & both(mb[i]);
          const u64 s = ones[i][q];
          ones[i][q] = s ^ a ^ b;
          carries[i][q] += __popcll((s & (a | b)) | (a & b));
        }
      }
    }
  }

  // Epilogue.
  unsigned char* sbytes = reinterpret_cast<unsigned char*>(sbits);
#pragma unroll
  for (int i = 0; i < kPos; ++i) {
    const int pl = (wp_i * kPos + i) * 32 + lane;
    const bool pos_ok = gp0 + pl < p.positions;
    int64_t img, rem;
    position(p, gp0 + pl, img, rem);
    // Taps that count: all with ones padding, else those inside the map (rows x columns).
    int rows = 0, cols = 0;
    for (int ky = 0; ky < p.kh; ++ky) rows += static_cast<unsigned>(iy0[i] + ky * p.dil_h) < static_cast<unsigned>(p.h);
    for (int kx = 0; kx < p.kw; ++kx) cols += static_cast<unsigned>(ix0[i] + kx * p.dil_w) < static_cast<unsigned>(p.w);
    const int taps = p.pad_ones ? p.kh * p.kw : rows * cols;
    unsigned byte = 0;
#pragma unroll
    for (int q = 0; q < kOut; ++q) {
      const int ol = wo_i * kOut + q;
      if (ol >= n_o) continue;
      const int o = ob + ol;
      const int dot = taps * p.cg - 2 * (2 * carries[i][q] + __popcll(ones[i][q]));
      S y = mul(to_affine(dot, S()), alpha[o]);
      if (bias) y = add(y, bias[o]);
      if (scale) y = mul(y, scale[o]);
      if (shift) y = add(y, shift[o]);
      if (kPacked)
        byte |= static_cast<unsigned>(y < S(0)) << q;
      else if (pos_ok)
        static_cast<S*>(out)[(img * p.o + o) * p.plane + rem] = y;  // coalesced along the positions
    }
    if (kPacked) sbytes[pl * 8 + wo_i] = static_cast<unsigned char>(byte);
  }
  if (!kPacked) return;

  // Packed: bit ol of sbits[pl] is channel ob + ol (ol < n_o). Write the 32-bit halves [32 hh, 32 hh + 32) the
  // block overlaps, and in the block of channel O - 1 the rest of the last word (bits past O are 0): stored when
  // the block holds all of the half's channels below O, or-ed atomically into the zeroed output when it holds
  // part of them (the host zeroes the output when some block does).
  __syncthreads();
  const int halves = 2 * ((p.o + 63) / 64);
  const int h0 = ob >> 5, h1 = ob + n_o == p.o ? halves - 1 : (ob + n_o - 1) >> 5, nh = h1 - h0 + 1;
  const u64 valid = n_o == 64 ? ~0ull : (1ull << n_o) - 1;
  for (int idx = threadIdx.x; idx < p.block_pos * nh; idx += kConvThreads) {
    const int pl = idx / nh, hh = h0 + idx % nh;
    if (gp0 + pl >= p.positions) continue;
    const u64 bits = sbits[pl] & valid;
    const int sh = ob - 32 * hh;  // bit of channel ob in the half
    const unsigned v = static_cast<unsigned>(sh >= 0 ? bits << sh : sh > -64 ? bits >> -sh : 0ull);
    const bool whole = ob <= 32 * hh && (32 * hh + 32 <= ob + n_o || ob + n_o == p.o);
    unsigned* dst = static_cast<unsigned*>(out) + (gp0 + pl) * halves + hh;  // little-endian halves
    if (whole)
      *dst = v;
    else
      atomicOr(dst, v);
  }
}

template <class S, bool kAligned, bool kPacked>
void launch_conv(dim3 grid, const void* x, const void* weight, const void* alpha, const void* bias,
                 const void* scale, const void* shift, const Conv& p, void* out, cudaStream_t stream) {
  xnor_conv<S, kAligned, kPacked><<<grid, kConvThreads, 0, stream>>>(
      static_cast<const u64*>(x), static_cast<const u64*>(weight), static_cast<const S*>(alpha),
      static_cast<const S*>(bias), static_cast<const S*>(scale), static_cast<const S*>(shift), p, out);
  FASTLMK_CUDA_CHECK_LAUNCH();
}

template <class S>
void conv(dim3 grid, bool aligned, bool packed, const void* x, const void* weight, const void* alpha,
          const void* bias, const void* scale, const void* shift, const Conv& p, void* out, cudaStream_t stream) {
  if (aligned && packed)
    launch_conv<S, true, true>(grid, x, weight, alpha, bias, scale, shift, p, out, stream);
  else if (aligned)
    launch_conv<S, true, false>(grid, x, weight, alpha, bias, scale, shift, p, out, stream);
  else if (packed)
    launch_conv<S, false, true>(grid, x, weight, alpha, bias, scale, shift, p, out, stream);
  else
    launch_conv<S, false, false>(grid, x, weight, alpha, bias, scale, shift, p, out, stream);
}

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("binary_conv2d: ") + what);
}

}  // namespace

void pack_bits(const PackCudaArgs& a) {
  if (a.dtype < 0 || a.dtype > 3)
    throw std::invalid_argument("pack_bits: dtype must be 0 (float32), 1 (float64), 2 (float16) or 3 (bfloat16), "
                                "got " + std::to_string(a.dtype));
  if (a.n <= 0 || a.c <= 0 || a.p <= 0) return;  // nothing to write
  const auto st = reinterpret_cast<cudaStream_t>(a.stream);
  if (a.dtype == 0)
    pack<float>(a.x, a.n, a.c, a.p, a.stride_n, a.stride_c, a.stride_p, a.out, st);
  else if (a.dtype == 1)
    pack<double>(a.x, a.n, a.c, a.p, a.stride_n, a.stride_c, a.stride_p, a.out, st);
  else if (a.dtype == 2)
    pack<Half>(a.x, a.n, a.c, a.p, a.stride_n, a.stride_c, a.stride_p, a.out, st);
  else
    pack<BFloat>(a.x, a.n, a.c, a.p, a.stride_n, a.stride_c, a.stride_p, a.out, st);
}

void binary_conv2d(const XnorConvCudaArgs& a) {
  require(a.dtype == 0 || a.dtype == 1, "dtype must be 0 (float32) or 1 (float64)");
  require(a.n >= 0 && a.c > 0 && a.h > 0 && a.w > 0 && a.o > 0 && a.kh > 0 && a.kw > 0 && a.groups > 0 && a.ho >= 0 && a.wo >= 0,
          "sizes must be positive");
  require(a.c % a.groups == 0 && a.o % a.groups == 0, "groups must divide the input and output channels");
  require(a.stride_h > 0 && a.stride_w > 0 && a.dil_h > 0 && a.dil_w > 0 && a.pad_h >= 0 && a.pad_w >= 0,
          "stride and dilation must be positive, padding non-negative");
  // 32-bit index math inside a map and in the integer sums.
  require(a.h + 2 * a.pad_h < INT_MAX && a.w + 2 * a.pad_w < INT_MAX && a.ho < INT_MAX && a.wo < INT_MAX,
          "spatial sizes must be below 2^31");
  require(a.kh <= INT_MAX / a.c && a.kw <= INT_MAX / (a.kh * a.c) && a.kh * a.kw * a.c < INT_MAX / 4 && a.o < INT_MAX,
          "KH KW C must be below 2^29");
  require(a.stride_h < INT_MAX && a.stride_w < INT_MAX && a.dil_h < INT_MAX && a.dil_w < INT_MAX,
          "stride and dilation must be below 2^31");
  require(a.dil_h * (a.kh - 1) < a.h + 2 * a.pad_h && a.dil_w * (a.kw - 1) < a.w + 2 * a.pad_w &&
              a.ho == (a.h + 2 * a.pad_h - a.dil_h * (a.kh - 1) - 1) / a.stride_h + 1 &&
              a.wo == (a.w + 2 * a.pad_w - a.dil_w * (a.kw - 1) - 1) / a.stride_w + 1,
          "ho, wo do not match the input size, kernel, stride, padding and dilation");
  const int64_t positions = a.n * a.ho * a.wo;
  if (positions == 0) return;

  Conv p{};
  p.positions = positions;
  p.plane = a.ho * a.wo;
  p.h = static_cast<int>(a.h);
  p.w = static_cast<int>(a.w);
  p.wo = static_cast<int>(a.wo);
  p.o = static_cast<int>(a.o);
  p.cg = static_cast<int>(a.c / a.groups);
  p.og = static_cast<int>(a.o / a.groups);
  p.wx = static_cast<int>((a.c + 63) / 64);
  p.wg = (p.cg + 63) / 64;
  p.kh = static_cast<int>(a.kh);
  p.kw = static_cast<int>(a.kw);
  p.items = static_cast<int>(a.kh * a.kw) * p.wg;
  p.stride_h = static_cast<int>(a.stride_h);
  p.stride_w = static_cast<int>(a.stride_w);
  p.pad_h = static_cast<int>(a.pad_h);
  p.pad_w = static_cast<int>(a.pad_w);
  p.dil_h = static_cast<int>(a.dil_h);
  p.dil_w = static_cast<int>(a.dil_w);
  p.warps_o = 1;
  while (p.warps_o < kConvThreads / 32 && kOut * p.warps_o < p.og) p.warps_o *= 2;
  p.block_o = kOut * p.warps_o;
  p.block_pos = 32 * kPos * (kConvThreads / 32 / p.warps_o);
  p.o_tiles = (p.og + p.block_o - 1) / p.block_o;
  p.last_mask = p.cg % 64 ? (1ull << (p.cg % 64)) - 1 : ~0ull;
  p.pad_ones = a.pad_ones;

  const int64_t blocks_x = (positions + p.block_pos - 1) / p.block_pos, blocks_y = a.groups * p.o_tiles;
  require(blocks_x < INT_MAX && blocks_y <= 65535, "too many output positions or channel tiles for one launch");
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(blocks_y));
  const bool aligned = a.groups == 1 || p.cg % 64 == 0;
  const auto st = reinterpret_cast<cudaStream_t>(a.stream);
  // Packed output: the 32-bit halves are whole in one block unless a block boundary falls inside one.
  const bool halves_split = !((a.groups == 1 || p.og % 32 == 0) && (p.block_o % 32 == 0 || p.o_tiles == 1));
  if (a.packed_out && halves_split)
    FASTLMK_CUDA_CHECK(cudaMemsetAsync(a.out, 0, static_cast<size_t>(positions * ((a.o + 63) / 64) * 8), st));
  if (a.dtype == 0)
    conv<float>(grid, aligned, a.packed_out, a.x, a.weight, a.alpha, a.bias, a.scale, a.shift, p, a.out, st);
  else
    conv<double>(grid, aligned, a.packed_out, a.x, a.weight, a.alpha, a.bias, a.scale, a.shift, p, a.out, st);
}

}  // namespace cuda
}  // namespace fastlmk
