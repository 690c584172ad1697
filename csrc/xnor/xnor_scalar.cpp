// Baseline x86-64 / portable build of the XNOR kernels (software popcount).
#define FASTLMK_ISA_NS scalar
#include "xnor_kernels.h"
