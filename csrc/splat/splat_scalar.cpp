// Baseline x86-64 / portable build of the splat kernels.
#define FASTLMK_ISA_NS scalar
#include "splat_kernels.h"
