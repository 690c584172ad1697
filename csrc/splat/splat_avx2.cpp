// AVX2 + FMA build of the splat kernels, selected at run time (see splat.cpp). The standard headers are
// included before the target pragma so that their inline functions stay baseline code.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx2,fma")
#define FASTLMK_ISA_NS avx2
#define FASTLMK_AVX2
#include "splat_kernels.h"
#endif
