// __half, __nv_bfloat16 and their pairs, as cuda_fp16.h and cuda_bf16.h
// define them: 2-byte storage types with explicit conversion intrinsics.
//
// Conversions round to nearest even and are bit-exact with the GPU's
// cvt.rn.f16.f32 / cvt.rn.bf16.f32 (NaN becomes CUDA's canonical 0x7fff).
// Arithmetic (__hadd, __hmul, ...) is computed in float and rounded once:
// for +, -, *, / of 16-bit operands that is the correctly rounded result
// (float has more than 2p+2 bits), as the GPU gives.
//
// The implicit conversions and operators follow CUDA's opt-out macros, which
// torch's nvcc flags define (__CUDA_NO_HALF_OPERATORS__,
// __CUDA_NO_HALF_CONVERSIONS__, __CUDA_NO_BFLOAT16_CONVERSIONS__,
// __CUDA_NO_HALF2_OPERATORS__): code that compiles here compiles there.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "emu_types.h"

namespace emu::detail {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// float -> binary16, round to nearest even (F. Giesen's float_to_half_fast3_rtne).
inline uint16_t f32_to_f16_rn(float value) {
  uint32_t u = f32_bits(value);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint16_t out;
  if (u >= (127u + 16u) << 23) {  // overflows to infinity, or is inf/NaN
    out = u > 0x7f800000u ? 0x7fff : 0x7c00;
  } else if (u < (113u << 23)) {  // a subnormal half or zero: let the FPU round
    const float magic = f32_from_bits(((127u - 15u) + (23u - 10u) + 1u) << 23);
    const float sum = f32_from_bits(u) + magic;
    out = uint16_t(f32_bits(sum) - f32_bits(magic));
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += (uint32_t(15 - 127) << 23) + 0xfffu;
    u += mant_odd;
    out = uint16_t(u >> 13);
  }
  return uint16_t(out | (sign >> 16));
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float mag = float(mant) * 5.9604644775390625e-08f;  // mant * 2^-24, exact
    return f32_from_bits(f32_bits(mag) | sign);
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t f32_to_bf16_rn(float value) {
  const uint32_t u = f32_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // NaN
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float bf16_to_f32(uint16_t b) { return f32_from_bits(uint32_t(b) << 16); }

// Directed roundings from the nearest one: step the 16-bit pattern one ulp
// towards the wanted direction when round-to-nearest went the other way.
enum class Round { Nearest, Zero, Down, Up };
template <uint16_t (*ToBits)(float), float (*ToFloat)(uint16_t)>
inline uint16_t round_16(float f, Round mode) {
  uint16_t h = ToBits(f);
  if (mode == Round::Nearest || std::isnan(f)) return h;
  const float r = ToFloat(h);
  if (r == f) return h;
  const bool negative = std::signbit(f);
  const bool above = r > f;  // the nearest value overshot upwards
  bool magnitude_down = false, magnitude_up = false;
  if (mode == Round::Zero) magnitude_down = std::fabs(r) > std::fabs(f);
  if (mode == Round::Down && above) (negative ? magnitude_up : magnitude_down) = true;
  if (mode == Round::Up && !above) (negative ? magnitude_down : magnitude_up) = true;
  if (magnitude_down) --h;  // (from infinity: the largest finite value, as wanted)
  if (magnitude_up) ++h;    // (from the largest finite value: infinity)
  return h;
}

// For fma: round a double to float with round-to-odd, then to 16 bits with
// round-to-nearest: the double rounding is then exact.
inline float f64_to_f32_odd(double d) {
  float f = float(d);
  if (double(f) == d || std::isnan(d)) return f;
  if (std::fabs(double(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  return f32_from_bits(f32_bits(f) | 1u);
}

}  // namespace emu::detail

struct __half_raw {
  unsigned short x;
};
struct __half2_raw {
  unsigned short x, y;
};
struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __nv_bfloat162_raw {
  unsigned short x, y;
};

struct alignas(2) __half {
  unsigned short __x;
  __half() = default;
  constexpr __half(const __half_raw& r) : __x(r.x) {}
  __half& operator=(const __half_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __half_raw() const { return __half_raw{__x}; }
#if !defined(__CUDA_NO_HALF_CONVERSIONS__)
  __half(float f) : __x(emu::detail::f32_to_f16_rn(f)) {}
  __half(double f) : __x(emu::detail::f32_to_f16_rn(float(f))) {}
  __half(int i) : __x(emu::detail::f32_to_f16_rn(float(i))) {}
  __half(unsigned int i) : __x(emu::detail::f32_to_f16_rn(float(i))) {}
  operator float() const { return emu::detail::f16_to_f32(__x); }
  __half& operator=(float f) {
    __x = emu::detail::f32_to_f16_rn(f);
    return *this;
  }
#endif
};

struct alignas(2) __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
#if !defined(__CUDA_NO_BFLOAT16_CONVERSIONS__)
  __nv_bfloat16(float f) : __x(emu::detail::f32_to_bf16_rn(f)) {}
  __nv_bfloat16(double f) : __x(emu::detail::f32_to_bf16_rn(float(f))) {}
  __nv_bfloat16(int i) : __x(emu::detail::f32_to_bf16_rn(float(i))) {}
  __nv_bfloat16(unsigned int i) : __x(emu::detail::f32_to_bf16_rn(float(i))) {}
  operator float() const { return emu::detail::bf16_to_f32(__x); }
  __nv_bfloat16& operator=(float f) {
    __x = emu::detail::f32_to_bf16_rn(f);
    return *this;
  }
#endif
};

struct alignas(4) __half2 {
  __half x, y;
  __half2() = default;
  constexpr __half2(const __half& a, const __half& b) : x(a), y(b) {}
  constexpr __half2(const __half2_raw& r) : x(__half_raw{r.x}), y(__half_raw{r.y}) {}
  operator __half2_raw() const { return __half2_raw{x.__x, y.__x}; }
};

struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
  constexpr __nv_bfloat162(const __nv_bfloat162_raw& r) : x(__nv_bfloat16_raw{r.x}), y(__nv_bfloat16_raw{r.y}) {}
  operator __nv_bfloat162_raw() const { return __nv_bfloat162_raw{x.__x, y.__x}; }
};

typedef __half half;
typedef __half2 half2;
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

static_assert(sizeof(__half) == 2 && sizeof(__half2) == 4 && sizeof(__nv_bfloat16) == 2, "16-bit float layout");

// ---- bit casts and conversions ----------------------------------------------
inline __half __ushort_as_half(unsigned short x) { return __half_raw{x}; }
inline __half __short_as_half(short x) { return __half_raw{static_cast<unsigned short>(x)}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return __nv_bfloat16_raw{x}; }
inline __nv_bfloat16 __short_as_bfloat16(short x) { return __nv_bfloat16_raw{static_cast<unsigned short>(x)}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline short __bfloat16_as_short(__nv_bfloat16 h) { return static_cast<short>(h.__x); }

inline float __half2float(__half h) { return emu::detail::f16_to_f32(h.__x); }
inline __half __float2half(float f) { return __half_raw{emu::detail::f32_to_f16_rn(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline __half __float2half_rz(float f) {
  using namespace emu::detail;
  return __half_raw{round_16<f32_to_f16_rn, f16_to_f32>(f, Round::Zero)};
}
inline __half __float2half_rd(float f) {
  using namespace emu::detail;
  return __half_raw{round_16<f32_to_f16_rn, f16_to_f32>(f, Round::Down)};
}
inline __half __float2half_ru(float f) {
  using namespace emu::detail;
  return __half_raw{round_16<f32_to_f16_rn, f16_to_f32>(f, Round::Up)};
}
inline __half __double2half(double d) { return __float2half(emu::detail::f64_to_f32_odd(d)); }

inline float __bfloat162float(__nv_bfloat16 b) { return emu::detail::bf16_to_f32(b.__x); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16_raw{emu::detail::f32_to_bf16_rn(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) {
  using namespace emu::detail;
  return __nv_bfloat16_raw{round_16<f32_to_bf16_rn, bf16_to_f32>(f, Round::Zero)};
}
inline __nv_bfloat16 __float2bfloat16_rd(float f) {
  using namespace emu::detail;
  return __nv_bfloat16_raw{round_16<f32_to_bf16_rn, bf16_to_f32>(f, Round::Down)};
}
inline __nv_bfloat16 __float2bfloat16_ru(float f) {
  using namespace emu::detail;
  return __nv_bfloat16_raw{round_16<f32_to_bf16_rn, bf16_to_f32>(f, Round::Up)};
}
inline __nv_bfloat16 __double2bfloat16(double d) { return __float2bfloat16(emu::detail::f64_to_f32_odd(d)); }

// Integer conversions (float goes through exactly for the 16-bit range).
inline __half __int2half_rn(int i) { return __float2half(float(i)); }
inline __half __uint2half_rn(unsigned i) { return __float2half(float(i)); }
inline __half __short2half_rn(short i) { return __float2half(float(i)); }
inline __half __ushort2half_rn(unsigned short i) { return __float2half(float(i)); }
inline __nv_bfloat16 __int2bfloat16_rn(int i) { return __float2bfloat16(float(i)); }
inline __nv_bfloat16 __uint2bfloat16_rn(unsigned i) { return __float2bfloat16(float(i)); }

namespace emu::detail {
// Saturating float -> integer conversion with a rounding, as cvt.rni/rzi.sat.
template <class I>
inline I float_to_int(double f, Round mode) {
  if (std::isnan(f)) return 0;
  const double r = mode == Round::Nearest ? std::nearbyint(f)
                   : mode == Round::Zero  ? std::trunc(f)
                   : mode == Round::Down  ? std::floor(f)
                                          : std::ceil(f);
  constexpr double lo = double(std::numeric_limits<I>::min()), hi = double(std::numeric_limits<I>::max());
  if (r <= lo) return std::numeric_limits<I>::min();
  if (r >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(r);
}
}  // namespace emu::detail

inline int __half2int_rn(__half h) { return emu::detail::float_to_int<int>(__half2float(h), emu::detail::Round::Nearest); }
inline int __half2int_rz(__half h) { return emu::detail::float_to_int<int>(__half2float(h), emu::detail::Round::Zero); }
inline int __half2int_rd(__half h) { return emu::detail::float_to_int<int>(__half2float(h), emu::detail::Round::Down); }
inline int __half2int_ru(__half h) { return emu::detail::float_to_int<int>(__half2float(h), emu::detail::Round::Up); }
inline unsigned __half2uint_rz(__half h) {
  return emu::detail::float_to_int<unsigned>(__half2float(h), emu::detail::Round::Zero);
}
inline int __bfloat162int_rn(__nv_bfloat16 h) {
  return emu::detail::float_to_int<int>(__bfloat162float(h), emu::detail::Round::Nearest);
}
inline int __bfloat162int_rz(__nv_bfloat16 h) {
  return emu::detail::float_to_int<int>(__bfloat162float(h), emu::detail::Round::Zero);
}

// ---- pairs -------------------------------------------------------------------
inline __half2 __halves2half2(__half a, __half b) { return __half2(a, b); }
inline __half2 __half2half2(__half a) { return __half2(a, a); }
inline __half __low2half(__half2 a) { return a.x; }
inline __half __high2half(__half2 a) { return a.y; }
inline float __low2float(__half2 a) { return __half2float(a.x); }
inline float __high2float(__half2 a) { return __half2float(a.y); }
inline __half2 __lows2half2(__half2 a, __half2 b) { return __half2(a.x, b.x); }
inline __half2 __highs2half2(__half2 a, __half2 b) { return __half2(a.y, b.y); }
inline __half2 __low2half2(__half2 a) { return __half2(a.x, a.x); }
inline __half2 __high2half2(__half2 a) { return __half2(a.y, a.y); }
inline __half2 __lowhigh2highlow(__half2 a) { return __half2(a.y, a.x); }
inline __half2 __float2half2_rn(float f) { return __half2(__float2half(f), __float2half(f)); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2(__float2half(a), __float2half(b)); }
inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
inline float2 __half22float2(__half2 h) { return make_float2(__half2float(h.x), __half2float(h.y)); }

inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return __nv_bfloat162(a, a); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 a) { return a.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 a) { return a.y; }
inline float __low2float(__nv_bfloat162 a) { return __bfloat162float(a.x); }
inline float __high2float(__nv_bfloat162 a) { return __bfloat162float(a.y); }
inline __nv_bfloat162 __lows2bfloat162(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(a.x, b.x); }
inline __nv_bfloat162 __highs2bfloat162(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(a.y, b.y); }
inline __nv_bfloat162 __lowhigh2highlow(__nv_bfloat162 a) { return __nv_bfloat162(a.y, a.x); }
inline __nv_bfloat162 __float2bfloat162_rn(float f) { return __nv_bfloat162(__float2bfloat16(f), __float2bfloat16(f)); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162(__float2bfloat16(a), __float2bfloat16(b));
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 h) {
  return make_float2(__bfloat162float(h.x), __bfloat162float(h.y));
}

// ---- arithmetic, comparisons and math, for both 16-bit types -----------------
// Defined once for a type H with its pair H2 and its float conversions.
#define AIGC_EMU_HALF_MATH(H, H2, TO_F, FROM_F)                                                         \
  inline H __hadd(H a, H b) { return FROM_F(TO_F(a) + TO_F(b)); }                                       \
  inline H __hsub(H a, H b) { return FROM_F(TO_F(a) - TO_F(b)); }                                       \
  inline H __hmul(H a, H b) { return FROM_F(TO_F(a) * TO_F(b)); }                                       \
  inline H __hdiv(H a, H b) { return FROM_F(TO_F(a) / TO_F(b)); }                                       \
  inline H __hadd_rn(H a, H b) { return __hadd(a, b); }                                                 \
  inline H __hsub_rn(H a, H b) { return __hsub(a, b); }                                                 \
  inline H __hmul_rn(H a, H b) { return __hmul(a, b); }                                                 \
  inline H __hfma(H a, H b, H c) {                                                                      \
    return FROM_F(emu::detail::f64_to_f32_odd(double(TO_F(a)) * double(TO_F(b)) + double(TO_F(c))));    \
  }                                                                                                     \
  inline H __hneg(H a) {                                                                                \
    H r = a;                                                                                            \
    r.__x ^= 0x8000u;                                                                                   \
    return r;                                                                                           \
  }                                                                                                     \
  inline H __habs(H a) {                                                                                \
    H r = a;                                                                                            \
    r.__x &= 0x7fffu;                                                                                   \
    return r;                                                                                           \
  }                                                                                                     \
  inline H __hmax(H a, H b) { return FROM_F(std::fmax(TO_F(a), TO_F(b))); }                             \
  inline H __hmin(H a, H b) { return FROM_F(std::fmin(TO_F(a), TO_F(b))); }                             \
  inline H __hmax_nan(H a, H b) {                                                                       \
    return std::isnan(TO_F(a)) ? a : std::isnan(TO_F(b)) ? b : __hmax(a, b);                           \
  }                                                                                                     \
  inline H __hmin_nan(H a, H b) {                                                                       \
    return std::isnan(TO_F(a)) ? a : std::isnan(TO_F(b)) ? b : __hmin(a, b);                           \
  }                                                                                                     \
  inline bool __heq(H a, H b) { return TO_F(a) == TO_F(b); }                                            \
  inline bool __hne(H a, H b) { return TO_F(a) < TO_F(b) || TO_F(a) > TO_F(b); }                        \
  inline bool __hlt(H a, H b) { return TO_F(a) < TO_F(b); }                                             \
  inline bool __hle(H a, H b) { return TO_F(a) <= TO_F(b); }                                            \
  inline bool __hgt(H a, H b) { return TO_F(a) > TO_F(b); }                                             \
  inline bool __hge(H a, H b) { return TO_F(a) >= TO_F(b); }                                            \
  inline bool __hneu(H a, H b) { return !(TO_F(a) == TO_F(b)); }                                        \
  inline bool __hisnan(H a) { return std::isnan(TO_F(a)); }                                             \
  inline int __hisinf(H a) { return std::isinf(TO_F(a)) ? (TO_F(a) < 0 ? -1 : 1) : 0; }                 \
  inline H hsqrt(H a) { return FROM_F(std::sqrt(TO_F(a))); }                                            \
  inline H hrsqrt(H a) { return FROM_F(1.0f / std::sqrt(TO_F(a))); }                                    \
  inline H hrcp(H a) { return FROM_F(1.0f / TO_F(a)); }                                                 \
  inline H hexp(H a) { return FROM_F(std::exp(TO_F(a))); }                                              \
  inline H hexp2(H a) { return FROM_F(std::exp2(TO_F(a))); }                                            \
  inline H hlog(H a) { return FROM_F(std::log(TO_F(a))); }                                              \
  inline H hlog2(H a) { return FROM_F(std::log2(TO_F(a))); }                                            \
  inline H hsin(H a) { return FROM_F(std::sin(TO_F(a))); }                                              \
  inline H hcos(H a) { return FROM_F(std::cos(TO_F(a))); }                                              \
  inline H htanh(H a) { return FROM_F(std::tanh(TO_F(a))); }                                            \
  inline H hfloor(H a) { return FROM_F(std::floor(TO_F(a))); }                                          \
  inline H hceil(H a) { return FROM_F(std::ceil(TO_F(a))); }                                            \
  inline H htrunc(H a) { return FROM_F(std::trunc(TO_F(a))); }                                          \
  inline H hrint(H a) { return FROM_F(std::nearbyint(TO_F(a))); }                                       \
  inline H2 __hadd2(H2 a, H2 b) { return H2(__hadd(a.x, b.x), __hadd(a.y, b.y)); }                     \
  inline H2 __hsub2(H2 a, H2 b) { return H2(__hsub(a.x, b.x), __hsub(a.y, b.y)); }                     \
  inline H2 __hmul2(H2 a, H2 b) { return H2(__hmul(a.x, b.x), __hmul(a.y, b.y)); }                     \
  inline H2 __h2div(H2 a, H2 b) { return H2(__hdiv(a.x, b.x), __hdiv(a.y, b.y)); }                     \
  inline H2 __hfma2(H2 a, H2 b, H2 c) { return H2(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)); }     \
  inline H2 __hneg2(H2 a) { return H2(__hneg(a.x), __hneg(a.y)); }                                      \
  inline H2 __habs2(H2 a) { return H2(__habs(a.x), __habs(a.y)); }                                      \
  inline H2 __hmax2(H2 a, H2 b) { return H2(__hmax(a.x, b.x), __hmax(a.y, b.y)); }                     \
  inline H2 __hmin2(H2 a, H2 b) { return H2(__hmin(a.x, b.x), __hmin(a.y, b.y)); }                     \
  inline bool __hbeq2(H2 a, H2 b) { return __heq(a.x, b.x) && __heq(a.y, b.y); }                        \
  inline H2 h2exp(H2 a) { return H2(hexp(a.x), hexp(a.y)); }                                            \
  inline H2 h2sqrt(H2 a) { return H2(hsqrt(a.x), hsqrt(a.y)); }                                         \
  inline H2 h2rsqrt(H2 a) { return H2(hrsqrt(a.x), hrsqrt(a.y)); }

AIGC_EMU_HALF_MATH(__half, __half2, __half2float, __float2half)
AIGC_EMU_HALF_MATH(__nv_bfloat16, __nv_bfloat162, __bfloat162float, __float2bfloat16)
#undef AIGC_EMU_HALF_MATH

// ---- operators, unless the build opted out of them as torch's does ------------
#define AIGC_EMU_SCALAR_OPERATORS(H)                                               \
  inline H operator+(const H& a, const H& b) { return __hadd(a, b); }              \
  inline H operator-(const H& a, const H& b) { return __hsub(a, b); }              \
  inline H operator*(const H& a, const H& b) { return __hmul(a, b); }              \
  inline H operator/(const H& a, const H& b) { return __hdiv(a, b); }              \
  inline H& operator+=(H& a, const H& b) { return a = __hadd(a, b); }              \
  inline H& operator-=(H& a, const H& b) { return a = __hsub(a, b); }              \
  inline H& operator*=(H& a, const H& b) { return a = __hmul(a, b); }              \
  inline H& operator/=(H& a, const H& b) { return a = __hdiv(a, b); }              \
  inline H operator+(const H& a) { return a; }                                     \
  inline H operator-(const H& a) { return __hneg(a); }                             \
  inline bool operator==(const H& a, const H& b) { return __heq(a, b); }           \
  inline bool operator!=(const H& a, const H& b) { return __hneu(a, b); }          \
  inline bool operator<(const H& a, const H& b) { return __hlt(a, b); }            \
  inline bool operator<=(const H& a, const H& b) { return __hle(a, b); }           \
  inline bool operator>(const H& a, const H& b) { return __hgt(a, b); }            \
  inline bool operator>=(const H& a, const H& b) { return __hge(a, b); }
#define AIGC_EMU_PAIR_OPERATORS(H2)                                                \
  inline H2 operator+(const H2& a, const H2& b) { return __hadd2(a, b); }          \
  inline H2 operator-(const H2& a, const H2& b) { return __hsub2(a, b); }          \
  inline H2 operator*(const H2& a, const H2& b) { return __hmul2(a, b); }          \
  inline H2 operator/(const H2& a, const H2& b) { return __h2div(a, b); }          \
  inline H2& operator+=(H2& a, const H2& b) { return a = __hadd2(a, b); }          \
  inline H2& operator-=(H2& a, const H2& b) { return a = __hsub2(a, b); }          \
  inline H2& operator*=(H2& a, const H2& b) { return a = __hmul2(a, b); }          \
  inline H2 operator-(const H2& a) { return __hneg2(a); }                          \
  inline bool operator==(const H2& a, const H2& b) { return __hbeq2(a, b); }

#if !defined(__CUDA_NO_HALF_OPERATORS__)
AIGC_EMU_SCALAR_OPERATORS(__half)
#endif
#if !defined(__CUDA_NO_HALF2_OPERATORS__)
AIGC_EMU_PAIR_OPERATORS(__half2)
#endif
#if !defined(__CUDA_NO_BFLOAT16_OPERATORS__)
AIGC_EMU_SCALAR_OPERATORS(__nv_bfloat16)
#endif
#if !defined(__CUDA_NO_BFLOAT162_OPERATORS__)
AIGC_EMU_PAIR_OPERATORS(__nv_bfloat162)
#endif
#undef AIGC_EMU_SCALAR_OPERATORS
#undef AIGC_EMU_PAIR_OPERATORS

// Constants of cuda_fp16.hpp / cuda_bf16.hpp.
#define CUDART_INF_FP16 __ushort_as_half((unsigned short)0x7C00U)
#define CUDART_NAN_FP16 __ushort_as_half((unsigned short)0x7FFFU)
#define CUDART_MAX_NORMAL_FP16 __ushort_as_half((unsigned short)0x7BFFU)
#define CUDART_ZERO_FP16 __ushort_as_half((unsigned short)0x0000U)
#define CUDART_ONE_FP16 __ushort_as_half((unsigned short)0x3C00U)
#define CUDART_INF_BF16 __ushort_as_bfloat16((unsigned short)0x7F80U)
#define CUDART_NAN_BF16 __ushort_as_bfloat16((unsigned short)0x7FFFU)
#define CUDART_MAX_NORMAL_BF16 __ushort_as_bfloat16((unsigned short)0x7F7FU)
#define CUDART_ZERO_BF16 __ushort_as_bfloat16((unsigned short)0x0000U)
#define CUDART_ONE_BF16 __ushort_as_bfloat16((unsigned short)0x3F80U)
