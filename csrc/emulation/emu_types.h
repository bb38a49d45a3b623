// CUDA's built-in vector types (float4, int2, uint4, ...), dim3 and the
// make_* constructors, with CUDA's sizes and alignments (float4 and int4 are
// 16-byte aligned, which kernels rely on for 128-bit loads).
#pragma once

#include <cstddef>

#define AIGC_EMU_VEC1(T, N, A) \
  struct alignas(A) N##1 {     \
    T x;                       \
  };
#define AIGC_EMU_VEC2(T, N, A) \
  struct alignas(A) N##2 {     \
    T x, y;                    \
  };
#define AIGC_EMU_VEC3(T, N, A) \
  struct alignas(A) N##3 {     \
    T x, y, z;                 \
  };
#define AIGC_EMU_VEC4(T, N, A) \
  struct alignas(A) N##4 {     \
    T x, y, z, w;              \
  };
#define AIGC_EMU_MAKE1(T, N) \
  inline constexpr N##1 make_##N##1(T x) { return N##1{x}; }
#define AIGC_EMU_MAKE2(T, N) \
  inline constexpr N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define AIGC_EMU_MAKE3(T, N) \
  inline constexpr N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define AIGC_EMU_MAKE4(T, N) \
  inline constexpr N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }

// (element type, name, alignment of 1, 2, 3 and 4 components) as in vector_types.h
#define AIGC_EMU_VECTOR_FAMILY(T, N, A1, A2, A3, A4) \
  AIGC_EMU_VEC1(T, N, A1)                            \
  AIGC_EMU_VEC2(T, N, A2)                            \
  AIGC_EMU_VEC3(T, N, A3)                            \
  AIGC_EMU_VEC4(T, N, A4)                            \
  AIGC_EMU_MAKE1(T, N)                               \
  AIGC_EMU_MAKE2(T, N)                               \
  AIGC_EMU_MAKE3(T, N)                               \
  AIGC_EMU_MAKE4(T, N)

AIGC_EMU_VECTOR_FAMILY(signed char, char, 1, 2, 1, 4)
AIGC_EMU_VECTOR_FAMILY(unsigned char, uchar, 1, 2, 1, 4)
AIGC_EMU_VECTOR_FAMILY(short, short, 2, 4, 2, 8)
AIGC_EMU_VECTOR_FAMILY(unsigned short, ushort, 2, 4, 2, 8)
AIGC_EMU_VECTOR_FAMILY(int, int, 4, 8, 4, 16)
AIGC_EMU_VECTOR_FAMILY(unsigned int, uint, 4, 8, 4, 16)
AIGC_EMU_VECTOR_FAMILY(long, long, 8, 16, 8, 16)
AIGC_EMU_VECTOR_FAMILY(unsigned long, ulong, 8, 16, 8, 16)
AIGC_EMU_VECTOR_FAMILY(long long, longlong, 8, 16, 8, 16)
AIGC_EMU_VECTOR_FAMILY(unsigned long long, ulonglong, 8, 16, 8, 16)
AIGC_EMU_VECTOR_FAMILY(float, float, 4, 8, 4, 16)
AIGC_EMU_VECTOR_FAMILY(double, double, 8, 16, 8, 16)

#undef AIGC_EMU_VEC1
#undef AIGC_EMU_VEC2
#undef AIGC_EMU_VEC3
#undef AIGC_EMU_VEC4
#undef AIGC_EMU_MAKE1
#undef AIGC_EMU_MAKE2
#undef AIGC_EMU_MAKE3
#undef AIGC_EMU_MAKE4
#undef AIGC_EMU_VECTOR_FAMILY

static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 must match CUDA");
static_assert(sizeof(int4) == 16 && alignof(uint4) == 16, "int4 must match CUDA");
static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 must match CUDA");

// Launch geometry. Unspecified components are 1, as in CUDA.
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
