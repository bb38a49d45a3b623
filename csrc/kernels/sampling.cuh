// aigc::sample on the GPU: one thread block per row, a few passes over it,
// no sort. The law is the CPU kernel's (csrc/cpu/sample.cpp, documented in
// aigc_sdk/ops/sampling.py) and the arithmetic is bit-identical: the same
// exp_nonpos, integer masses (so atomics and reduction trees cannot change a
// sum), the same Philox numbers. Hence the same tokens as on the CPU.
//
// Passes over a row (a float32 work copy, so the penalty can edit it):
//   1. copy + NaN + max (again after the repetition penalty's edits);
//   2. e = exp_nonpos((x - max) * inv_t) in place, total mass;
//   3. top-k / top-p: radix select on the bits of e, 10 bits per level, a
//      1024-bin shared-memory histogram (integer atomics) per level;
//   4. kept mass per thread segment, a block scan, and the segment holding
//      the draw walks its entries in index order.
// Rows with invalid parameters or data get a negative status instead of a
// token (philox.h's SampleStatus); the binding turns them into errors.
#pragma once

#include <stdint.h>

#include <type_traits>

#include "cuda_compat.cuh"
#include "philox.h"

namespace aigc {
namespace sampling {

struct SampleParams {
  const void* logits;        // [B, V], rows row_stride elements apart
  int64_t row_stride;
  int V;
  const float* temperature;  // [B] each
  const int64_t* top_k;
  const float* top_p;
  const float* min_p;
  const int64_t* seed;
  const int64_t* offset;
  const int64_t* prev;       // [B, n_prev] token ids (negative: padding), or null
  int n_prev;
  const float* penalty;      // [B] repetition penalty, or null
  float* work;               // [B, V] float32 scratch
  int64_t* tokens;           // [B] token or status
  const int64_t* row_ids = nullptr;  // [B] the row number keyed into each draw, or null (its index)
};

constexpr int kSampleThreads = 512;
constexpr int kRadixBins = 1024;

template <typename T>
__device__ __forceinline__ float load_logit(const T* p) {
  if constexpr (sizeof(T) == 4) {
    return *p;
  } else if constexpr (std::is_same_v<T, __half>) {
    return __half2float(*p);
  } else {
    return __bfloat162float(*p);
  }
}

struct SampleShared {
  unsigned long long hist[kRadixBins];
  unsigned long long warp_u64[32];
  float warp_f[32];
  int warp_i[32];
  int flag;
  unsigned int bin;
  unsigned long long above;
  long long token;
};

// ------------------------------------------------------- block reductions --
// All integer, or float max: results do not depend on the order.

template <int kThreads>
__device__ unsigned long long block_sum_u64(unsigned long long v, SampleShared& sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // sh.warp_u64 may still be read by a previous call
  if (lane == 0) sh.warp_u64[warp] = v;
  __syncthreads();
  unsigned long long total = 0;
  for (int w = 0; w < kThreads / 32; ++w) total += sh.warp_u64[w];
  return total;
}

template <int kThreads>
__device__ float block_max(float v, SampleShared& sh) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh.warp_f[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, sh.warp_f[w]);
  return m;
}

template <int kThreads>
__device__ int block_min_int(int v, SampleShared& sh) {
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh.warp_i[warp] = v;
  __syncthreads();
  int m = v;
  for (int w = 0; w < kThreads / 32; ++w) m = min(m, sh.warp_i[w]);
  return m;
}

// Exclusive prefix sum over the threads, in thread order.
template <int kThreads>
__device__ unsigned long long block_exclusive_scan_u64(unsigned long long v, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned long long incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long up = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += up;
  }
  __syncthreads();
  if (lane == 31) sh.warp_u64[warp] = incl;
  __syncthreads();
  unsigned long long before = 0;
  for (int w = 0; w < warp; ++w) before += sh.warp_u64[w];
  return before + incl - v;
}

// ---------------------------------------------------------- radix select --
// The largest key v such that the weight (count, or mass) of the entries with
// key >= max(v, floor_key) reaches target. Keys are the bits of e in [0, 1]
// (< 2^30), taken 10 bits per level from the top.
template <bool kMass, int kThreads>
__device__ uint32_t radix_select(const float* e, int V, uint32_t floor_key,
                                 unsigned long long target, SampleShared& sh) {
  uint32_t prefix = 0;
  unsigned long long above = 0;
  for (int shift = 20; shift >= 0; shift -= 10) {
    for (int b = threadIdx.x; b < kRadixBins; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < V; i += kThreads) {
      const uint32_t key = float_to_bits(e[i]);
      if (key < floor_key || (key >> (shift + 10)) != (prefix >> (shift + 10))) continue;
      const unsigned long long w = kMass ? mass_of(e[i]) : 1ull;
      atomicAdd(&sh.hist[(key >> shift) & (kRadixBins - 1)], w);
    }
    __syncthreads();
    if (threadIdx.x < 32) {  // warp 0: the bin where the running weight from the top reaches target
      const int lane = threadIdx.x;
      constexpr int kPerLane = kRadixBins / 32;
      unsigned long long mine = 0;
      for (int j = 0; j < kPerLane; ++j) mine += sh.hist[lane * kPerLane + j];
      unsigned long long suffix = mine;  // weight of this lane's bins and every bin above
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long down = __shfl_down_sync(0xffffffffu, suffix, o);
        if (lane + o < 32) suffix += down;
      }
      const unsigned reached = __ballot_sync(0xffffffffu, above + suffix >= target);
      const int crossing = reached ? 31 - __clz(reached) : 0;
      if (lane == crossing) {
        unsigned long long run = above + suffix - mine;
        int b = lane * kPerLane + kPerLane - 1;
        for (; b > 0 && run + sh.hist[b] < target; --b) run += sh.hist[b];
        sh.bin = static_cast<unsigned>(b);
        sh.above = run;
      }
    }
    __syncthreads();
    prefix |= sh.bin << shift;
    above = sh.above;
  }
  return prefix;
}

// ----------------------------------------------------------------- kernel --

template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  __shared__ SampleShared sh;
  const int row = blockIdx.x, V = p.V, tid = threadIdx.x;
  const T* x_in = static_cast<const T*>(p.logits) + row * p.row_stride;
  float* x = p.work + static_cast<int64_t>(row) * V;
  int64_t* token = p.tokens + row;

  // Parameters (every thread reads the same values and agrees on errors).
  const float temperature = p.temperature[row];
  const int64_t top_k = p.top_k[row];
  const float top_p = p.top_p[row];
  const float min_p = p.min_p[row];
  int64_t status = 0;
  if (!(temperature >= 0.0f && temperature <= 3.402823466e38f)) status = kSampleBadTemperature;
  else if (top_k < 0) status = kSampleBadTopK;
  else if (!(top_p > 0.0f && top_p <= 1.0f)) status = kSampleBadTopP;
  else if (!(min_p >= 0.0f && min_p <= 1.0f)) status = kSampleBadMinP;
  const bool penalized = p.prev != nullptr && p.n_prev > 0;
  const float penalty = p.penalty != nullptr ? p.penalty[row] : 1.0f;
  if (status == 0 && p.prev != nullptr && !(penalty > 0.0f && penalty <= 3.402823466e38f))
    status = kSampleBadPenalty;
  const int64_t* prev = penalized ? p.prev + static_cast<int64_t>(row) * p.n_prev : nullptr;
  if (status == 0 && penalized) {
    bool bad = false;
    for (int j = tid; j < p.n_prev; j += kThreads) bad |= prev[j] >= V;
    if (__syncthreads_or(bad)) status = kSampleBadPrevToken;
  }
  if (status != 0) {
    if (tid == 0) *token = status;
    return;
  }

  // Pass 1: float32 copy, NaN, max (the penalty edits the copy, then max again).
  float m = -INFINITY;
  bool nan = false;
  for (int i = tid; i < V; i += kThreads) {
    const float v = load_logit(x_in + i);
    nan |= v != v;
    x[i] = v;
    m = fmaxf(m, v);
  }
  if (__syncthreads_or(nan)) {
    if (tid == 0) *token = kSampleNaN;
    return;
  }
  if (penalized) {
    for (int j = tid; j < p.n_prev; j += kThreads) {
      const int64_t id = prev[j];  // repeated ids write the same value
      if (id >= 0) x[id] = apply_repetition_penalty(load_logit(x_in + id), penalty);
    }
    __syncthreads();
    m = -INFINITY;
    for (int i = tid; i < V; i += kThreads) m = fmaxf(m, x[i]);
  }
  m = block_max<kThreads>(m, sh);
  if (m == -INFINITY) {
    if (tid == 0) *token = kSampleNoFinite;
    return;
  }
  if (temperature == 0.0f) {  // greedy: the first index of the max
    int first = V;
    for (int i = tid; i < V; i += kThreads)
      if (x[i] == m) {
        first = i;
        break;
      }
    first = block_min_int<kThreads>(first, sh);
    if (tid == 0) *token = first;
    return;
  }

  // Pass 2: e in place, and the total mass.
  const float inv_t = fminf(1.0f / temperature, 3.402823466e38f);
  unsigned long long mass = 0;
  for (int i = tid; i < V; i += kThreads) {
    const float e = m == INFINITY ? (x[i] == INFINITY ? 1.0f : 0.0f)
                                  : exp_nonpos((x[i] - m) * inv_t);
    x[i] = e;
    mass += mass_of(e);
  }
  const unsigned long long total = block_sum_u64<kThreads>(mass, sh);  // also a barrier
  const float* e = x;

  // Pass 3: the threshold tau on the bits of e.
  uint32_t tau = 0;
  if (top_k > 0 && top_k < V)
    tau = radix_select<false, kThreads>(e, V, 0, static_cast<unsigned long long>(top_k), sh);
  if (top_p < 1.0f) {
    unsigned long long kept = total;
    if (tau > 0) {
      unsigned long long part = 0;
      for (int i = tid; i < V; i += kThreads)
        if (float_to_bits(e[i]) >= tau) part += mass_of(e[i]);
      kept = block_sum_u64<kThreads>(part, sh);
    }
    const uint32_t tau_p = radix_select<true, kThreads>(e, V, tau, top_p_target(top_p, kept), sh);
    tau = tau_p > tau ? tau_p : tau;
  }
  if (min_p > 0.0f && float_to_bits(min_p) > tau) tau = float_to_bits(min_p);

  // Pass 4: the draw over contiguous segments, one per thread, in index order.
  const int seg = (V + kThreads - 1) / kThreads;
  const int lo = min(V, tid * seg), hi = min(V, lo + seg);
  unsigned long long mine = 0;
  for (int i = lo; i < hi; ++i)
    if (float_to_bits(e[i]) >= tau) mine += mass_of(e[i]);
  const unsigned long long before = block_exclusive_scan_u64<kThreads>(mine, sh);
  const unsigned long long kept = block_sum_u64<kThreads>(mine, sh);
  const unsigned long long r = scale_random_bits(
      sample_random_bits(static_cast<uint64_t>(p.seed[row]), static_cast<uint64_t>(p.offset[row]),
                         static_cast<uint64_t>(p.row_ids != nullptr ? p.row_ids[row] : row)),
      kept);
  if (before <= r && r < before + mine) {
    unsigned long long run = before;
    for (int i = lo; i < hi; ++i) {
      if (float_to_bits(e[i]) < tau) continue;
      run += mass_of(e[i]);
      if (run > r) {
        *token = i;
        break;
      }
    }
  }
}

}  // namespace sampling
}  // namespace aigc
