// Links `extern __shared__ T name[]` declarations to the dynamic shared memory pool.
//
// In the emulator `__shared__` is `thread_local`, so `extern __shared__ float
// smem[];` declares a thread-local variable defined nowhere. The loader
// (tests/emulation/__init__.py) finds these names in the sources and defines
// AIGC_EMU_DYNSMEM_<i> = <linker name> and AIGC_EMU_DYNSMEM_INIT_<i> = <its
// TLS init function>; this header then makes each name a TLS alias of
// emu::detail::dyn_smem_pool, and each init function an empty one (the
// compiler calls it before touching an extern thread_local). Weak symbols, so
// several translation units may carry the same aliases.
#pragma once

#include "emu_runtime.h"

#define AIGC_EMU_STR2(x) #x
#define AIGC_EMU_STR(x) AIGC_EMU_STR2(x)
#define AIGC_EMU_TLS_ALIAS(sym, init)                                                        \
  __asm__(".weak " AIGC_EMU_STR(sym) "\n.type " AIGC_EMU_STR(sym) ",@tls_object\n.set "     \
          AIGC_EMU_STR(sym) ",_ZN3emu6detail13dyn_smem_poolE\n"                            \
          ".pushsection .text." AIGC_EMU_STR(init) ",\"axG\",@progbits," AIGC_EMU_STR(init) \
          ",comdat\n.weak " AIGC_EMU_STR(init) "\n.type " AIGC_EMU_STR(init) ",@function\n"    \
          AIGC_EMU_STR(init) ":\n  ret\n.popsection\n");

#if defined(AIGC_EMU_DYNSMEM_0)
namespace emu::detail {
// Makes this translation unit emit the pool, which the aliases point into.
__attribute__((used)) inline void* dyn_smem_anchor() { return dyn_smem_pool; }
}  // namespace emu::detail
#endif
#if defined(AIGC_EMU_DYNSMEM_0)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_0, AIGC_EMU_DYNSMEM_INIT_0)
#endif
#if defined(AIGC_EMU_DYNSMEM_1)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_1, AIGC_EMU_DYNSMEM_INIT_1)
#endif
#if defined(AIGC_EMU_DYNSMEM_2)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_2, AIGC_EMU_DYNSMEM_INIT_2)
#endif
#if defined(AIGC_EMU_DYNSMEM_3)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_3, AIGC_EMU_DYNSMEM_INIT_3)
#endif
#if defined(AIGC_EMU_DYNSMEM_4)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_4, AIGC_EMU_DYNSMEM_INIT_4)
#endif
#if defined(AIGC_EMU_DYNSMEM_5)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_5, AIGC_EMU_DYNSMEM_INIT_5)
#endif
#if defined(AIGC_EMU_DYNSMEM_6)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_6, AIGC_EMU_DYNSMEM_INIT_6)
#endif
#if defined(AIGC_EMU_DYNSMEM_7)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_7, AIGC_EMU_DYNSMEM_INIT_7)
#endif
#if defined(AIGC_EMU_DYNSMEM_8)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_8, AIGC_EMU_DYNSMEM_INIT_8)
#endif
#if defined(AIGC_EMU_DYNSMEM_9)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_9, AIGC_EMU_DYNSMEM_INIT_9)
#endif
#if defined(AIGC_EMU_DYNSMEM_10)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_10, AIGC_EMU_DYNSMEM_INIT_10)
#endif
#if defined(AIGC_EMU_DYNSMEM_11)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_11, AIGC_EMU_DYNSMEM_INIT_11)
#endif
#if defined(AIGC_EMU_DYNSMEM_12)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_12, AIGC_EMU_DYNSMEM_INIT_12)
#endif
#if defined(AIGC_EMU_DYNSMEM_13)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_13, AIGC_EMU_DYNSMEM_INIT_13)
#endif
#if defined(AIGC_EMU_DYNSMEM_14)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_14, AIGC_EMU_DYNSMEM_INIT_14)
#endif
#if defined(AIGC_EMU_DYNSMEM_15)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_15, AIGC_EMU_DYNSMEM_INIT_15)
#endif
#if defined(AIGC_EMU_DYNSMEM_16)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_16, AIGC_EMU_DYNSMEM_INIT_16)
#endif
#if defined(AIGC_EMU_DYNSMEM_17)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_17, AIGC_EMU_DYNSMEM_INIT_17)
#endif
#if defined(AIGC_EMU_DYNSMEM_18)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_18, AIGC_EMU_DYNSMEM_INIT_18)
#endif
#if defined(AIGC_EMU_DYNSMEM_19)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_19, AIGC_EMU_DYNSMEM_INIT_19)
#endif
#if defined(AIGC_EMU_DYNSMEM_20)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_20, AIGC_EMU_DYNSMEM_INIT_20)
#endif
#if defined(AIGC_EMU_DYNSMEM_21)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_21, AIGC_EMU_DYNSMEM_INIT_21)
#endif
#if defined(AIGC_EMU_DYNSMEM_22)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_22, AIGC_EMU_DYNSMEM_INIT_22)
#endif
#if defined(AIGC_EMU_DYNSMEM_23)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_23, AIGC_EMU_DYNSMEM_INIT_23)
#endif
#if defined(AIGC_EMU_DYNSMEM_24)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_24, AIGC_EMU_DYNSMEM_INIT_24)
#endif
#if defined(AIGC_EMU_DYNSMEM_25)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_25, AIGC_EMU_DYNSMEM_INIT_25)
#endif
#if defined(AIGC_EMU_DYNSMEM_26)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_26, AIGC_EMU_DYNSMEM_INIT_26)
#endif
#if defined(AIGC_EMU_DYNSMEM_27)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_27, AIGC_EMU_DYNSMEM_INIT_27)
#endif
#if defined(AIGC_EMU_DYNSMEM_28)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_28, AIGC_EMU_DYNSMEM_INIT_28)
#endif
#if defined(AIGC_EMU_DYNSMEM_29)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_29, AIGC_EMU_DYNSMEM_INIT_29)
#endif
#if defined(AIGC_EMU_DYNSMEM_30)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_30, AIGC_EMU_DYNSMEM_INIT_30)
#endif
#if defined(AIGC_EMU_DYNSMEM_31)
AIGC_EMU_TLS_ALIAS(AIGC_EMU_DYNSMEM_31, AIGC_EMU_DYNSMEM_INIT_31)
#endif
#if defined(AIGC_EMU_DYNSMEM_32)
#error "more than 32 distinct extern __shared__ names: raise the limit in emu_dynsmem_link.h"
#endif
