// AVX2 + FMA build of the encoding kernels, selected at run time (see encode.cpp). The standard headers
// are included before the target pragma so that their inline functions stay baseline code.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx2,fma")
#define FASTLMK_ISA_NS avx2
#include "encode_kernels.h"
#endif
