// aigc::quant_linear on the GPU: y = x W^T (+ bias), W [N, K] in a GGUF block
// format (quant_formats.h), dequantized in registers; float32 activations and
// accumulation. Raw pointers and sizes only; the launches live in
// csrc/cuda/quant_linear.cu and the emulation tests.
//
// The unit of work is 32 consecutive weights of a row ("a unit": a block of
// the 32-wide types, a sub-block of a K-quant super-block). dequant8 gives 8
// weights of a unit (part p: weights 8p .. 8p + 7) from the block's bytes,
// with the loads its layout's alignment allows.
//
// quant_gemv (M <= kGemvMaxRows, the decode step): one warp per output row,
// the lanes over the row's units (consecutive lanes read consecutive blocks:
// a warp sweeps a contiguous run of the row), each unit dequantized once and
// used for all the M rows of x; a warp reduction per row of x.
//
// quant_gemm (larger M): a 64 x 64 tile of outputs per 256-thread block; per
// step of one unit (32 weights of K), the block stages x [64 x 32] and the
// dequantized W [64 x 32] in shared memory (each thread dequantizes 8
// weights), then each thread accumulates a 4 x 4 register tile.
#pragma once

#include <stdint.h>

#include <type_traits>

#include "cuda_compat.cuh"
#include "quant_formats.h"

namespace aigc {
namespace quant {

struct LinearParams {
  const void* x;        // [M, K], rows ldx elements apart, contiguous within a row
  const uint8_t* w;     // [N, row_bytes] raw GGUF blocks
  const float* bias;    // [N] or null
  void* out;            // [M, N] contiguous, x's dtype
  int64_t ldx;
  int64_t row_bytes;
  int M, N, K;
};

constexpr int kGemvWarps = 4;     // output rows per GEMV block
constexpr int kGemvMaxRows = 8;   // rows of x the GEMV path takes
constexpr int kGemmTile = 64;     // output tile edge of the GEMM path
constexpr int kGemmThreads = 256;
// Blocks per SM the register allocation must allow. Without a minimum ptxas
// aimed at more and spilled a few registers (12 bytes in some GEMM and GEMV
// instances); these bounds (128 and 128 registers a thread) leave it room.
constexpr int kGemvMinBlocks = 4;
constexpr int kGemmMinBlocks = 2;

// Loads of `bytes` (4 or 8) from a block whose layout guarantees `align`
// bytes of alignment (2 for the types with an odd number of 16-bit fields).
template <int kAlign>
__device__ __forceinline__ uint32_t load_u32(const uint8_t* p) {
  if constexpr (kAlign >= 4) {
    return *reinterpret_cast<const uint32_t*>(p);
  } else {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return uint32_t(h[0]) | uint32_t(h[1]) << 16;
  }
}

template <int kAlign>
__device__ __forceinline__ uint2 load_u64(const uint8_t* p) {
  if constexpr (kAlign >= 8) {
    return *reinterpret_cast<const uint2*>(p);
  } else {
    return make_uint2(load_u32<kAlign>(p), load_u32<kAlign>(p + 4));
  }
}

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}

__device__ __forceinline__ int byte_of(uint2 v, int j) {
  return int(((j < 4 ? v.x : v.y) >> (8 * (j & 3))) & 0xffu);
}

// The alignment every field of a type's blocks has (rows start 16-aligned).
constexpr int block_alignment(int qtype) {
  const int bytes = format_of(qtype).bytes;
  return bytes % 16 == 0 ? 16 : bytes % 8 == 0 ? 8 : bytes % 4 == 0 ? 4 : 2;
}

// w[j] = weight 8 * part + j of unit `unit` of `row`. The float operations are
// gguf's (d * q + m, (d * sc) * q - dmin * mn), up to FMA contraction.
template <int QT>
__device__ __forceinline__ void dequant8(const uint8_t* row, int unit, int part, float (&w)[8]) {
  constexpr int kAlign = block_alignment(QT) < 8 ? block_alignment(QT) : 8;
  if constexpr (QT == kQ8_0) {
    const uint8_t* blk = row + int64_t(unit) * 34;
    const float d = half_at(blk);
    const uint2 q = load_u64<2>(blk + 2 + 8 * part);
#pragma unroll
    for (int j = 0; j < 8; ++j) w[j] = d * float(int8_t(byte_of(q, j)));
  } else if constexpr (QT == kQ4_0 || QT == kQ4_1 || QT == kQ5_0 || QT == kQ5_1) {
    constexpr bool has_min = QT == kQ4_1 || QT == kQ5_1;
    constexpr bool five = QT == kQ5_0 || QT == kQ5_1;
    constexpr int qs_at = 2 + (has_min ? 2 : 0) + (five ? 4 : 0);
    constexpr int bytes = format_of(QT).bytes;
    const uint8_t* blk = row + int64_t(unit) * bytes;
    const float d = half_at(blk);
    // Weights 0-15 are the low nibbles of qs[0..15], 16-31 the high ones.
    const int shift = 4 * (part >> 1);
    const uint2 q = load_u64<kAlign>(blk + qs_at + 8 * (part & 1));
    uint32_t qh = 0;
    if constexpr (five) qh = load_u32<kAlign>(blk + (has_min ? 4 : 2));
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int v = (byte_of(q, j) >> shift) & 15;
      if constexpr (five) v |= int((qh >> (8 * part + j)) & 1u) << 4;
      if constexpr (has_min)
        w[j] = d * float(v) + half_at(blk + 2);
      else
        w[j] = d * float(v - (five ? 16 : 8));
    }
  } else if constexpr (QT == kQ4_K || QT == kQ5_K) {
    constexpr bool five = QT == kQ5_K;
    const uint8_t* blk = row + int64_t(unit >> 3) * format_of(QT).bytes;
    const int s = unit & 7, c = s >> 1, shift = 4 * (s & 1);
    const KScales k = unpack_k_scales(load_u32<4>(blk + 4), load_u32<4>(blk + 8),
                                      load_u32<4>(blk + 12));
    const uint32_t sc_word = s < 4 ? k.sc_lo : k.sc_hi, mn_word = s < 4 ? k.mn_lo : k.mn_hi;
    const float ds = half_at(blk) * float((sc_word >> (8 * (s & 3))) & 0xffu);
    const float dm = half_at(blk + 2) * float((mn_word >> (8 * (s & 3))) & 0xffu);
    const uint2 q = load_u64<8>(blk + (five ? 48 : 16) + 32 * c + 8 * part);
    uint2 qh = make_uint2(0, 0);
    if constexpr (five) qh = load_u64<8>(blk + 16 + 8 * part);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int v = (byte_of(q, j) >> shift) & 15;
      if constexpr (five) v |= ((byte_of(qh, j) >> s) & 1) << 4;
      w[j] = ds * float(v) - dm;
    }
  } else {  // Q6_K: unit s of the super-block is weights 32s .. 32s + 31
    const uint8_t* blk = row + int64_t(unit >> 3) * 210;
    const int s = unit & 7, h = s >> 2, i = s & 3;
    const uint2 ql = load_u64<2>(blk + 64 * h + 32 * (i & 1) + 8 * part);
    const uint2 qh = load_u64<2>(blk + 128 + 32 * h + 8 * part);
    const int8_t sc = int8_t(blk[192 + 8 * h + 2 * i + (part >> 1)]);
    const float ds = half_at(blk + 208) * float(sc);
    const int shift = 4 * (i >> 1);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int v = ((byte_of(ql, j) >> shift) & 15) | ((byte_of(qh, j) >> (2 * i)) & 3) << 4;
      w[j] = ds * float(v - 32);
    }
  }
}

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  if constexpr (sizeof(T) == 4) {
    return v;
  } else {
    return __bfloat162float(v);
  }
}

template <typename T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (sizeof(T) == 4) {
    return v;
  } else {
    return __float2bfloat16_rn(v);
  }
}

// Eight consecutive activations as floats (the row is 16-aligned for float,
// 16-aligned for bf16 at multiples of 8 elements: the binding checks it).
template <typename T>
__device__ __forceinline__ void load_x8(const T* p, float (&v)[8]) {
  if constexpr (sizeof(T) == 4) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[2 * j] = __uint_as_float(words[j] << 16);
      v[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
    }
  }
}

// Grid (ceil(N / kGemvWarps), ceil(M / kRows)), block kGemvWarps * 32.
template <int QT, typename T, int kRows>
__global__ void __launch_bounds__(kGemvWarps * 32, kGemvMinBlocks) quant_gemv(LinearParams p) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  const int m0 = blockIdx.y * kRows;
  if (n >= p.N) return;  // the whole warp
  const int rows = p.M - m0 < kRows ? p.M - m0 : kRows;
  const uint8_t* row = p.w + int64_t(n) * p.row_bytes;
  const T* x = static_cast<const T*>(p.x) + int64_t(m0) * p.ldx;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  const int units = p.K / 32;
  // Neither loop unrolled: occupancy hides the loads' latency, and with the
  // parts unrolled the activations of all four were loaded up front (32
  // registers a row of x), which with 4 or 8 rows spilled.
#pragma unroll 1
  for (int u = lane; u < units; u += 32) {
#pragma unroll 1
    for (int part = 0; part < 4; ++part) {
      float w[8];
      dequant8<QT>(row, u, part, w);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows) {
          float xv[8];
          load_x8(x + r * p.ldx + 32 * u + 8 * part, xv);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[r] = fmaf(w[j], xv[j], acc[r]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
  }
  if (lane == 0) {
    const float b = p.bias ? p.bias[n] : 0.0f;
    T* out = static_cast<T*>(p.out);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (r < rows) out[int64_t(m0 + r) * p.N + n] = from_float<T>(acc[r] + b);
  }
}

// Grid (ceil(N / 64), ceil(M / 64)), block kGemmThreads.
template <int QT, typename T>
__global__ void __launch_bounds__(kGemmThreads, kGemmMinBlocks) quant_gemm(LinearParams p) {
  constexpr int kTile = kGemmTile, kMicro = 4;
  // k-major tiles, so a thread's 4 rows (or columns) at one k are adjacent.
  __shared__ __align__(16) float xs[32][kTile + 4];
  __shared__ __align__(16) float ws[32][kTile + 4];
  const int t = threadIdx.x;
  const int tx = t % (kTile / kMicro), ty = t / (kTile / kMicro);
  const int n0 = blockIdx.x * kTile, m0 = blockIdx.y * kTile;
  const T* x = static_cast<const T*>(p.x);
  // Staging: thread t handles row (t / 4) of each tile, weights 8 * (t % 4) .. + 7.
  const int srow = t >> 2, spart = t & 3;
  const bool x_ok = m0 + srow < p.M, w_ok = n0 + srow < p.N;
  const uint8_t* wrow = p.w + int64_t(w_ok ? n0 + srow : 0) * p.row_bytes;
  const T* xrow = x + int64_t(x_ok ? m0 + srow : 0) * p.ldx;
  float acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i)
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.0f;
  const int units = p.K / 32;
  for (int u = 0; u < units; ++u) {
    float v[8];
    if (x_ok) {
      load_x8(xrow + 32 * u + 8 * spart, v);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) xs[8 * spart + j][srow] = v[j];
    if (w_ok) {
      dequant8<QT>(wrow, u, spart, v);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) ws[8 * spart + j][srow] = v[j];
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < 32; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[k][ty * kMicro]);
      const float4 b = *reinterpret_cast<const float4*>(&ws[k][tx * kMicro]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < kMicro; ++i)
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int m = m0 + ty * kMicro + i;
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int n = n0 + tx * kMicro + j;
      if (n < p.N)
        out[int64_t(m) * p.N + n] = from_float<T>(acc[i][j] + (p.bias ? p.bias[n] : 0.0f));
    }
  }
}

// f(std::integral_constant<int, QT>{}) for a supported type id; false otherwise.
template <typename F>
bool dispatch_qtype(int qtype, const F& f) {
  switch (qtype) {
    case kQ4_0: f(std::integral_constant<int, kQ4_0>{}); return true;
    case kQ4_1: f(std::integral_constant<int, kQ4_1>{}); return true;
    case kQ5_0: f(std::integral_constant<int, kQ5_0>{}); return true;
    case kQ5_1: f(std::integral_constant<int, kQ5_1>{}); return true;
    case kQ8_0: f(std::integral_constant<int, kQ8_0>{}); return true;
    case kQ4_K: f(std::integral_constant<int, kQ4_K>{}); return true;
    case kQ5_K: f(std::integral_constant<int, kQ5_K>{}); return true;
    case kQ6_K: f(std::integral_constant<int, kQ6_K>{}); return true;
    default: return false;
  }
}

// The GEMV's rows of x per block for M rows (M <= kGemvMaxRows): 1, 2, 4 or 8.
constexpr int gemv_rows(int M) { return M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8; }

}  // namespace quant
}  // namespace aigc
