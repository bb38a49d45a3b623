// Self-test kernels of the CUDA emulation harness (tests/test_emulation_harness.py).
//
// Plain CUDA: compiled by nvcc (scripts/ptxas_report.py checks their resource
// usage) and by g++ through the emulator. Each exercises one feature whose
// result a test compares with a torch/numpy oracle.
#pragma once

#include <type_traits>

#include "../../../csrc/kernels/cuda_compat.cuh"

namespace emu_selftest {

// ---- reductions and scans --------------------------------------------------------

// Sum of a warp's values, left in every lane.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// out[b] = sum of in over the grid-stride slice of block b: a shared-memory
// tree down to one warp, then shuffles.
template <int kBlock>
__global__ void __launch_bounds__(kBlock) block_reduce_sum(const float* __restrict__ in, float* __restrict__ out,
                                                           int n) {
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "whole warps");
  __shared__ float partial[kBlock / 32];
  float v = 0.0f;
  for (int i = blockIdx.x * kBlock + threadIdx.x; i < n; i += gridDim.x * kBlock) v += in[i];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBlock / 32 ? partial[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// Inclusive prefix sum of one block's kBlock values (Hillis-Steele, double
// buffered in shared memory). Without the barrier (kSync = false) threads read
// their neighbours' values before these are written: the result is wrong.
template <int kBlock, bool kSync>
__global__ void block_scan(const int* __restrict__ in, int* __restrict__ out) {
  __shared__ int buf[2][kBlock];
  const int t = threadIdx.x;
  const int base = blockIdx.x * kBlock;
  int cur = 0;
  buf[cur][t] = in[base + t];
  if constexpr (kSync) __syncthreads();
  for (int offset = 1; offset < kBlock; offset <<= 1) {
    const int v = buf[cur][t] + (t >= offset ? buf[cur][t - offset] : 0);
    buf[cur ^ 1][t] = v;
    cur ^= 1;
    if constexpr (kSync) __syncthreads();
  }
  out[base + t] = buf[cur][t];
}

// A warp-level inclusive scan with __shfl_up_sync, then a scan of the warp
// totals: the classic two-level block scan.
template <int kBlock>
__global__ void block_scan_shfl(const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float warp_totals[kBlock / 32];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  float v = in[blockIdx.x * kBlock + t];
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += up;
  }
  if (lane == 31) warp_totals[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < kBlock / 32 ? warp_totals[lane] : 0.0f;
    for (int d = 1; d < 32; d <<= 1) {
      const float up = __shfl_up_sync(0xffffffffu, w, d);
      if (lane >= d) w += up;
    }
    if (lane < kBlock / 32) warp_totals[lane] = w;
  }
  __syncthreads();
  if (warp > 0) v += warp_totals[warp - 1];
  out[blockIdx.x * kBlock + t] = v;
}

// ---- warp intrinsics -----------------------------------------------------------------

// mode: 0 __shfl_sync(arg), 1 __shfl_up_sync(arg), 2 __shfl_down_sync(arg), 3 __shfl_xor_sync(arg)
__global__ void shuffle(const int* __restrict__ in, int* __restrict__ out, int mode, int arg, int width) {
  const int t = threadIdx.x + blockIdx.x * blockDim.x;
  const int v = in[t];
  int r = 0;
  switch (mode) {
    case 0:
      r = __shfl_sync(0xffffffffu, v, arg, width);
      break;
    case 1:
      r = __shfl_up_sync(0xffffffffu, v, unsigned(arg), width);
      break;
    case 2:
      r = __shfl_down_sync(0xffffffffu, v, unsigned(arg), width);
      break;
    default:
      r = __shfl_xor_sync(0xffffffffu, v, arg, width);
      break;
  }
  out[t] = r;
}

// 64-bit and 16-bit payloads move whole.
__global__ void shuffle_wide(const double* __restrict__ in, double* __restrict__ out, __half* hout) {
  const int t = threadIdx.x;
  out[t] = __shfl_xor_sync(0xffffffffu, in[t], 1);
  hout[t] = __shfl_sync(0xffffffffu, __float2half(float(t)), 31 - (t & 31));
}

// out[4t..4t+3] = ballot, any, all of pred, and __activemask().
__global__ void votes(const int* __restrict__ pred, unsigned* __restrict__ out) {
  const int t = threadIdx.x + blockIdx.x * blockDim.x;
  const int p = pred[t];
  out[4 * t + 0] = __ballot_sync(0xffffffffu, p);
  out[4 * t + 1] = unsigned(__any_sync(0xffffffffu, p));
  out[4 * t + 2] = unsigned(__all_sync(0xffffffffu, p));
  out[4 * t + 3] = __activemask();
}

// Threads t >= n leave first; the rest see only each other in __activemask()
// and count themselves with a warp reduction over that mask.
__global__ void activemask_after_exit(unsigned* __restrict__ out, int n) {
  const int t = threadIdx.x;
  if (t >= n) return;
  const unsigned mask = __activemask();
  out[2 * t] = mask;
  out[2 * t + 1] = __reduce_add_sync(mask, 1u);
}

// out[3t..] = __match_any_sync, __reduce_add_sync, __reduce_max_sync; __syncwarp between.
__global__ void warp_match_reduce(const int* __restrict__ in, unsigned* __restrict__ out) {
  const int t = threadIdx.x;
  const int v = in[t];
  out[3 * t + 0] = __match_any_sync(0xffffffffu, v);
  __syncwarp();
  out[3 * t + 1] = __reduce_add_sync(0xffffffffu, unsigned(v));
  out[3 * t + 2] = unsigned(__reduce_max_sync(0xffffffffu, v));
}

// Shuffles among the lower and upper half-warps separately (masks 0x0000ffff
// and 0xffff0000): groups with disjoint masks proceed independently.
__global__ void half_warp_groups(const int* __restrict__ in, int* __restrict__ out) {
  const int t = threadIdx.x;
  const unsigned mask = (t & 16) ? 0xffff0000u : 0x0000ffffu;
  int v = in[t];
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
  out[t] = v;
}

// cooperative_groups: out[3t] = sum over the thread's 8-thread tile,
// out[3t+1] = inclusive scan within its 16-thread tile, out[3t+2] = max over
// its warp-sized tile times 1000 plus the tile's meta_group_rank.
__global__ void cg_tiles(const int* __restrict__ in, int* __restrict__ out) {
  namespace cg = cooperative_groups;
  const cg::thread_block block = cg::this_thread_block();
  const int t = static_cast<int>(block.thread_rank());
  const int v = in[t];
  const cg::thread_block_tile<8> tile8 = cg::tiled_partition<8>(block);
  const cg::thread_block_tile<16> tile16 = cg::tiled_partition<16>(block);
  const cg::thread_block_tile<32> warp = cg::tiled_partition<32>(block);
  out[3 * t] = cg::reduce(tile8, v, cg::plus<int>());
  out[3 * t + 1] = cg::inclusive_scan(tile16, v);
  block.sync();
  out[3 * t + 2] = cg::reduce(warp, v, cg::greater<int>()) * 1000 + static_cast<int>(warp.meta_group_rank());
}

// ---- barriers with a predicate -----------------------------------------------------------
__global__ void barrier_predicates(const int* __restrict__ pred, int* __restrict__ out) {
  const int t = threadIdx.x + blockIdx.x * blockDim.x;
  const int p = pred[t];
  const int count = __syncthreads_count(p);
  const int all = __syncthreads_and(p);
  const int any = __syncthreads_or(p);
  out[3 * t + 0] = count;
  out[3 * t + 1] = all;
  out[3 * t + 2] = any;
}

// ---- atomics from many blocks -------------------------------------------------------------
// counts[8]: int add, unsigned add, float add, double add, max, min, CAS-made float max (bits), exch
__global__ void atomics(const int* __restrict__ values, int n, int* __restrict__ histogram, int bins,
                        int* __restrict__ ints, unsigned* __restrict__ uints, float* __restrict__ fsum,
                        double* __restrict__ dsum, float* __restrict__ fmax_out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int v = values[i];
    atomicAdd(&histogram[((v % bins) + bins) % bins], 1);
    atomicAdd(&ints[0], v);
    atomicMax(&ints[1], v);
    atomicMin(&ints[2], v);
    atomicAdd(&uints[0], 1u);
    atomicAdd(fsum, float(v) * 0.5f);
    atomicAdd(dsum, double(v) * 0.25);
    // float max through atomicCAS on the bit pattern.
    const float f = float(v);
    int* addr = reinterpret_cast<int*>(fmax_out);
    int old = *addr;
    while (__int_as_float(old) < f) {
      const int assumed = old;
      old = atomicCAS(addr, assumed, __float_as_int(f));
      if (old == assumed) break;
    }
  }
  if (threadIdx.x == 0) atomicExch(&ints[3], int(blockIdx.x));
}

// ---- shared memory --------------------------------------------------------------------------

// Reverses each block's slice through dynamic shared memory; without the
// barrier (kSync = false) early threads read slots not yet written.
template <bool kSync>
__global__ void reverse_dynamic(const float* __restrict__ in, float* __restrict__ out) {
  extern __shared__ float tile[];
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  tile[t] = in[base + t];
  if constexpr (kSync) __syncthreads();
  out[base + t] = tile[blockDim.x - 1 - t];
}

// The same through AIGC_DYNAMIC_SHARED, with two arrays carved out of it.
__global__ void dynamic_two_arrays(const float* __restrict__ in, float* __restrict__ out, int n) {
  AIGC_DYNAMIC_SHARED(float, smem);
  float* a = smem;
  int* b = reinterpret_cast<int*>(smem + n);
  const int t = threadIdx.x;
  a[t] = in[t];
  b[t] = t * 3;
  __syncthreads();
  out[t] = a[n - 1 - t] + float(b[n - 1 - t]);
}

// A tile transpose through padded static shared memory with a 2-D block.
template <int kTile>
__global__ void transpose(const float* __restrict__ in, float* __restrict__ out, int rows, int cols) {
  __shared__ float tile[kTile][kTile + 1];
  const int x = blockIdx.x * kTile + threadIdx.x, y = blockIdx.y * kTile + threadIdx.y;
  if (x < cols && y < rows) tile[threadIdx.y][threadIdx.x] = in[y * cols + x];
  __syncthreads();
  const int tx = blockIdx.y * kTile + threadIdx.x, ty = blockIdx.x * kTile + threadIdx.y;
  if (tx < rows && ty < cols) out[ty * rows + tx] = tile[threadIdx.x][threadIdx.y];
}

// ---- geometry ------------------------------------------------------------------------------
// out[global thread][0..11] = threadIdx, blockIdx, blockDim, gridDim.
__global__ void geometry(int* __restrict__ out) {
  const int threads_per_block = blockDim.x * blockDim.y * blockDim.z;
  const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int* o = out + 12 * (block * threads_per_block + thread);
  o[0] = threadIdx.x;
  o[1] = threadIdx.y;
  o[2] = threadIdx.z;
  o[3] = blockIdx.x;
  o[4] = blockIdx.y;
  o[5] = blockIdx.z;
  o[6] = blockDim.x;
  o[7] = blockDim.y;
  o[8] = blockDim.z;
  o[9] = gridDim.x;
  o[10] = gridDim.y;
  o[11] = gridDim.z + warpSize * 0;
}

// ---- 16-bit floats --------------------------------------------------------------------------
// Converts float -> half / bf16 (stored) and back (float outputs).
__global__ void convert16(const float* __restrict__ in, __half* __restrict__ h, __nv_bfloat16* __restrict__ b,
                          float* __restrict__ h_back, float* __restrict__ b_back, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const __half hv = __float2half_rn(in[i]);
  const __nv_bfloat16 bv = __float2bfloat16_rn(in[i]);
  h[i] = hv;
  b[i] = bv;
  h_back[i] = __half2float(hv);
  b_back[i] = __bfloat162float(bv);
}

// Widens 16-bit inputs (every bit pattern, in the test) to float.
__global__ void widen16(const __half* __restrict__ h, const __nv_bfloat16* __restrict__ b, float* __restrict__ hf,
                        float* __restrict__ bf, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  hf[i] = __half2float(h[i]);
  bf[i] = __bfloat162float(b[i]);
}

// out = a*b + c in half and bf16 arithmetic, and a half2 sum, with 128-bit loads.
__global__ void half_math(const __half* __restrict__ a, const __half* __restrict__ b, __half* __restrict__ fma_out,
                          __half* __restrict__ add2_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (8 * i + 7 >= n) return;
  const uint4 av = reinterpret_cast<const uint4*>(a)[i];  // 8 halves at once
  const uint4 bv = __ldg(reinterpret_cast<const uint4*>(b) + i);
  const __half2* a2 = reinterpret_cast<const __half2*>(&av);
  const __half2* b2 = reinterpret_cast<const __half2*>(&bv);
  for (int k = 0; k < 4; ++k) {
    fma_out[8 * i + 2 * k] = __hfma(__low2half(a2[k]), __low2half(b2[k]), __float2half(1.0f));
    fma_out[8 * i + 2 * k + 1] = __hfma(__high2half(a2[k]), __high2half(b2[k]), __float2half(1.0f));
    reinterpret_cast<__half2*>(add2_out)[4 * i + k] = __hadd2(a2[k], b2[k]);
  }
}

// y = 2x with 128-bit loads and stores.
__global__ void scale_float4(const float4* __restrict__ x, float4* __restrict__ y, int n4) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n4) return;
  const float4 v = __ldg(x + i);
  y[i] = make_float4(2.0f * v.x, 2.0f * v.y, 2.0f * v.z, 2.0f * v.w);
}

// ---- math intrinsics --------------------------------------------------------------------------
// out[k*n + i] for k = __expf, expf, __logf, rsqrtf, tanhf, __fdividef(x, 3), fmaxf(x, 0.5), min(x, 2)
__global__ void math_functions(const float* __restrict__ x, float* __restrict__ out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  out[0 * n + i] = __expf(v);
  out[1 * n + i] = expf(v);
  out[2 * n + i] = __logf(fabsf(v) + 1.0f);
  out[3 * n + i] = rsqrtf(fabsf(v) + 1.0f);
  out[4 * n + i] = tanhf(v);
  out[5 * n + i] = __fdividef(v, 3.0f);
  out[6 * n + i] = fmaxf(v, 0.5f);
  out[7 * n + i] = min(v, 2.0f);
}

// ---- tensor cores ------------------------------------------------------------------------------
// C[M,N] (float) = A[M,K] @ B[K,N] with 16-bit inputs; one warp per 16x16 tile
// of C, A row-major, B row- or column-major, C stored row- or column-major.
template <class T, bool kBColMajor, bool kCColMajor>
__global__ void wmma_gemm(const T* __restrict__ A, const T* __restrict__ B, float* __restrict__ C, int M, int N,
                          int K) {
  using namespace nvcuda;
  using BLayout = typename std::conditional<kBColMajor, wmma::col_major, wmma::row_major>::type;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int tiles_n = N / 16;
  const int tm = warp / tiles_n, tn = warp % tiles_n;
  if (tm * 16 >= M) return;  // whole warps leave together
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int k = 0; k < K; k += 16) {
    wmma::load_matrix_sync(a, A + size_t(tm) * 16 * K + k, K);
    if constexpr (kBColMajor) {
      wmma::load_matrix_sync(b, B + size_t(tn) * 16 * K + k, K);  // B stored as [N][K]
    } else {
      wmma::load_matrix_sync(b, B + size_t(k) * N + tn * 16, N);
    }
    wmma::mma_sync(acc, a, b, acc);
  }
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 2.0f;  // element-wise ops touch each element once
  if constexpr (kCColMajor) {
    wmma::store_matrix_sync(C + size_t(tn) * 16 * M + tm * 16, acc, M, wmma::mem_col_major);
  } else {
    wmma::store_matrix_sync(C + size_t(tm) * 16 * N + tn * 16, acc, N, wmma::mem_row_major);
  }
}

// One warp, two more shapes: D (32x8, half accumulator) = A (32x16, stored
// column-major) @ B (16x8) + C, and TD (16x16 float) = tf32 TA (16x8) @ TB (8x16).
__global__ void wmma_shapes(const __half* __restrict__ a, const __half* __restrict__ b, const __half* __restrict__ c,
                            __half* __restrict__ d, const float* __restrict__ ta, const float* __restrict__ tb,
                            float* __restrict__ td) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 32, 8, 16, __half, wmma::col_major> fa;
  wmma::fragment<wmma::matrix_b, 32, 8, 16, __half, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 32, 8, 16, __half> fc;
  wmma::load_matrix_sync(fa, a, 32);
  wmma::load_matrix_sync(fb, b, 8);
  wmma::load_matrix_sync(fc, c, 8, wmma::mem_row_major);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(d, fc, 8, wmma::mem_row_major);

  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> tfa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> tfb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> tfc;
  wmma::load_matrix_sync(tfa, ta, 8);
  wmma::load_matrix_sync(tfb, tb, 16);
  for (int i = 0; i < tfa.num_elements; ++i) tfa.x[i] = wmma::__float_to_tf32(tfa.x[i]);
  for (int i = 0; i < tfb.num_elements; ++i) tfb.x[i] = wmma::__float_to_tf32(tfb.x[i]);
  wmma::fill_fragment(tfc, 0.0f);
  wmma::mma_sync(tfc, tfa, tfb, tfc);
  wmma::store_matrix_sync(td, tfc, 16, wmma::mem_row_major);
}

// ---- misuse the emulator must report ----------------------------------------------------------
// mode 0: half a warp waits at a barrier, the other half in a shuffle (deadlock);
// mode 1: lanes of a warp at different shuffles;
// mode 2: a lane exits while its warp-mates wait for it in a shuffle;
// mode 3: wmma load from a misaligned pointer.
__global__ void misuse(float* out, int mode) {
  const int t = threadIdx.x;
  if (mode == 0) {
    if (t < 16) {
      __syncthreads();
    } else {
      out[t] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
    }
  } else if (mode == 1) {
    if (t & 1) {
      out[t] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
    } else {
      out[t] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
    }
  } else if (mode == 2) {
    if (t == 3) return;
    out[t] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  } else {
    using namespace nvcuda;
    __shared__ __align__(32) __half tile[16 * 24];
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::load_matrix_sync(a, tile + 8, 24);
    out[t] = __half2float(a.x[0]);
  }
}

}  // namespace emu_selftest
