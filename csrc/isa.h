// Run-time instruction-set selection shared by every CPU kernel family. Each family compiles its kernel
// header twice (namespaces `scalar` and `avx2`) and its entry points call FASTLMK_BY_ISA.
#pragma once

#include "common.h"

namespace fastlmk {

Isa active_isa();
bool isa_supported(Isa isa);
void set_isa(Isa isa);  // throws std::invalid_argument when the CPU lacks `isa`

}  // namespace fastlmk

#if defined(__x86_64__) || defined(_M_X64)
#define FASTLMK_BY_ISA(fn, ...) \
  (::fastlmk::active_isa() == ::fastlmk::Isa::kAvx2 ? avx2::fn(__VA_ARGS__) : scalar::fn(__VA_ARGS__))
#else
#define FASTLMK_BY_ISA(fn, ...) scalar::fn(__VA_ARGS__)
#endif
