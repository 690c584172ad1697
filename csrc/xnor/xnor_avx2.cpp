// AVX2 build of the XNOR kernels (popcount by nibble lookup), selected at run time (see xnor.cpp). The
// standard headers are included before the target pragma so that their inline functions stay baseline code.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC target("avx2,fma,popcnt")
#define FASTLMK_ISA_NS avx2
#define FASTLMK_AVX2
#include "xnor_kernels.h"
#endif
