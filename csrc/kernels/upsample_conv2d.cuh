// aigc::upsample_conv2d on the GPU:
//   out = act((conv_transpose(x, w) + bias) * scale + shift)      per output channel
//
// The same sub-pixel (phase) decomposition as the CPU kernel: output row oy
// receives kernel rows ky = ry + jy*sh with ry = (oy + ph) mod sh, so each of
// the sh*sw phases is a dense convolution with ceil((kh - ry)/sh) x
// ceil((kw - rx)/sw) taps, and no multiply touches an inserted zero. Each
// phase is an implicit GEMM
//   C[m, co] = sum_{k = (tap, ci)} A[m, k] * B[k, co],   m = (n, t, u) pixels of the phase,
//   A[m, (tap, ci)] = x[n, ci, t - jy, u - jx] (0 outside the image),
//   B[(tap, ci), co] = w[ci, co, ry + jy*sh, rx + jx*sw],
// tiled 64 x 64 per block with the tiles staged through shared memory, the
// im2col done on the fly while loading A, and the epilogue (scale, shift,
// activation, conversion) applied to the C tile in shared memory before one
// store pass. fp32 runs on the CUDA cores (4x4 outputs per thread); fp16 and
// bf16 run on the tensor cores (WMMA 16x16x16, fp32 accumulation).
//
// Raw pointers and sizes only: compiled by nvcc (csrc/cuda/upsample_conv2d.cu)
// and by the host compiler through the emulator (tests/upsample_conv2d_emulation.cpp).
#pragma once

#include "cuda_compat.cuh"

namespace aigc_kernels {
namespace upsample {

// Numbering shared with csrc/cpu/upsample_conv2d.h (enum class Activation).
enum Act : int { kNone = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4, kSilu = 5 };

constexpr int kMaxPhases = 16;  // strides up to 4 in each dimension
constexpr int kBM = 64;         // output pixels per block tile
constexpr int kBN = 64;         // output channels per block tile

// One phase (ry, rx): outputs oy = t*sh + ry - ph, ox = u*sw + rx - pw for
// t in [t0, t0 + rows), u in [u0, u0 + cols); taps jy < jy_count, jx < jx_count.
struct Phase {
  int ry, rx, t0, rows, u0, cols, jy_count, jx_count;
  int first_block;  // index of this phase's first M tile in the grid's x dimension
};

struct Params {
  const void* x;        // (N, Cin, H, W) with element strides x_stride (h stride 0 for 1-D)
  const void* w;        // (kh, kw, Cin, Cout) contiguous: the ConvTranspose weight permuted
  const float* scale;   // (Cout,) effective scale
  const float* shift;   // (Cout,) effective shift (bias folded in: bias * scale + shift)
  void* out;            // (N, Cout, Ho, Wo) with element strides out_stride
  long long x_stride[4];
  long long out_stride[4];
  int N, Cin, Cout, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw;
  int act;
  float slope;
  int num_phases;
  Phase phases[kMaxPhases];
};

// ---- host side: the launch plan, shared by the CUDA and the emulation bindings ----

inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Fills p.phases (phases with outputs only); returns the number of blocks of
// the grid's x dimension (M tiles over all phases). y covers Cout in kBN tiles.
inline int plan(Params& p) {
  p.num_phases = 0;
  int blocks = 0;
  for (int ry = 0; ry < p.sh; ++ry) {
    for (int rx = 0; rx < p.sw; ++rx) {
      Phase ph{};
      ph.ry = ry;
      ph.rx = rx;
      ph.t0 = -floor_div(ry - p.ph, p.sh);
      ph.rows = floor_div(p.Ho - 1 + p.ph - ry, p.sh) - ph.t0 + 1;
      ph.u0 = -floor_div(rx - p.pw, p.sw);
      ph.cols = floor_div(p.Wo - 1 + p.pw - rx, p.sw) - ph.u0 + 1;
      ph.jy_count = ry < p.kh ? (p.kh - ry + p.sh - 1) / p.sh : 0;
      ph.jx_count = rx < p.kw ? (p.kw - rx + p.sw - 1) / p.sw : 0;
      if (ph.rows <= 0 || ph.cols <= 0) continue;
      ph.first_block = blocks;
      blocks += static_cast<int>((static_cast<long long>(p.N) * ph.rows * ph.cols + kBM - 1) / kBM);
      p.phases[p.num_phases++] = ph;
    }
  }
  return blocks;
}

// ---- device side ----

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float activate(float v, int act, float slope) {
  switch (act) {
    case kRelu: return v < 0.0f ? 0.0f : v;
    case kLeakyRelu: return v < 0.0f ? v * slope : v;
    case kTanh: return tanhf(v);
    case kSigmoid: return 1.0f / (1.0f + expf(-v));
    case kSilu: return v / (1.0f + expf(-v));
    default: return v;
  }
}

// The block's phase and its first pixel m0 within the phase. The loop has
// constant indices once unrolled, so the phases are read from the parameter
// space directly instead of being copied to local memory for a dynamic index.
__device__ __forceinline__ Phase block_phase(const Params& p, int& m0) {
  Phase ph = p.phases[0];
#pragma unroll
  for (int i = 1; i < kMaxPhases; ++i)
    if (i < p.num_phases && p.phases[i].first_block <= static_cast<int>(blockIdx.x)) ph = p.phases[i];
  m0 = (static_cast<int>(blockIdx.x) - ph.first_block) * kBM;
  return ph;
}

// Where pixel m of a phase reads and writes: image n, phase coordinates (t, u).
struct Pixel {
  int n, t, u;
  bool valid;
};

__device__ __forceinline__ Pixel locate(const Params& p, const Phase& ph, int m) {
  Pixel px;
  const int per_image = ph.rows * ph.cols;
  px.valid = m < p.N * per_image;
  const int mm = px.valid ? m : 0;
  px.n = mm / per_image;
  px.t = ph.t0 + (mm % per_image) / ph.cols;
  px.u = ph.u0 + (mm % per_image) % ph.cols;
  return px;
}

// A[m, k] for pixel px and k = tap * Cin + ci (0 outside the image or past K).
template <typename T>
__device__ __forceinline__ T load_a(const Params& p, const Phase& ph, const Pixel& px, int k,
                                    int K) {
  if (!px.valid || k >= K) return from_float<T>(0.0f);
  const int tap = k / p.Cin, ci = k - tap * p.Cin;
  const int jy = tap / ph.jx_count, jx = tap - jy * ph.jx_count;
  const int iy = px.t - jy, ix = px.u - jx;
  if (iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) return from_float<T>(0.0f);
  const T* x = static_cast<const T*>(p.x);
  return x[px.n * p.x_stride[0] + ci * p.x_stride[1] + iy * p.x_stride[2] + ix * p.x_stride[3]];
}

// B[k, co] (0 past K or Cout): the permuted weight w[ky][kx][ci][co].
template <typename T>
__device__ __forceinline__ T load_b(const Params& p, const Phase& ph, int k, int co, int K) {
  if (k >= K || co >= p.Cout) return from_float<T>(0.0f);
  const int tap = k / p.Cin, ci = k - tap * p.Cin;
  const int jy = tap / ph.jx_count, jx = tap - jy * ph.jx_count;
  const int ky = ph.ry + jy * p.sh, kx = ph.rx + jx * p.sw;
  const T* w = static_cast<const T*>(p.w);
  return w[(static_cast<long long>(ky * p.kw + kx) * p.Cin + ci) * p.Cout + co];
}

// The epilogue: c[mm * ldc + nn] holds the block's fp32 accumulators; every
// thread of the block applies scale, shift and the activation and stores to
// the output. Consecutive threads take consecutive pixels (NCHW: neighbours
// in an output row) or consecutive channels (channels_last).
template <typename T, int kThreads>
__device__ __forceinline__ void store_tile(const Params& p, const Phase& ph, int m0, int n0,
                                           const float* c, int ldc) {
  T* out = static_cast<T*>(p.out);
  const bool channels_inner = p.out_stride[1] == 1;
  for (int e = threadIdx.x; e < kBM * kBN; e += kThreads) {
    const int mm = channels_inner ? e / kBN : e % kBM;
    const int nn = channels_inner ? e % kBN : e / kBM;
    const int co = n0 + nn;
    const Pixel px = locate(p, ph, m0 + mm);
    if (!px.valid || co >= p.Cout) continue;
    const int oy = px.t * p.sh + ph.ry - p.ph, ox = px.u * p.sw + ph.rx - p.pw;
    const float v = activate(c[mm * ldc + nn] * p.scale[co] + p.shift[co], p.act, p.slope);
    out[px.n * p.out_stride[0] + co * p.out_stride[1] + oy * p.out_stride[2] +
        ox * p.out_stride[3]] = from_float<T>(v);
  }
}

// ---- fp32 on the CUDA cores: 256 threads, a 16 x 16 grid of 4 x 4 outputs ----

constexpr int kSimtThreads = 256;
constexpr int kSimtBK = 16;

template <typename T>
__global__ void __launch_bounds__(kSimtThreads) upsample_conv2d_simt(const Params p) {
  __shared__ float a_tile[kSimtBK][kBM + 4];  // A^T: [k][m]
  __shared__ float b_tile[kSimtBK][kBN + 4];  // [k][co]
  __shared__ float c_tile[kBM][kBN + 1];
  int m0;
  const Phase ph = block_phase(p, m0);
  const int n0 = static_cast<int>(blockIdx.y) * kBN;
  const int K = ph.jy_count * ph.jx_count * p.Cin;
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % 16, ty = tid / 16;
  // This thread loads A column m0 + (tid % kBM) of every k tile: locate it once.
  const Pixel my_pixel = locate(p, ph, m0 + tid % kBM);

  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kSimtBK) {
    for (int e = tid; e < kSimtBK * kBM; e += kSimtThreads)  // e % kBM == tid % kBM
      a_tile[e / kBM][e % kBM] = to_float(load_a<T>(p, ph, my_pixel, k0 + e / kBM, K));
    for (int e = tid; e < kSimtBK * kBN; e += kSimtThreads)
      b_tile[e / kBN][e % kBN] = to_float(load_b<T>(p, ph, k0 + e / kBN, n0 + e % kBN, K));
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtBK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a[i] = a_tile[kk][ty * 4 + i];
        b[i] = b_tile[kk][tx * 4 + i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) c_tile[ty * 4 + i][tx * 4 + j] = acc[i][j];
  __syncthreads();
  store_tile<T, kSimtThreads>(p, ph, m0, n0, &c_tile[0][0], kBN + 1);
}

// ---- fp16 / bf16 on the tensor cores: 128 threads = 4 warps of 32 x 32 ----

constexpr int kWmmaThreads = 128;
constexpr int kWmmaBK = 32;
constexpr int kLdA = kWmmaBK + 8;  // halves; rows 80 bytes apart (a multiple of 16)
constexpr int kLdB = kBN + 8;      // halves; 144 bytes
constexpr int kLdC = kBN + 4;      // floats; 272 bytes

// Shared memory of the tensor-core kernel: the A and B tiles during the K
// loop, then the fp32 C tile for the epilogue in the same bytes.
constexpr int kWmmaSmemAB = (kBM * kLdA + kWmmaBK * kLdB) * 2;
constexpr int kWmmaSmemC = kBM * kLdC * 4;
constexpr int kWmmaSmem = kWmmaSmemAB > kWmmaSmemC ? kWmmaSmemAB : kWmmaSmemC;

template <typename T>
__global__ void __launch_bounds__(kWmmaThreads) upsample_conv2d_wmma(const Params p) {
  using namespace nvcuda;
  __shared__ __align__(32) unsigned char smem[kWmmaSmem];
  T* a_tile = reinterpret_cast<T*>(smem);      // [m][k], row-major, ld kLdA
  T* b_tile = a_tile + kBM * kLdA;             // [k][co], row-major, ld kLdB
  float* c_tile = reinterpret_cast<float*>(smem);  // [m][co], ld kLdC (after the K loop)

  int m0;
  const Phase ph = block_phase(p, m0);
  const int n0 = static_cast<int>(blockIdx.y) * kBN;
  const int K = ph.jy_count * ph.jx_count * p.Cin;
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // this warp's 32 x 32 of the tile
  const Pixel my_pixel = locate(p, ph, m0 + tid % kBM);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < K; k0 += kWmmaBK) {
    for (int e = tid; e < kBM * kWmmaBK; e += kWmmaThreads)  // e % kBM == tid % kBM
      a_tile[(e % kBM) * kLdA + e / kBM] = load_a<T>(p, ph, my_pixel, k0 + e / kBM, K);
    for (int e = tid; e < kWmmaBK * kBN; e += kWmmaThreads)
      b_tile[(e / kBN) * kLdB + e % kBN] = load_b<T>(p, ph, k0 + e / kBN, n0 + e % kBN, K);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kWmmaBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], a_tile + (wm + 16 * i) * kLdA + kk, kLdA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], b_tile + kk * kLdB + wn + 16 * j, kLdB);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  // The A/B tiles are dead (the barrier above): reuse their bytes for C.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(c_tile + (wm + 16 * i) * kLdC + wn + 16 * j, acc[i][j], kLdC,
                              wmma::mem_row_major);
  __syncthreads();
  store_tile<T, kWmmaThreads>(p, ph, m0, n0, c_tile, kLdC);
}

}  // namespace upsample
}  // namespace aigc_kernels
