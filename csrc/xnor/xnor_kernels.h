// XNOR kernels, compiled once per instruction set: the including file defines FASTLMK_ISA_NS (and, for the
// SIMD builds, a target pragma and FASTLMK_AVX2 or FASTLMK_AVX512).
//
// pack_bits: one pass over the float input, one 64-bit word per (position, 64 channels), from either layout.
// binary_conv2d, an implicit GEMM on words:
//  1. the packed input is copied into a padded, group-aligned buffer (N, H + 2 ph, W + 2 pw, G, WG): border
//     words are 0 (+1 everywhere) and each group's channels start a word, with the bits past its C/G cleared;
//  2. the weights are regrouped into blocks of 8 output channels, (G, blocks, taps, WG, 8), so one SIMD
//     register holds a tap-word of 8 channels;
//  3. for each output row and weight block, tile by tile of pixels, the micro-kernel sums
//     popcount(x ^ w) over taps and words (every tap read from the padded buffer, i.e. padded with +1); the
//     dot is taps C/G - 2 popcount, and with zero padding the +1 value of each off-map tap,
//     C/G - 2 popcount(w[o, tap]), is taken back out (border pixels only). Integer sums are exact.
//  The epilogue ((alpha dot + bias) scale + shift) rounds each step in the affine dtype, as the reference.
#ifndef FASTLMK_ISA_NS
#error "define FASTLMK_ISA_NS before including xnor_kernels.h"
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "xnor.h"

namespace fastlmk {
namespace FASTLMK_ISA_NS {
namespace {

constexpr int64_t kBlock = 8;  // output channels per weight block
#if defined(FASTLMK_AVX512)
constexpr int kTile = 8;  // pixels per micro-kernel call: 8 accumulator registers
#else
constexpr int kTile = 4;
#endif

inline int64_t words(int64_t bits) { return (bits + 63) / 64; }

inline uint64_t low_bits(int64_t n) { return n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1; }

inline int64_t popcount(uint64_t v) {
#if defined(FASTLMK_AVX2) || defined(FASTLMK_AVX512)
  return __builtin_popcountll(v);
#else  // without POPCNT, a SWAR count beats libgcc's table
  v -= (v >> 1) & 0x5555555555555555ull;
  v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return int64_t((v * 0x0101010101010101ull) >> 56);
#endif
}

// ---------------------------------------------------------------------------------------------- pack_bits

template <class S, class T>
int64_t pack(const PackArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  const int64_t c = a.c, p = a.p, nw = words(c);
  int64_t nans = 0;
  if (a.stride_c == 1) {  // channels innermost: each word from up to 64 consecutive values
#pragma omp parallel for num_threads(a.nthreads) schedule(static) reduction(+ : nans)
    for (int64_t np = 0; np < a.n * p; ++np) {
      const T* src = x + (np / p) * a.stride_n + (np % p) * a.stride_p;
      for (int64_t j = 0; j < nw; ++j) {
        const int64_t bits = std::min<int64_t>(64, c - 64 * j);
        uint64_t word = 0;
        for (int64_t b = 0; b < bits; ++b) {
          const S v = load<S>(src[64 * j + b]);
          nans += v != v;
          word |= uint64_t(v < S(0)) << b;
        }
        a.out[np * nw + j] = word;
      }
    }
    return nans;
  }
  constexpr int64_t kSpan = 512;  // positions innermost: a span of positions, one word at a time
  const int64_t spans = (p + kSpan - 1) / kSpan;
#pragma omp parallel for num_threads(a.nthreads) schedule(static) reduction(+ : nans)
  for (int64_t task = 0; task < a.n * spans; ++task) {
    const int64_t ni = task / spans, p0 = (task % spans) * kSpan, pn = std::min(kSpan, p - p0);
    uint64_t acc[kSpan];
    for (int64_t j = 0; j < nw; ++j) {
      std::fill(acc, acc + pn, uint64_t(0));
      const int64_t bits = std::min<int64_t>(64, c - 64 * j);
      for (int64_t b = 0; b < bits; ++b) {
        const T* row = x + ni * a.stride_n + (64 * j + b) * a.stride_c + p0 * a.stride_p;
        for (int64_t i = 0; i < pn; ++i) {
          const S v = load<S>(row[i * a.stride_p]);
          nans += v != v;
          acc[i] |= uint64_t(v < S(0)) << b;
        }
      }
      uint64_t* dst = a.out + (ni * p + p0) * nw + j;
      for (int64_t i = 0; i < pn; ++i) dst[i * nw] = acc[i];
    }
  }
  return nans;
}

struct Pack {
  const PackArgs& a;
  int64_t* nans;
  template <class S, class T>
  void run() const { *nans = pack<S, T>(a); }
};

// --------------------------------------------------------------------------------------- binary_conv2d

// Dot products of P pixels (x words at xb + tap_offset[t] + i * step) with the 8 channels of one weight block
// (w: (taps, wg, 8)), as if every tap were inside the map: dots[j * ld + i] = full - 2 popcount(x ^ w) summed
// over the taps and words, with full = taps * C/G.
template <int P>
void popcounts(const uint64_t* xb, int64_t step, const int64_t* tap_offset, int64_t taps, int64_t wg,
               const uint64_t* w, int64_t full, int32_t* dots, int64_t ld) {
#if defined(FASTLMK_AVX512)
  __m512i acc[P];
  for (int i = 0; i < P; ++i) acc[i] = _mm512_setzero_si512();
  for (int64_t t = 0; t < taps; ++t) {
    const uint64_t* xt = xb + tap_offset[t];
    for (int64_t k = 0; k < wg; ++k, w += kBlock) {
      const __m512i wv = _mm512_loadu_si512(w);
      for (int i = 0; i < P; ++i) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xt[i * step + k]));
        acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
      }
    }
  }
  if constexpr (P == kBlock) {  // 8 x 8 transpose in registers, then full - 2 count per channel row as int32
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    const __m512i first = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    const __m512i second = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    __m512i pairs[8], quads[8];
    for (int i = 0; i < 4; ++i) {  // pairs of pixels: channels (0, 2, 4, 6) and (1, 3, 5, 7)
      pairs[i] = _mm512_unpacklo_epi64(acc[2 * i], acc[2 * i + 1]);
      pairs[4 + i] = _mm512_unpackhi_epi64(acc[2 * i], acc[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h)  // quads of pixels 0-3 and 4-7: channels (e, e + 4) for e = 0, 2 (and 1, 3)
      for (int e = 0; e < 2; ++e) {
        const int k = 4 * e + 2 * h;
        quads[4 * e + 2 * h] = _mm512_permutex2var_epi64(pairs[k], lo, pairs[k + 1]);
        quads[4 * e + 2 * h + 1] = _mm512_permutex2var_epi64(pairs[k], hi, pairs[k + 1]);
      }
    const __m512i total = _mm512_set1_epi64(full);
    for (int e = 0; e < 2; ++e)
      for (int q = 0; q < 2; ++q) {  // channel j = e + 2 q (+ 4): pixels 0-3 from quads[4e + q], 4-7 from [4e + 2 + q]
        const __m512i a = quads[4 * e + q], b = quads[4 * e + 2 + q];
        const int j = e + 2 * q;
        for (int k = 0; k < 2; ++k) {
          const __m512i col = _mm512_permutex2var_epi64(a, k ? second : first, b);
          const __m256i dot = _mm512_cvtepi64_epi32(_mm512_sub_epi64(total, _mm512_add_epi64(col, col)));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dots + (j + 4 * k) * ld), dot);
        }
      }
    return;
  }
  int64_t cnt[P * kBlock];
  for (int i = 0; i < P; ++i) _mm512_storeu_si512(cnt + i * kBlock, acc[i]);
#elif defined(FASTLMK_AVX2)
  // byte-wise counts by nibble lookup, widened to 64 bits (psadbw) before a byte can pass 255 (31 x 8)
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i nibble = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
  __m256i bytes[P][2], sums[P][2];
  for (int i = 0; i < P; ++i)
    for (int h = 0; h < 2; ++h) bytes[i][h] = sums[i][h] = zero;
  auto count = [&](__m256i v) {
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, nibble)),
                           _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble)));
  };
  auto widen = [&]() {
    for (int i = 0; i < P; ++i)
      for (int h = 0; h < 2; ++h) {
        sums[i][h] = _mm256_add_epi64(sums[i][h], _mm256_sad_epu8(bytes[i][h], zero));
        bytes[i][h] = zero;
      }
  };
  int pending = 0;
  for (int64_t t = 0; t < taps; ++t) {
    const uint64_t* xt = xb + tap_offset[t];
    for (int64_t k = 0; k < wg; ++k, w += kBlock) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 4));
      for (int i = 0; i < P; ++i) {
        const __m256i xv = _mm256_set1_epi64x(static_cast<long long>(xt[i * step + k]));
        bytes[i][0] = _mm256_add_epi8(bytes[i][0], count(_mm256_xor_si256(xv, w0)));
        bytes[i][1] = _mm256_add_epi8(bytes[i][1], count(_mm256_xor_si256(xv, w1)));
      }
      if (++pending == 31) {
        widen();
        pending = 0;
      }
    }
  }
  widen();
  int64_t cnt[P * kBlock];
  for (int i = 0; i < P; ++i)
    for (int h = 0; h < 2; ++h) _mm256_storeu_si256(reinterpret_cast<__m256i*>(cnt + i * kBlock + 4 * h), sums[i][h]);
#else
  int64_t cnt[P * kBlock] = {};
  for (int64_t t = 0; t < taps; ++t) {
    const uint64_t* xt = xb + tap_offset[t];
    for (int64_t k = 0; k < wg; ++k, w += kBlock)
      for (int i = 0; i < P; ++i) {
        const uint64_t xv = xt[i * step + k];
        for (int64_t j = 0; j < kBlock; ++j) cnt[i * kBlock + j] += popcount(xv ^ w[j]);
      }
  }
#endif
  for (int i = 0; i < P; ++i)
    for (int64_t j = 0; j < kBlock; ++j) dots[j * ld + i] = int32_t(full - 2 * cnt[i * kBlock + j]);
}

// y = ((alpha dot + bias) scale + shift) over a row, each step rounded in T (no contraction: -ffp-contract=off).
template <class T>
void affine(const int32_t* dot, int64_t n, T alpha, const T* bias, const T* scale, const T* shift, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = T(dot[i]) * alpha;
  if (bias)
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] + *bias;
  if (scale)
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] * *scale;
  if (shift)
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] + *shift;
}

template <class T>
void conv(const XnorConvArgs& a) {
  const int64_t n = a.n, c = a.c, h = a.h, w = a.w, o = a.o, g = a.groups, ho = a.ho, wo = a.wo;
  const int64_t cg = c / g, og = o / g, wx = words(c), wg = words(cg), gw = g * wg, ow = words(o);
  const int64_t hp = h + 2 * a.pad_h, wp = w + 2 * a.pad_w, taps = a.kh * a.kw, blocks = (og + kBlock - 1) / kBlock;

  // 1. padded, group-aligned input
  std::unique_ptr<uint64_t[]> xp(new uint64_t[static_cast<size_t>(n * hp * wp * gw)]);
#pragma omp parallel for num_threads(a.nthreads) schedule(static)
  for (int64_t prow = 0; prow < n * hp; ++prow) {
    const int64_t ni = prow / hp, iy = prow % hp - a.pad_h;
    uint64_t* dst = xp.get() + prow * wp * gw;
    if (iy < 0 || iy >= h) {
      std::fill(dst, dst + wp * gw, uint64_t(0));
      continue;
    }
    std::fill(dst, dst + a.pad_w * gw, uint64_t(0));
    std::fill(dst + (a.pad_w + w) * gw, dst + wp * gw, uint64_t(0));
    for (int64_t ix = 0; ix < w; ++ix) {
      const uint64_t* src = a.x + ((ni * h + iy) * w + ix) * wx;
      uint64_t* px = dst + (ix + a.pad_w) * gw;
      for (int64_t gi = 0; gi < g; ++gi)
        for (int64_t k = 0; k < wg; ++k) {  // bits [s, s + 64) of the pixel's channel bits, cut at the group end
          const int64_t s = gi * cg + 64 * k, word = s / 64, shift = s % 64;
          uint64_t v = src[word] >> shift;
          if (shift && word + 1 < wx) v |= src[word + 1] << (64 - shift);
          px[gi * wg + k] = v & low_bits(cg - 64 * k);
        }
    }
  }

  // 2. weight blocks, and the value of an all-+1 tap per (channel, tap) for the zero-padding correction
  std::vector<uint64_t> wb(static_cast<size_t>(g * blocks * taps * wg * kBlock), uint64_t(0));
  std::vector<int64_t> ones_tap(static_cast<size_t>(o * taps));
  for (int64_t oi = 0; oi < o; ++oi) {
    const int64_t gi = oi / og, blk = (oi % og) / kBlock, lane = (oi % og) % kBlock;
    for (int64_t t = 0; t < taps; ++t) {
      int64_t ones = 0;
      for (int64_t k = 0; k < wg; ++k) {
        const uint64_t v = a.weight[(oi * taps + t) * wg + k] & low_bits(cg - 64 * k);
        wb[((((gi * blocks + blk) * taps + t) * wg + k) * kBlock) + lane] = v;
        ones += popcount(v);
      }
      ones_tap[oi * taps + t] = cg - 2 * ones;
    }
  }
  std::vector<int64_t> tap_offset(static_cast<size_t>(taps));
  for (int64_t t = 0; t < taps; ++t) tap_offset[t] = ((t / a.kw) * a.dil_h * wp + (t % a.kw) * a.dil_w) * gw;

  const T* alpha = static_cast<const T*>(a.alpha);
  const T* bias = static_cast<const T*>(a.bias);
  const T* scale = static_cast<const T*>(a.scale);
  const T* shift = static_cast<const T*>(a.shift);
  // pixels whose window lies inside the map (no zero-padding correction): ox in [ox_lo, ox_hi)
  const int64_t ox_lo = std::min(wo, (a.pad_w + a.stride_w - 1) / a.stride_w);
  const int64_t last = w - 1 + a.pad_w - (a.kw - 1) * a.dil_w;  // largest window start ox * sw inside the map
  const int64_t ox_hi = last < 0 ? 0 : std::min(wo, last / a.stride_w + 1);

  // 3. one output row of one weight block: dots, zero-padding correction, epilogue. Float output is written
  // plane by plane (a task per (image, block) walks the rows: a few sequential streams) when there are enough
  // planes; packed output, whose words gather the bits of 8 blocks, row by row (a task per (image, row) owns
  // its words).
  struct Scratch {
    std::vector<int32_t> dots;  // (8, Wo): the block's dot products by channel
    std::vector<T> ys;          // (Wo,): one channel's outputs before their signs are packed
    std::vector<uint32_t> signs;  // (Wo,): the block's sign bits per pixel (not bytes, which alias anything)
  };
  auto row_block = [&](Scratch& sc, int64_t ni, int64_t oy, int64_t gi, int64_t blk) {
    const int64_t y0 = oy * a.stride_h - a.pad_h;
    bool rows_inside = true;
    for (int64_t ky = 0; ky < a.kh; ++ky) rows_inside &= y0 + ky * a.dil_h >= 0 && y0 + ky * a.dil_h < h;
    const uint64_t* xrow = xp.get() + (ni * hp + oy * a.stride_h) * wp * gw + gi * wg;
    const uint64_t* wblk = wb.data() + (gi * blocks + blk) * taps * wg * kBlock;
    const int64_t o0 = gi * og + blk * kBlock, lanes = std::min(kBlock, og - blk * kBlock);
    int32_t* d = sc.dots.data();
    for (int64_t ox0 = 0; ox0 < wo;) {
      const uint64_t* xb = xrow + ox0 * a.stride_w * gw;
      const int64_t pn = wo - ox0 >= kTile ? kTile : 1;
      if (pn == kTile)
        popcounts<kTile>(xb, a.stride_w * gw, tap_offset.data(), taps, wg, wblk, taps * cg, d + ox0, wo);
      else
        popcounts<1>(xb, a.stride_w * gw, tap_offset.data(), taps, wg, wblk, taps * cg, d + ox0, wo);
      ox0 += pn;
    }
    if (!a.pad_ones)  // take the off-map taps back out (they were read as +1)
      for (int64_t ox = 0; ox < wo; ++ox) {
        if (rows_inside && ox >= ox_lo && ox < ox_hi) continue;
        const int64_t x0 = ox * a.stride_w - a.pad_w;
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t iy = y0 + (t / a.kw) * a.dil_h, ix = x0 + (t % a.kw) * a.dil_w;
          if (iy >= 0 && iy < h && ix >= 0 && ix < w) continue;
          for (int64_t j = 0; j < lanes; ++j) d[j * wo + ox] -= int32_t(ones_tap[(o0 + j) * taps + t]);
        }
      }
    if (!a.packed_out) {
      for (int64_t j = 0; j < lanes; ++j) {
        const int64_t oi = o0 + j;
        affine(d + j * wo, wo, alpha[oi], bias ? bias + oi : nullptr, scale ? scale + oi : nullptr,
               shift ? shift + oi : nullptr, static_cast<T*>(a.out) + ((ni * o + oi) * ho + oy) * wo);
      }
      return;
    }
    uint32_t* signs = sc.signs.data();
    T* ys = sc.ys.data();
    std::fill(signs, signs + wo, uint32_t(0));
    for (int64_t j = 0; j < lanes; ++j) {
      const int64_t oi = o0 + j;
      affine(d + j * wo, wo, alpha[oi], bias ? bias + oi : nullptr, scale ? scale + oi : nullptr,
             shift ? shift + oi : nullptr, ys);
      for (int64_t ox = 0; ox < wo; ++ox) signs[ox] |= uint32_t(ys[ox] < T(0)) << j;
    }
    // the block's sign bits start at bit o0 % 64 of the pixel's words and may spill into the next word
    uint64_t* prow = static_cast<uint64_t*>(a.out) + (ni * ho + oy) * wo * ow;
    const int64_t word = o0 / 64, bit = o0 % 64;
    for (int64_t ox = 0; ox < wo; ++ox) {
      prow[ox * ow + word] |= uint64_t(signs[ox]) << bit;
      if (bit > 64 - kBlock && word + 1 < ow) prow[ox * ow + word + 1] |= uint64_t(signs[ox]) >> (64 - bit);
    }
  };

#pragma omp parallel num_threads(a.nthreads)
  {
    Scratch sc{std::vector<int32_t>(static_cast<size_t>(kBlock * wo)), std::vector<T>(static_cast<size_t>(wo)),
               std::vector<uint32_t>(static_cast<size_t>(wo))};
    if (a.packed_out || n * g * blocks < 4 * int64_t(a.nthreads)) {  // by rows (also when planes are few)
#pragma omp for schedule(static)
      for (int64_t row = 0; row < n * ho; ++row) {
        if (a.packed_out) {
          uint64_t* prow = static_cast<uint64_t*>(a.out) + row * wo * ow;
          std::fill(prow, prow + wo * ow, uint64_t(0));
        }
        for (int64_t gb = 0; gb < g * blocks; ++gb) row_block(sc, row / ho, row % ho, gb / blocks, gb % blocks);
      }
    } else {
#pragma omp for schedule(static)
      for (int64_t task = 0; task < n * g * blocks; ++task) {
        const int64_t gb = task % (g * blocks);
        for (int64_t oy = 0; oy < ho; ++oy) row_block(sc, task / (g * blocks), oy, gb / blocks, gb % blocks);
      }
    }
  }
}

}  // namespace

int64_t pack_bits(const PackArgs& a) {
  int64_t nans = 0;
  by_dtype(a.dtype == kFloat64 ? kFloat64 : kFloat32, a.dtype, Pack{a, &nans});
  return nans;
}

void binary_conv2d(const XnorConvArgs& a) {
  if (a.dtype == kFloat64)
    conv<double>(a);
  else
    conv<float>(a);
}

}  // namespace FASTLMK_ISA_NS
}  // namespace fastlmk
