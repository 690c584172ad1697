// Shared helpers for the CPU kernels: dtype codes, float16/bfloat16 conversion, dtype dispatch, a
// vectorisable exp.
//
// Everything here has internal linkage (static inline) because the kernel headers are compiled once per
// instruction set (scalar and AVX2); a shared out-of-line copy could otherwise leak AVX2 code into the
// scalar path at link time.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace fastlmk {

// Codes passed from Python for the element type of a buffer (see fastlmk/_native.py).
enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Instruction sets a kernel family is compiled for.
enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

struct half_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };

static inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// IEEE binary16 <-> float32, round to nearest even (as torch's .to(torch.float16)).
static inline float half_to_float(half_t h) {
  const uint32_t sign = (uint32_t(h.bits) & 0x8000u) << 16;
  const uint32_t e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
  if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float32
    const float v = float(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return bits_to_float(sign | 0x7f800000u | (m << 13));
  return bits_to_float(sign | ((e + 112u) << 23) | (m << 13));
}

static inline half_t float_to_half(float f) {
  uint32_t x = float_to_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return {uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u))};
  if (ax >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};  // rounds past 65504: inf
  if (ax < 0x38800000u) {  // below the smallest normal half: count units of 2^-24, ties to even
    return {uint16_t(sign | uint16_t(std::nearbyint(bits_to_float(ax) * 16777216.0f)))};
  }
  ax += 0xc8000fffu + ((ax >> 13) & 1u);  // rebias exponent (127 -> 15) and round to nearest even
  return {uint16_t(sign | (ax >> 13))};
}

static inline float bf16_to_float(bf16_t h) { return bits_to_float(uint32_t(h.bits) << 16); }

static inline bf16_t float_to_bf16(float f) {
  uint32_t x = float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return {uint16_t((x >> 16) | 0x40u)};  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return {uint16_t(x >> 16)};
}

// load<S>(T) and store(T&, S): element conversion between a storage type T and a compute type S.
template <class S> static inline S load(float v) { return S(v); }
template <class S> static inline S load(double v) { return S(v); }
template <class S> static inline S load(half_t v) { return S(half_to_float(v)); }
template <class S> static inline S load(bf16_t v) { return S(bf16_to_float(v)); }

static inline void store(float& d, float v) { d = v; }
static inline void store(double& d, double v) { d = v; }
static inline void store(half_t& d, float v) { d = float_to_half(v); }
static inline void store(bf16_t& d, float v) { d = float_to_bf16(v); }

// Runs f.template run<S, T>() for the (compute S, storage T) pair of the given dtype codes: float64 maps
// compute in double, every other storage type in float.
template <class F>
static void by_dtype(int compute_dtype, int storage_dtype, const F& f) {
  if (compute_dtype == kFloat64 && storage_dtype == kFloat64) return f.template run<double, double>();
  if (compute_dtype == kFloat32) {
    switch (storage_dtype) {
      case kFloat32: return f.template run<float, float>();
      case kFloat16: return f.template run<float, half_t>();
      case kBFloat16: return f.template run<float, bf16_t>();
    }
  }
  throw std::invalid_argument("fastlmk: unsupported dtype combination");
}

// exp(x) for x <= 88 that compilers vectorise (Cephes' expf: range reduction by ln 2 and a degree-6
// polynomial, within 2 ulp; 0 below -87.3, where expf is subnormal; NaN stays NaN). Branch-free once
// compiled with -fno-trapping-math. Double uses std::exp.
static inline float vexp(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : (x == x ? x : 0.0f));
  const int32_t n = int32_t(xc * 1.44269504088896341f + 128.5f) - 128;  // round(xc / ln 2), in [-126, 127]
  const float fn = float(n);
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float e = p * bits_to_float(uint32_t(n + 127) << 23);
  return x != x ? x : (x < -87.3f ? 0.0f : e);
}
static inline double vexp(double x) { return std::exp(x); }

}  // namespace fastlmk
