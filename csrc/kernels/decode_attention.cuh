// Split-KV decode attention (flash-decoding) for one query token per sequence,
// grouped-query heads, variable lengths. Raw pointers and sizes only; the
// launches live in csrc/cuda/decode_attention.cu and the emulation tests.
//
// Kernel 1, decode_attention_split: block (split s, KV head kvh, sequence b)
// handles KV positions [s * chunk, (s + 1) * chunk) of its sequence for ALL
// the G = H / Hkv query heads of kvh, so each KV byte leaves global memory
// once (GQA). Tile by tile it stages K and V rows in shared memory with
// 128-bit loads, computes the G x tile scores, updates the online softmax
// (running max m, sum l, in base 2 with log2(e) folded into q) and
// accumulates p V. A sequence whose length fits one chunk writes its output
// directly; otherwise each split writes (m, l, acc) to a workspace and
// Kernel 2, decode_attention_merge, combines the splits of each (b, h).
//
// Output of an empty sequence (length 0): zeros, lse = -inf.
#pragma once

#include <stdint.h>

#include "cuda_compat.cuh"

namespace aigc {
namespace attn {

struct DecodeParams {
  const void* q;         // [B, H, D] (strides q_sb, q_sh; d contiguous)
  const void* k;         // [B, Hkv, Tmax, D] (strides k_sb, k_sh, k_st)
  const void* v;         // same layout rules as k
  const int* seq_lens;   // [B], each in [0, Tmax]
  void* out;             // [B, H, D] contiguous
  float* lse;            // [B, H], natural log of the softmax normaliser
  float* ws_acc;         // [B, H, num_splits, D] unnormalised accumulators
  float* ws_ml;          // [B, H, num_splits, 2] (m, l), base 2
  int64_t q_sb, q_sh, k_sb, k_sh, k_st, v_sb, v_sh, v_st;
  int H, Hkv, G, num_splits, chunk_len;
  float scale_log2;      // softmax scale * log2(e)
};

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Four consecutive elements of a shared-memory row as floats.
template <typename T>
__device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (sizeof(T) == 4) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const T* h = reinterpret_cast<const T*>(&raw);
    return make_float4(to_float(h[0]), to_float(h[1]), to_float(h[2]), to_float(h[3]));
  }
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Shared-memory layout of decode_attention_split, in bytes (the launcher
// sizes the dynamic shared memory with it).
template <typename T, int kD, int kTile, int kThreads>
struct SplitSmem {
  static constexpr int kRowBytes = kD * static_cast<int>(sizeof(T)) + 16;  // +16: no bank conflicts
  static constexpr int kTileBytes = kTile * kRowBytes;
  static __host__ __device__ constexpr size_t bytes(int G) {
    return 2 * size_t(kTileBytes)                 // K and V tiles
           + size_t(kThreads) * sizeof(float4)    // partial sums of p V
           + size_t(G) * kD * sizeof(float)       // q (scaled)
           + size_t(G) * kD * sizeof(float)       // acc
           + size_t(G) * kTile * sizeof(float)    // scores, then p
           + size_t(G) * 3 * sizeof(float);       // m, l, alpha
  }
};

template <typename T, int kD, int kTile, int kThreads>
__global__ void __launch_bounds__(kThreads) decode_attention_split(DecodeParams p) {
  static_assert(kD % 8 == 0 && kThreads % 32 == 0 && kTile % 32 == 0 && kTile <= 64, "shape");
  using Smem = SplitSmem<T, kD, kTile, kThreads>;
  constexpr int kVec = 16 / sizeof(T);          // elements per 128-bit load
  constexpr int kChunksPerRow = kD / kVec;
  constexpr int kCols4 = kD / 4;
  constexpr int kRowElems = Smem::kRowBytes / sizeof(T);

  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int G = p.G, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int len = p.seq_lens[b];
  const int n_splits = (len + p.chunk_len - 1) / p.chunk_len;
  const int t_begin = split * p.chunk_len;
  const int t_end = min(len, t_begin + p.chunk_len);
  T* out = static_cast<T*>(p.out);

  if (len == 0) {  // empty sequence: zeros and lse = -inf, written by split 0
    if (split == 0) {
      for (int i = tid; i < G * kD; i += kThreads) {
        const int h = kvh * G + i / kD;
        out[(int64_t(b) * p.H + h) * kD + i % kD] = from_float<T>(0.0f);
        if (i % kD == 0) p.lse[int64_t(b) * p.H + h] = -INFINITY;
      }
    }
    return;
  }
  if (t_begin >= len) return;  // past this sequence's end

  AIGC_DYNAMIC_SHARED(unsigned char, smem);
  T* k_s = reinterpret_cast<T*>(smem);
  T* v_s = reinterpret_cast<T*>(smem + Smem::kTileBytes);
  float4* red_s = reinterpret_cast<float4*>(smem + 2 * Smem::kTileBytes);
  float* q_s = reinterpret_cast<float*>(red_s + kThreads);
  float* acc_s = q_s + G * kD;
  float* s_s = acc_s + G * kD;
  float* m_s = s_s + G * kTile;
  float* l_s = m_s + G;
  float* alpha_s = l_s + G;

  const T* q = static_cast<const T*>(p.q) + int64_t(b) * p.q_sb + int64_t(kvh) * G * p.q_sh;
  for (int i = tid; i < G * kD; i += kThreads) {
    q_s[i] = to_float(q[int64_t(i / kD) * p.q_sh + i % kD]) * p.scale_log2;
    acc_s[i] = 0.0f;
  }
  for (int g = tid; g < G; g += kThreads) {
    m_s[g] = -INFINITY;
    l_s[g] = 0.0f;
  }
  const T* k = static_cast<const T*>(p.k) + int64_t(b) * p.k_sb + int64_t(kvh) * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + int64_t(b) * p.v_sb + int64_t(kvh) * p.v_sh;

  // p V work split: `slots` (head, 4 columns) pairs, each summed over `parts`
  // interleaved row subsets when there are more threads than slots.
  const int slots = G * kCols4;
  int parts = 1;
  while (parts * 2 * slots <= kThreads && parts * 2 <= kTile) parts *= 2;

  for (int t0 = t_begin; t0 < t_end; t0 += kTile) {
    const int n = min(kTile, t_end - t0);
    // Stage the K and V rows of the tile (each row once for all G heads).
    for (int i = tid; i < n * kChunksPerRow; i += kThreads) {
      const int r = i / kChunksPerRow, c = (i % kChunksPerRow) * kVec;
      const int64_t t = t0 + r;
      *reinterpret_cast<uint4*>(k_s + r * kRowElems + c) =
          *reinterpret_cast<const uint4*>(k + t * p.k_st + c);
      *reinterpret_cast<uint4*>(v_s + r * kRowElems + c) =
          *reinterpret_cast<const uint4*>(v + t * p.v_st + c);
    }
    __syncthreads();

    // Scores s[g][t] = q_g . k_t (base-2 units); -inf past the tile's rows.
    for (int i = tid; i < G * kTile; i += kThreads) {
      const int g = i / kTile, r = i % kTile;
      float s = -INFINITY;
      if (r < n) {
        s = 0.0f;
        const float* qg = q_s + g * kD;
        const T* kr = k_s + r * kRowElems;
#pragma unroll 8
        for (int c = 0; c < kD; c += 4) {
          const float4 kv = load4(kr + c);
          const float4 qv = *reinterpret_cast<const float4*>(qg + c);
          s += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
        }
      }
      s_s[i] = s;
    }
    __syncthreads();

    // Online softmax, one warp per head: p = 2^(s - m_new), l and alpha.
    for (int g = warp; g < G; g += kThreads / 32) {
      float* sg = s_s + g * kTile;
      float tile_max = -INFINITY;
      for (int r = lane; r < kTile; r += 32) tile_max = fmaxf(tile_max, sg[r]);
      tile_max = warp_max(tile_max);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, tile_max);
      float sum = 0.0f;
      for (int r = lane; r < kTile; r += 32) {
        const float e = exp2f(sg[r] - m_new);  // 2^-inf = 0 past the rows
        sg[r] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float alpha = exp2f(m_old - m_new);  // 0 on the first tile
        alpha_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();

    // acc = alpha * acc + p V.
    if (parts == 1) {
      for (int slot = tid; slot < slots; slot += kThreads) {
        const int g = slot / kCols4, c = (slot % kCols4) * 4;
        const float* pg = s_s + g * kTile;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int r = 0; r < n; ++r) {
          const float4 x = load4(v_s + r * kRowElems + c);
          const float w = pg[r];
          a.x += w * x.x;
          a.y += w * x.y;
          a.z += w * x.z;
          a.w += w * x.w;
        }
        float4* acc = reinterpret_cast<float4*>(acc_s + g * kD + c);
        const float alpha = alpha_s[g];
        *acc = make_float4(acc->x * alpha + a.x, acc->y * alpha + a.y, acc->z * alpha + a.z,
                           acc->w * alpha + a.w);
      }
    } else {
      if (tid < slots * parts) {
        const int slot = tid % slots, part = tid / slots;
        const int g = slot / kCols4, c = (slot % kCols4) * 4;
        const float* pg = s_s + g * kTile;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int r = part; r < n; r += parts) {
          const float4 x = load4(v_s + r * kRowElems + c);
          const float w = pg[r];
          a.x += w * x.x;
          a.y += w * x.y;
          a.z += w * x.z;
          a.w += w * x.w;
        }
        red_s[tid] = a;
      }
      __syncthreads();
      if (tid < slots) {
        const int g = tid / kCols4, c = (tid % kCols4) * 4;
        float4* acc = reinterpret_cast<float4*>(acc_s + g * kD + c);
        const float alpha = alpha_s[g];
        float4 a = make_float4(acc->x * alpha, acc->y * alpha, acc->z * alpha, acc->w * alpha);
        for (int part = 0; part < parts; ++part) {  // fixed order: deterministic
          const float4 x = red_s[part * slots + tid];
          a.x += x.x;
          a.y += x.y;
          a.z += x.z;
          a.w += x.w;
        }
        *acc = a;
      }
    }
    __syncthreads();
  }

  // A whole sequence: normalise and write. A split: keep (m, l, acc).
  for (int i = tid; i < G * kD; i += kThreads) {
    const int g = i / kD, d = i % kD, h = kvh * G + g;
    const int64_t bh = int64_t(b) * p.H + h;
    if (n_splits == 1) {
      out[bh * kD + d] = from_float<T>(acc_s[i] / l_s[g]);
      if (d == 0) p.lse[bh] = (m_s[g] + log2f(l_s[g])) * 0.69314718055994531f;
    } else {
      p.ws_acc[(bh * p.num_splits + split) * kD + d] = acc_s[i];
      if (d == 0) {
        p.ws_ml[(bh * p.num_splits + split) * 2] = m_s[g];
        p.ws_ml[(bh * p.num_splits + split) * 2 + 1] = l_s[g];
      }
    }
  }
}

// Kernel 2: block (h, b) merges the splits of a sequence that has several;
// thread d owns column d. Sequences of one split (or none) were written by
// kernel 1.
template <typename T, int kD>
__global__ void __launch_bounds__(kD) decode_attention_merge(DecodeParams p) {
  const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  const int len = p.seq_lens[b];
  const int n_splits = (len + p.chunk_len - 1) / p.chunk_len;
  if (n_splits <= 1) return;
  const int64_t bh = int64_t(b) * p.H + h;
  const float* ml = p.ws_ml + bh * p.num_splits * 2;
  float m = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, ml[2 * s]);
  float l = 0.0f, acc = 0.0f;
  for (int s = 0; s < n_splits; ++s) {
    const float w = exp2f(ml[2 * s] - m);
    l += ml[2 * s + 1] * w;
    acc += p.ws_acc[(bh * p.num_splits + s) * kD + d] * w;
  }
  static_cast<T*>(p.out)[bh * kD + d] = from_float<T>(acc / l);
  if (d == 0) p.lse[bh] = (m + log2f(l)) * 0.69314718055994531f;
}

// ------------------------------------------------------------- host side --
// Shared by the torch binding (csrc/cuda/decode_attention.cu) and the
// emulation tests, so both launch the same configuration.

constexpr int kSplitThreads = 128;
constexpr int kSplitTile = 32;

// Head sizes with compiled kernels.
inline bool supported_head_dim(int D) { return D == 64 || D == 80 || D == 96 || D == 128 || D == 256; }

// Calls f.template operator()<kD>() for the runtime head size D.
template <class F>
void dispatch_head_dim(int D, F&& f) {
  switch (D) {
    case 64: f.template operator()<64>(); break;
    case 80: f.template operator()<80>(); break;
    case 96: f.template operator()<96>(); break;
    case 128: f.template operator()<128>(); break;
    default: f.template operator()<256>(); break;
  }
}

// KV chunk per block: chunks of at least 256 positions (a whole sequence when
// it is short), a multiple of the tile, and enough of them that one sequence's
// (KV head, chunk) blocks give every SM a few. The plan depends on the cache's
// capacity and the GPU only, not on the batch: a sequence is cut into the same
// chunks, and its result merged from them bit for bit the same, alone or in
// any batch (a server promises each request the output it gets alone).
// num_splits covers Tmax; blocks past a sequence's length exit at once.
struct DecodePlan {
  int chunk_len;
  int num_splits;
};

inline DecodePlan plan_decode(int Hkv, int Tmax, int num_sms) {
  const int heads = Hkv > 0 ? Hkv : 1;
  const int want_splits = (4 * num_sms + heads - 1) / heads;
  int chunk = (Tmax + want_splits - 1) / (want_splits > 0 ? want_splits : 1);
  chunk = chunk < 256 ? 256 : chunk;
  chunk = (chunk + kSplitTile - 1) / kSplitTile * kSplitTile;
  const int splits = Tmax > 0 ? (Tmax + chunk - 1) / chunk : 1;
  return {chunk, splits};
}

}  // namespace attn
}  // namespace aigc
