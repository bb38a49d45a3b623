// CUDA's device math that the C library lacks: min/max, the fast-math
// intrinsics (__expf, __logf, __fdividef, ...), explicit roundings, bit casts.
//
// The fast intrinsics follow the GPU's algorithms where they matter for
// accuracy: __expf(x) is ex2.approx(x * log2 e), so its error grows with |x|
// as on the GPU; __fdividef returns 0 for 2^126 < |y| < 2^128 as documented.
#pragma once

#include <math.h>  // libstdc++'s math.h also brings std's float overloads (exp(float), ...) into ::

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "emu_fp16.h"

// ---- min / max: the overload set of CUDA's math_functions.hpp --------------------------
// Plain overloads (not templates), so that with `using namespace std;` they
// win over std::min as CUDA's do; mixed signedness gives the unsigned type.
#define AIGC_EMU_MINMAX(R, A, B)                                 \
  inline R min(A a, B b) {                                       \
    return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
  }                                                              \
  inline R max(A a, B b) {                                       \
    return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
  }
AIGC_EMU_MINMAX(int, int, int)
AIGC_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
AIGC_EMU_MINMAX(unsigned int, int, unsigned int)
AIGC_EMU_MINMAX(unsigned int, unsigned int, int)
AIGC_EMU_MINMAX(long, long, long)
AIGC_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
AIGC_EMU_MINMAX(unsigned long, long, unsigned long)
AIGC_EMU_MINMAX(unsigned long, unsigned long, long)
AIGC_EMU_MINMAX(long long, long long, long long)
AIGC_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
AIGC_EMU_MINMAX(unsigned long long, long long, unsigned long long)
AIGC_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef AIGC_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(double(a), b); }
inline double max(float a, double b) { return std::fmax(double(a), b); }
inline double min(double a, float b) { return std::fmin(a, double(b)); }
inline double max(double a, float b) { return std::fmax(a, double(b)); }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// ---- bit casts ---------------------------------------------------------------------
inline float __int_as_float(int x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline float __uint_as_float(unsigned x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline int __float_as_int(float f) {
  int x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline unsigned __float_as_uint(float f) {
  unsigned x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline double __longlong_as_double(long long x) {
  double d;
  std::memcpy(&d, &x, 8);
  return d;
}
inline long long __double_as_longlong(double d) {
  long long x;
  std::memcpy(&x, &d, 8);
  return x;
}
inline int __double2hiint(double d) { return int(uint64_t(__double_as_longlong(d)) >> 32); }
inline int __double2loint(double d) { return int(uint32_t(uint64_t(__double_as_longlong(d)))); }
inline double __hiloint2double(int hi, int lo) {
  return __longlong_as_double((long long)((uint64_t(uint32_t(hi)) << 32) | uint32_t(lo)));
}

// ---- float math missing from the C library -------------------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / std::cbrt(x); }
inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752); }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return std::isnan(x) ? 0.0f : std::fmin(std::fmax(x, 0.0f), 1.0f); }

// erfinv by Giles' approximation refined with two Newton steps on erf.
inline double erfinv(double y) {
  if (y <= -1.0) return y == -1.0 ? -INFINITY : NAN;
  if (y >= 1.0) return y == 1.0 ? INFINITY : NAN;
  double w = -std::log((1.0 - y) * (1.0 + y)), x;
  if (w < 5.0) {
    w -= 2.5;
    x = 2.81022636e-08;
    for (double c : {3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                     -0.00417768164, 0.246640727, 1.50140941})
      x = c + x * w;
  } else {
    w = std::sqrt(w) - 3.0;
    x = -0.000200214257;
    for (double c : {0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047,
                     1.00167406, 2.83297682})
      x = c + x * w;
  }
  x *= y;
  for (int i = 0; i < 2; ++i) x -= (std::erf(x) - y) / (1.1283791670955126 * std::exp(-x * x));
  return x;
}
inline float erfinvf(float y) { return float(erfinv(double(y))); }
inline float erfcinvf(float y) { return float(erfinv(1.0 - double(y))); }
inline double erfcinv(double y) { return erfinv(1.0 - y); }
inline float normcdfinvf(float p) { return float(1.4142135623730951 * erfinv(2.0 * double(p) - 1.0)); }
inline double normcdfinv(double p) { return 1.4142135623730951 * erfinv(2.0 * p - 1.0); }

// ---- fast-math intrinsics ------------------------------------------------------------
inline float __expf(float x) { return std::exp2(x * 1.4426950408889634f); }
inline float __exp10f(float x) { return std::exp2(x * 3.3219280948873622f); }
inline float __logf(float x) { return std::log2(x) * 0.69314718055994531f; }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log2(x) * 0.30102999566398120f; }
inline float __powf(float x, float y) { return std::exp2(y * std::log2(x)); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
inline float __tanhf(float x) { return std::tanh(x); }
inline float __fdividef(float x, float y) {
  // The GPU computes x * rcp(y); for 2^126 < |y| < 2^128 the reciprocal is
  // flushed to zero and so is the result.
  const float ay = std::fabs(y);
  if (ay > 8.507059173023462e+37f && std::isfinite(ay)) return std::isfinite(x) ? 0.0f * x : NAN;
  return x / y;
}
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline double __dadd_rn(double x, double y) { return x + y; }
inline double __dmul_rn(double x, double y) { return x * y; }
inline double __fma_rn(double x, double y, double z) { return std::fma(x, y, z); }

// ---- conversions with explicit rounding --------------------------------------------------
inline int __float2int_rn(float f) { return emu::detail::float_to_int<int>(f, emu::detail::Round::Nearest); }
inline int __float2int_rz(float f) { return emu::detail::float_to_int<int>(f, emu::detail::Round::Zero); }
inline int __float2int_rd(float f) { return emu::detail::float_to_int<int>(f, emu::detail::Round::Down); }
inline int __float2int_ru(float f) { return emu::detail::float_to_int<int>(f, emu::detail::Round::Up); }
inline unsigned __float2uint_rn(float f) {
  return emu::detail::float_to_int<unsigned>(f, emu::detail::Round::Nearest);
}
inline unsigned __float2uint_rz(float f) { return emu::detail::float_to_int<unsigned>(f, emu::detail::Round::Zero); }
inline unsigned __float2uint_rd(float f) { return emu::detail::float_to_int<unsigned>(f, emu::detail::Round::Down); }
inline unsigned __float2uint_ru(float f) { return emu::detail::float_to_int<unsigned>(f, emu::detail::Round::Up); }
inline long long __float2ll_rn(float f) {
  return emu::detail::float_to_int<long long>(f, emu::detail::Round::Nearest);
}
inline long long __float2ll_rz(float f) { return emu::detail::float_to_int<long long>(f, emu::detail::Round::Zero); }
inline int __double2int_rn(double d) { return emu::detail::float_to_int<int>(d, emu::detail::Round::Nearest); }
inline float __int2float_rn(int i) { return float(i); }
inline float __uint2float_rn(unsigned i) { return float(i); }
inline float __ll2float_rn(long long i) { return float(i); }
inline float __double2float_rn(double d) { return float(d); }

// The constants of math_constants.h that kernels use most (cuda_compat.cuh
// includes the real header under nvcc).
#define CUDART_INF_F __int_as_float(0x7f800000)
#define CUDART_NAN_F __int_as_float(0x7fffffff)
#define CUDART_MIN_DENORM_F __int_as_float(0x00000001)
#define CUDART_MAX_NORMAL_F __int_as_float(0x7f7fffff)
#define CUDART_NEG_ZERO_F __int_as_float(static_cast<int>(0x80000000u))
#define CUDART_ZERO_F 0.0F
#define CUDART_ONE_F 1.0F
#define CUDART_SQRT_HALF_F 0.707106781F
#define CUDART_PI_F 3.141592654F
#define CUDART_L2E_F 1.442695041F
#define CUDART_LN2_F 0.693147181F
#define CUDART_LNT_F 2.302585093F
#define CUDART_INF __longlong_as_double(0x7ff0000000000000LL)
#define CUDART_NAN __longlong_as_double(static_cast<long long>(0xfff8000000000000ULL))
#define CUDART_PI 3.1415926535897931e+0
#define CUDART_LN2 6.9314718055994529e-1
#define CUDART_L2E 1.4426950408889634e+0
