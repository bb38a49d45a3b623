// The vector layer of the CPU kernels: 32-byte vectors (8 floats, 4 doubles),
// the loaders that widen bf16 / fp16 to float32, horizontal sums and maxima,
// the AVX-512 (16-float) counterparts the kernels share, and the vector math
// more than one kernel needs (exp, 2^x, tanh, sigmoid).
//
// Instruction sets are chosen when the library is compiled, never at run
// time: setup.py builds with -march=native (the machine it runs on), or with
// -march=x86-64-v3 (AVX2, FMA, F16C, no AVX-512) under AIGC_PORTABLE=1.
// AIGC_SIMD_AVX2 marks the AVX2 + FMA + F16C paths; the AVX-512 paths test
// __AVX512F__ and its siblings where they are written. Without AVX2, Vec<T>
// is still a GCC/Clang generic vector and every function here keeps a
// portable body, so the kernels compile (slowly) anywhere.
//
// Not here: the sampler's exp (aigc::exp_nonpos in kernels/philox.h and its
// 8-lane form in sample.cpp). It must give the same bits as the CUDA kernel
// and the PyTorch reference, so it avoids FMA and uses its own polynomial and
// rounding steps; exp_ps below is free to use FMA and be faster.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define AIGC_SIMD_AVX2 1
#endif

namespace aigc {

// How many vector registers the kernels may plan their register tiles for:
// AVX-512VL lets 256-bit code use 32 registers instead of 16.
#ifdef __AVX512VL__
constexpr int kVectorRegisters = 32;
#else
constexpr int kVectorRegisters = 16;
#endif

namespace simd {

// ------------------------------------------------------- 32-byte vectors --
// GCC/Clang vector extensions: arithmetic and comparisons are operators, and
// a Vec<float> passes to and from the _mm256_*_ps intrinsics as is. The
// intrinsics below are where the compiler would otherwise emit poorer code
// (broadcast, fused multiply-add, horizontal reductions).
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
using Vec8f = Vec<float>;
template <typename T>
constexpr int kLanes = 32 / sizeof(T);

// Unaligned loads and stores. The intrinsics where there are some: GCC
// moves a memcpy'd vector through the integer domain (vmovdqu) and then
// copies it between registers before the FMAs that use it.
#ifdef AIGC_SIMD_AVX2
inline Vec<float> loadu(const float* p) { return _mm256_loadu_ps(p); }
inline Vec<double> loadu(const double* p) { return _mm256_loadu_pd(p); }
inline void storeu(float* p, Vec<float> v) { _mm256_storeu_ps(p, v); }
inline void storeu(double* p, Vec<double> v) { _mm256_storeu_pd(p, v); }
#else
inline Vec<float> loadu(const float* p) {
  Vec<float> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline Vec<double> loadu(const double* p) {
  Vec<double> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeu(float* p, Vec<float> v) { std::memcpy(p, &v, sizeof v); }
inline void storeu(double* p, Vec<double> v) { std::memcpy(p, &v, sizeof v); }
#endif

// 8 bf16 or fp16 values widened to float32 (exactly: every bf16 and fp16
// value is a float32 value).
#ifdef AIGC_SIMD_AVX2
inline Vec8f loadu(const c10::BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline Vec8f loadu(const c10::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#else
template <typename T>
inline Vec8f widen8(const T* p) {
  Vec8f v;
  for (int i = 0; i < 8; ++i) v[i] = static_cast<float>(p[i]);
  return v;
}
inline Vec8f loadu(const c10::BFloat16* p) { return widen8(p); }
inline Vec8f loadu(const c10::Half* p) { return widen8(p); }
#endif

#ifdef AIGC_SIMD_AVX2
inline Vec<float> splat(float s) { return _mm256_set1_ps(s); }
inline Vec<double> splat(double s) { return _mm256_set1_pd(s); }
inline Vec<float> fmadd(Vec<float> a, Vec<float> b, Vec<float> c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline Vec<double> fmadd(Vec<double> a, Vec<double> b, Vec<double> c) {
  return _mm256_fmadd_pd(a, b, c);
}
// The lane-wise maximum; where a lane of either is NaN, b's lane.
inline Vec8f vmax(Vec8f a, Vec8f b) { return _mm256_max_ps(a, b); }
#else
inline Vec<float> splat(float s) { return Vec<float>{} + s; }
inline Vec<double> splat(double s) { return Vec<double>{} + s; }
inline Vec<float> fmadd(Vec<float> a, Vec<float> b, Vec<float> c) { return a * b + c; }
inline Vec<double> fmadd(Vec<double> a, Vec<double> b, Vec<double> c) { return a * b + c; }
inline Vec8f vmax(Vec8f a, Vec8f b) { return a > b ? a : b; }
#endif

// The sum and the maximum of the 8 lanes.
#ifdef AIGC_SIMD_AVX2
inline float hsum(Vec8f v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(Vec8f v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#else
inline float hsum(Vec8f v) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}
inline float hmax(Vec8f v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, v[i]);
  return m;
}
#endif

// Pins a loaded vector to a register. A vector feeding several FMAs would
// otherwise be folded into each of them as a memory operand by GCC, one load
// per FMA: the load ports, not the FMA units, then bound the loop.
#ifdef AIGC_SIMD_AVX2
inline void in_register(Vec8f& v) { asm("" : "+x"(v)); }
#else
inline void in_register(Vec8f&) {}
#endif

// ------------------------------------------------------------ vector math --
#ifdef AIGC_SIMD_AVX2
// e^r * 2^n for |r| <= ln(2)/2 and integer n in [-126, 127]: the Cephes expf
// polynomial (degree 5 in r beyond 1 + r, ~1 ulp), the power of two built in
// the exponent bits. The shared core of exp_ps and exp2_nonpos_ps.
inline __m256 exp_reduced_ps(__m256 r, __m256 n) {
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i pow2n =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(pow2n));
}

// e^x, x clamped to [-88.38, 88.38] (NaN stays NaN): Cephes expf, reduced by
// ln 2 in two parts (the high part exact in float) so r keeps its low bits.
inline Vec8f exp_ps(Vec8f v) {
  __m256 x = v;
  // max/min return their second operand when one is NaN: keep x second so NaN stays NaN.
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f),
                    _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  return exp_reduced_ps(x, fx);
}

// 2^x for x <= 0 (0 below -126 and for NaN), as the online softmax needs it:
// x - round(x) is exact, so the only rounding before the polynomial is the
// product by ln 2.
inline Vec8f exp2_nonpos_ps(Vec8f v) {
  const __m256 keep = _mm256_cmp_ps(v, _mm256_set1_ps(-126.0f), _CMP_GE_OQ);
  const __m256 x = _mm256_max_ps(v, _mm256_set1_ps(-126.0f));
  const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_mul_ps(_mm256_sub_ps(x, n), _mm256_set1_ps(0.693147180559945309f));
  return _mm256_and_ps(exp_reduced_ps(r, n), keep);
}

inline Vec8f sigmoid_ps(Vec8f x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// Cephes tanhf: odd polynomial below 0.625, 1 - 2/(exp(2|x|) + 1) above.
inline Vec8f tanh_ps(Vec8f v) {
  const __m256 x = v;
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign_mask, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 e = exp_ps(_mm256_add_ps(a, a));
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  big = _mm256_or_ps(big, _mm256_and_ps(sign_mask, x));
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}
#else
template <typename F>
inline Vec8f lanewise(Vec8f v, F f) {
  for (int i = 0; i < 8; ++i) v[i] = f(v[i]);
  return v;
}
inline Vec8f exp_ps(Vec8f v) {
  return lanewise(v, [](float x) { return std::exp(x); });
}
inline Vec8f exp2_nonpos_ps(Vec8f v) {
  return lanewise(v, [](float x) { return std::exp2(x); });
}
inline Vec8f sigmoid_ps(Vec8f v) {
  return lanewise(v, [](float x) { return 1.0f / (1.0f + std::exp(-x)); });
}
inline Vec8f tanh_ps(Vec8f v) {
  return lanewise(v, [](float x) { return std::tanh(x); });
}
#endif

// ------------------------------------------------------- 64-byte vectors --
#ifdef __AVX512F__
inline __m512 loadu16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 loadu16(const c10::BFloat16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  // maskz forms: the plain ones trip GCC 12's uninitialized warnings.
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, h), 16));
}
inline __m512 loadu16(const c10::Half* p) {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The two 8-lane halves of v added. (Not _mm512_reduce_add_ps for the sums:
// GCC 12 warns on its undefined upper halves.)
inline Vec8f fold(__m512 v) {
  const __m256 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm256_add_ps(lo, hi);
}
inline float hsum(__m512 v) { return hsum(fold(v)); }

// in_register for a zmm vector ("v": any of the 32 registers).
inline void in_register(__m512& v) { asm("" : "+v"(v)); }
#endif

}  // namespace simd
}  // namespace aigc
