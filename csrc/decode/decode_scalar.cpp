// Baseline x86-64 / portable build of the decoding kernels.
#define FASTLMK_ISA_NS scalar
#include "decode_kernels.h"
