// Baseline x86-64 / portable build of the encoding kernels.
#define FASTLMK_ISA_NS scalar
#include "encode_kernels.h"
