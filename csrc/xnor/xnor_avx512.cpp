// AVX-512 build of the XNOR kernels (VPOPCNTQ), selected at run time (see xnor.cpp) on CPUs with
// AVX512F/BW/VL/VPOPCNTDQ. The standard headers are included before the target pragma so that their inline
// functions stay baseline code.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC target("avx2,fma,popcnt,avx512f,avx512bw,avx512vl,avx512vpopcntdq")
#define FASTLMK_ISA_NS avx512
#define FASTLMK_AVX512
#include "xnor_kernels.h"
#endif
