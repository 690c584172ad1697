// Run-time instruction-set selection shared by every CPU kernel family. Each family compiles its kernel
// header per instruction set (namespaces `scalar` and `avx2`, and `avx512` where a family gains from it) and
// its entry points call FASTLMK_BY_ISA (or FASTLMK_BY_ISA512). With AVX-512 active, a family without an
// AVX-512 build runs its AVX2 build.
#pragma once

#include "common.h"

namespace fastlmk {

Isa active_isa();
bool isa_supported(Isa isa);
void set_isa(Isa isa);  // throws std::invalid_argument when the CPU lacks `isa`

}  // namespace fastlmk

#if defined(__x86_64__) || defined(_M_X64)
#define FASTLMK_BY_ISA(fn, ...) \
  (::fastlmk::active_isa() == ::fastlmk::Isa::kScalar ? scalar::fn(__VA_ARGS__) : avx2::fn(__VA_ARGS__))
#define FASTLMK_BY_ISA512(fn, ...) \
  (::fastlmk::active_isa() == ::fastlmk::Isa::kAvx512 ? avx512::fn(__VA_ARGS__) : FASTLMK_BY_ISA(fn, __VA_ARGS__))
#else
#define FASTLMK_BY_ISA(fn, ...) scalar::fn(__VA_ARGS__)
#define FASTLMK_BY_ISA512(fn, ...) scalar::fn(__VA_ARGS__)
#endif
