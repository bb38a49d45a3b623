// How many SIMD registers the CPU kernels may plan their register tiles for.
#pragma once

namespace aigc {

// AVX-512VL lets 256-bit code use 32 registers instead of 16.
#ifdef __AVX512VL__
constexpr int kVectorRegisters = 32;
#else
constexpr int kVectorRegisters = 16;
#endif

}  // namespace aigc
