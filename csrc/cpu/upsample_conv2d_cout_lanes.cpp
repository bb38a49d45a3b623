// Engine 1 of aigc::upsample_conv2d on the CPU (most layers): SIMD lanes run
// over output channels. Each phase is an implicit GEMM: a register tile of NR
// output pixels x 16 channels accumulates
// sum_{tap, ci} w[tap][ci][co] * x[pixel + tap][ci], reading x in NHWC
// through a table of per-pixel row pointers (XNNPACK-style indirection,
// padding taps point at a zero row), so x is never im2col-copied.
// bf16 runs on AVX512-BF16 dot-product instructions where the CPU has them
// (pairs of input channels per multiply-add, fp32 accumulators); otherwise,
// and for fp16, inputs are converted to fp32 while packing. float64
// accumulates in double.
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "cpu/packed_weight_cache.h"
#include "cpu/upsample_conv2d_engines.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace aigc::upsample {
namespace {

// Per-thread scratch that outlives the call: packed weights and converted
// inputs reach megabytes, and a fresh allocation each call would pay page
// faults and zeroing for it every time. Slot 0: input, slot 1: weights,
// slot 2: staged output.
template <typename T>
T* scratch(int slot, size_t count) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  const size_t floats = (count * sizeof(T) + sizeof(float) - 1) / sizeof(float);
  if (b.size() < floats) b.resize(floats);
  return reinterpret_cast<T*>(b.data());
}

// c[i][v*L + lane] += sum_{k < kc} w[k][v*L + lane] * rows[i][k]: an NR-pixel x
// MV*L-channel register tile over one K slice (one tap, kc input channels).
// rows[i] is pixel i's input row for the tap (channels contiguous).
template <typename acc_t, int NR, int MV>
inline void cout_lanes_microkernel(const acc_t* const* rows, int64_t kc, const acc_t* w,
                                   acc_t* c, int64_t ldc) {
  constexpr int L = kLanes<acc_t>;
  // Local accumulators and pointers: through `c` the compiler would have to
  // assume aliasing and store the tile back on every iteration.
  Vec<acc_t> acc[NR][MV];
  const acc_t* p[NR];
#pragma GCC unroll 16
  for (int i = 0; i < NR; ++i) {
    p[i] = rows[i];
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) acc[i][v] = loadu(c + i * ldc + v * L);
  }
  for (int64_t k = 0; k < kc; ++k) {
    Vec<acc_t> wv[MV];
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) wv[v] = loadu(w + v * L);
    w += MV * L;
#pragma GCC unroll 16
    for (int i = 0; i < NR; ++i) {
      const Vec<acc_t> xb = splat(p[i][k]);
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) acc[i][v] = fmadd(wv[v], xb, acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) storeu(c + i * ldc + v * L, acc[i][v]);
}

// A cout-lanes register tile: how weights and inputs are packed for it and
// the microkernel that consumes them. FmaTile multiplies one input channel
// at a time in acc_t (8 lanes); ZmmTile does the same on 16 lanes with
// AVX-512, or two bf16 channels at a time with AVX512-BF16's vdpbf16ps.
template <typename acc_t_, int NR_, int MV>
struct FmaTile {
  using acc_t = acc_t_;
  using in_t = acc_t;  // packed operand type
  static constexpr int NR = NR_, BW = MV * kLanes<acc_t>, kStep = 1;
  // Offset of weight (ci, co) in a [ci][BW] tap panel.
  static int64_t at(int64_t ci, int64_t co) { return ci * BW + co; }
  static void run(const in_t* const* rows, int64_t kc, const in_t* w, acc_t* c, int64_t ldc) {
    cout_lanes_microkernel<acc_t, NR, MV>(rows, kc, w, c, ldc);
  }
};

#ifdef __AVX512F__
// 16-lane operations on the packed operands of ZmmTile: fp32 multiply-adds
// one input channel at a time, or bf16 dot products of channel pairs.
inline __m512 zmm_weights(const float* w) { return _mm512_loadu_ps(w); }
inline __m512 zmm_input(const float* x) { return _mm512_set1_ps(*x); }
inline __m512 zmm_madd(__m512 acc, __m512 w, __m512 x) { return _mm512_fmadd_ps(w, x, acc); }
#ifdef __AVX512BF16__
#define AIGC_UPSAMPLE_BF16_DOT 1
inline __m512bh zmm_weights(const c10::BFloat16* w) {
  return (__m512bh)_mm512_loadu_si512(w);
}
inline __m512bh zmm_input(const c10::BFloat16* x) {
  int32_t pair;
  std::memcpy(&pair, x, sizeof pair);
  return (__m512bh)_mm512_set1_epi32(pair);
}
inline __m512 zmm_madd(__m512 acc, __m512bh w, __m512bh x) { return _mm512_dpbf16_ps(acc, w, x); }
#endif

// The AVX-512 tile: NR pixels x MV*16 channels in 32 registers, K consumed
// kStep input channels (1 fp32 or a bf16 pair) per multiply-add.
template <typename in_t_, int NR_, int MV>
struct ZmmTile {
  using acc_t = float;
  using in_t = in_t_;
  static constexpr int NR = NR_, BW = MV * 16, kStep = std::is_same_v<in_t, float> ? 1 : 2;
  // [ci / kStep][BW][kStep]: a bf16 pair side by side, as vdpbf16ps reads it.
  static int64_t at(int64_t ci, int64_t co) {
    return ((ci / kStep) * BW + co) * kStep + ci % kStep;
  }
  static void run(const in_t* const* rows, int64_t kc, const in_t* w, float* c, int64_t ldc) {
    static_assert(NR * MV + MV + 1 <= 32, "register budget");
    __m512 acc[NR][MV];
    const in_t* p[NR];
#pragma GCC unroll 16
    for (int i = 0; i < NR; ++i) {
      p[i] = rows[i];
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) acc[i][v] = _mm512_loadu_ps(c + i * ldc + v * 16);
    }
    for (int64_t k = 0; k < kc; k += kStep) {
      decltype(zmm_weights(w)) wv[MV];
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) wv[v] = zmm_weights(w + v * 16 * kStep);
      w += BW * kStep;
#pragma GCC unroll 16
      for (int i = 0; i < NR; ++i) {
        const auto xb = zmm_input(p[i] + k);
#pragma GCC unroll 4
        for (int v = 0; v < MV; ++v) acc[i][v] = zmm_madd(acc[i][v], wv[v], xb);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) _mm512_storeu_ps(c + i * ldc + v * 16, acc[i][v]);
  }
};
#endif

#ifdef AIGC_SIMD_AVX2
inline void transpose8x8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define AIGC_UPSAMPLE_SPREAD_STORE 1
// Writing 8 values to d[0], d[s], ..., d[7s] (one channel of 8 pixels that
// are neighbours in a phase's output row, s = the stride in elements) as 1-2
// masked stores of 16-lane windows, each value permuted to its lane, instead
// of 8 scalar stores.
struct Spread {
  int windows = 0;  // 0: s is not 1..4, store value by value
  __m512i index32[2] = {};
  __m256i index16[2] = {};
  __mmask16 mask[2] = {};
};

inline Spread make_spread(int64_t s) {
  Spread p;
  if (s < 1 || s > 4) return p;
  p.windows = static_cast<int>(7 * s / 16 + 1);
  for (int w = 0; w < p.windows; ++w) {
    alignas(64) int32_t index32[16];
    alignas(32) int16_t index16[16];
    unsigned mask = 0;
    for (int lane = 0; lane < 16; ++lane) {
      const int64_t e = 16 * w + lane;  // element offset from d
      index32[lane] = index16[lane] = static_cast<int16_t>(std::min<int64_t>(e / s, 7));
      if (e % s == 0 && e / s < 8) mask |= 1u << lane;
    }
    p.index32[w] = _mm512_load_si512(index32);
    p.index16[w] = _mm256_load_si256(reinterpret_cast<const __m256i*>(index16));
    p.mask[w] = static_cast<__mmask16>(mask);
  }
  return p;
}

inline void spread_store(const Spread& p, float* d, __m256 v) {
  // (Not _mm512_castps256_ps512: GCC 12 warns on its undefined upper half.)
  const __m512 z = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
  for (int w = 0; w < p.windows; ++w)
    _mm512_mask_storeu_ps(d + 16 * w, p.mask[w],
                          _mm512_maskz_permutexvar_ps(p.mask[w], p.index32[w], z));
}

inline void spread_store_16bit(const Spread& p, void* d, __m128i v) {
  const __m256i z = __builtin_shufflevector(v, v, 0, 1, 0, 1);
  for (int w = 0; w < p.windows; ++w)
    _mm256_mask_storeu_epi16(static_cast<int16_t*>(d) + 16 * w, p.mask[w],
                             _mm256_permutexvar_epi16(p.index16[w], z));
}

#ifdef __F16C__
inline void spread_store(const Spread& p, c10::Half* d, __m256 v) {
  spread_store_16bit(p, d, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#endif

#ifdef __AVX512BF16__
inline void spread_store(const Spread& p, c10::BFloat16* d, __m256 v) {
  spread_store_16bit(p, d, (__m128i)_mm256_cvtneps_pbh(v));
}
#endif

template <typename scalar_t>
constexpr bool kSpreadStores = std::is_same_v<scalar_t, float>
#ifdef __F16C__
                               || std::is_same_v<scalar_t, c10::Half>
#endif
#ifdef __AVX512BF16__
                               || std::is_same_v<scalar_t, c10::BFloat16>
#endif
    ;

// Whether rows [r, r + 8) go to dst[r] + i * s: every pixel stored, neighbours
// in one output row.
template <typename scalar_t>
inline bool evenly_spaced(scalar_t* const* dst, int64_t s) {
  if (dst[0] == nullptr) return false;
  for (int i = 1; i < 8; ++i)
    if (dst[i] != dst[0] + i * s) return false;
  return true;
}
#endif

// Writes rows x channels of `c` (one row per output pixel, `ldc` apart) to
// channel planes: pixel r's channel co goes to dst[r][co * cstride]. Eight
// pixels at a time (neighbours in an output row, usually `step` elements
// apart) are written channel by channel, reading `c` in 8x8 blocks
// transposed in registers rather than one cache line per value. Rows r with
// dst[r] == nullptr are skipped; `c` must have 8 readable rows past `rows`.
template <typename scalar_t, typename acc_t>
void store_channel_planes(const acc_t* c, int64_t ldc, int64_t rows, scalar_t* const* dst,
                          int64_t cout, int64_t cstride, int64_t step) {
#ifdef AIGC_SIMD_AVX2
  if constexpr (std::is_same_v<acc_t, float>) {
#ifdef AIGC_UPSAMPLE_SPREAD_STORE
    Spread spread;
    if constexpr (kSpreadStores<scalar_t>) spread = make_spread(step);
#endif
    for (int64_t r0 = 0; r0 < rows; r0 += 8) {
      const int64_t nr = std::min<int64_t>(8, rows - r0);
#ifdef AIGC_UPSAMPLE_SPREAD_STORE
      const bool spread_rows =
          spread.windows > 0 && nr == 8 && evenly_spaced<scalar_t>(dst + r0, step);
#endif
      for (int64_t c0 = 0; c0 < cout; c0 += 8) {
        const int64_t nc = std::min<int64_t>(8, cout - c0);
        __m256 v[8];
        for (int i = 0; i < 8; ++i) v[i] = _mm256_loadu_ps(c + (r0 + i) * ldc + c0);
        transpose8x8(v);
#ifdef AIGC_UPSAMPLE_SPREAD_STORE
        if constexpr (kSpreadStores<scalar_t>) {
          if (spread_rows) {
            for (int64_t j = 0; j < nc; ++j)
              spread_store(spread, dst[r0] + (c0 + j) * cstride, v[j]);
            continue;
          }
        }
#endif
        alignas(32) float lanes[8][8];
        for (int j = 0; j < 8; ++j) _mm256_store_ps(lanes[j], v[j]);
        for (int64_t j = 0; j < nc; ++j)
          for (int64_t i = 0; i < nr; ++i)
            if (dst[r0 + i] != nullptr)
              dst[r0 + i][(c0 + j) * cstride] = static_cast<scalar_t>(lanes[j][i]);
      }
    }
    return;
  }
#endif
  for (int64_t co = 0; co < cout; ++co)
    for (int64_t r = 0; r < rows; ++r)
      if (dst[r] != nullptr) dst[r][co * cstride] = static_cast<scalar_t>(c[r * ldc + co]);
}

#ifdef AIGC_SIMD_AVX2
// Transposes 8 rows of 8 16-bit values (bf16 or fp16 bits) in registers.
inline void transpose8x8_16bit(__m128i (&r)[8]) {
  __m128i a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm_unpacklo_epi16(r[i], r[i + 1]);  // columns 0-3 of rows i, i + 1
    a[i + 1] = _mm_unpackhi_epi16(r[i], r[i + 1]);  // columns 4-7
  }
  for (int i = 0; i < 8; i += 4) {
    b[i] = _mm_unpacklo_epi32(a[i], a[i + 2]);  // columns 0, 1 of rows i..i + 3
    b[i + 1] = _mm_unpackhi_epi32(a[i], a[i + 2]);  // columns 2, 3
    b[i + 2] = _mm_unpacklo_epi32(a[i + 1], a[i + 3]);  // columns 4, 5
    b[i + 3] = _mm_unpackhi_epi32(a[i + 1], a[i + 3]);  // columns 6, 7
  }
  for (int j = 0; j < 4; ++j) {
    r[2 * j] = _mm_unpacklo_epi64(b[j], b[j + 4]);
    r[2 * j + 1] = _mm_unpackhi_epi64(b[j], b[j + 4]);
  }
}
#endif

// One input row (channels x width, channel stride cs, width stride ws) to
// NHWC: d[ix * cin + c] = s[c * cs + ix * ws]. Where the width is contiguous
// and no conversion is needed, 8 channels x 8 (or 4) columns at a time are
// transposed in registers: one vector load per channel, one store per column.
template <typename scalar_t, typename in_t>
void pack_input_row(const scalar_t* s, int64_t cs, int64_t ws, int64_t cin, int64_t W, in_t* d) {
  int64_t c0 = 0;
#ifdef AIGC_SIMD_AVX2
  if (ws == 1) {
    if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<in_t, float>) {
      for (; c0 + 8 <= cin; c0 += 8) {
        int64_t ix = 0;
        for (; ix + 8 <= W; ix += 8) {
          __m256 v[8];
          for (int i = 0; i < 8; ++i) v[i] = _mm256_loadu_ps(s + (c0 + i) * cs + ix);
          transpose8x8(v);
          for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + (ix + j) * cin + c0, v[j]);
        }
        for (; ix + 4 <= W; ix += 4)
          for (int64_t c = c0; c < c0 + 8; c += 4) {
            __m128 r[4];
            for (int i = 0; i < 4; ++i) r[i] = _mm_loadu_ps(s + (c + i) * cs + ix);
            _MM_TRANSPOSE4_PS(r[0], r[1], r[2], r[3]);
            for (int j = 0; j < 4; ++j) _mm_storeu_ps(d + (ix + j) * cin + c, r[j]);
          }
        for (; ix < W; ++ix)
          for (int64_t c = c0; c < c0 + 8; ++c) d[ix * cin + c] = s[c * cs + ix];
      }
    } else if constexpr (std::is_same_v<scalar_t, in_t> && sizeof(in_t) == 2) {
      for (; c0 + 8 <= cin; c0 += 8) {
        int64_t ix = 0;
        for (; ix + 8 <= W; ix += 8) {
          __m128i v[8];
          for (int i = 0; i < 8; ++i)
            v[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + (c0 + i) * cs + ix));
          transpose8x8_16bit(v);
          for (int j = 0; j < 8; ++j)
            _mm_storeu_si128(reinterpret_cast<__m128i*>(d + (ix + j) * cin + c0), v[j]);
        }
        for (; ix < W; ++ix)
          for (int64_t c = c0; c < c0 + 8; ++c) d[ix * cin + c] = s[c * cs + ix];
      }
    }
  }
#endif
  // The rest, and conversions: blocks of 16 channels, so each written line
  // is filled by consecutive stores.
  for (; c0 < cin; c0 += 16)
    for (int64_t ix = 0; ix < W; ++ix)
      for (int64_t c = c0; c < std::min<int64_t>(c0 + 16, cin); ++c)
        d[ix * cin + c] = static_cast<in_t>(s[c * cs + ix * ws]);
}

// Packs the weights of one kernel element for input channels [ci0, ci1) and
// the output channels [co0, co0 + n) of one tile block: weight (ci, co0 + c)
// is src[ci * ci_stride + c * co_stride] and goes to d[Tile::at(ci, c)].
template <typename scalar_t, typename Tile>
void pack_weight_slice(const scalar_t* src, int64_t ci_stride, int64_t co_stride, int64_t ci0,
                       int64_t ci1, int64_t n, typename Tile::in_t* d) {
  using in_t = typename Tile::in_t;
#ifdef __AVX512F__
  // fp32: 16 channels per gather and one vector store, where a scalar loop
  // spends ~10 instructions per weight.
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<in_t, float> &&
                Tile::kStep == 1 && Tile::BW % 16 == 0) {
    if (co_stride > -INT32_MAX / 16 && co_stride < INT32_MAX / 16) {
      const __m512i index = _mm512_mullo_epi32(
          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
          _mm512_set1_epi32(static_cast<int32_t>(co_stride)));
      for (int64_t ci = ci0; ci < ci1; ++ci)
        for (int64_t c0 = 0; c0 < n; c0 += 16) {
          const int64_t lanes = std::min<int64_t>(16, n - c0);
          const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1);
          // Lanes past n gather nothing and store the zeros of the padding.
          _mm512_storeu_ps(d + Tile::at(ci, c0),
                           _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, index,
                                                    src + ci * ci_stride + c0 * co_stride,
                                                    sizeof(float)));
        }
      return;
    }
  }
#endif
  for (int64_t ci = ci0; ci < ci1; ++ci)
    for (int64_t c = 0; c < n; ++c)
      d[Tile::at(ci, c)] = static_cast<in_t>(src[ci * ci_stride + c * co_stride]);
}

// Everything a packed weight layout depends on besides the weight's values:
// the tensor (address, dtype, sizes, strides), the tile's panel format and
// where each kernel element's panel goes. The cache key of packed weights.
template <typename Tile>
std::string packing_layout(const at::Tensor& weight, const std::vector<int64_t>& kofs,
                           const std::vector<int64_t>& kblock, int64_t total) {
  std::string key;
  auto put = [&](int64_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(reinterpret_cast<intptr_t>(weight.const_data_ptr()));
  put(static_cast<int64_t>(weight.scalar_type()));
  for (const int64_t v : weight.sizes()) put(v);
  for (const int64_t v : weight.strides()) put(v);
  put(Tile::BW);
  put(Tile::kStep);
  put(sizeof(typename Tile::in_t));
  for (const int64_t v : kofs) put(v);
  for (const int64_t v : kblock) put(v);
  put(total);
  return key;
}

template <typename scalar_t, typename Tile>
void cout_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                    const at::Tensor& weight, const std::vector<typename Tile::acc_t>& eff_scale,
                    const std::vector<typename Tile::acc_t>& eff_shift, const at::Tensor& out) {
  using acc_t = typename Tile::acc_t;
  using in_t = typename Tile::in_t;
  constexpr int L = kLanes<acc_t>;
  constexpr int NR = Tile::NR;
  constexpr int BW = Tile::BW;  // output channels per register tile
  const int64_t cin = g.Cin;
  const int64_t blocks = (g.Cout + BW - 1) / BW;
  const int64_t ldc = blocks * BW;  // C buffer row: all (padded) output channels of a pixel

  // x as NHWC in in_t (used in place when it already is), plus a zero row
  // that taps outside the image point to.
  const Strides xs = strides_of(x);
  const bool x_ready = std::is_same_v<scalar_t, in_t> && xs.c == 1 && xs.w == cin &&
                       (g.H == 1 || xs.h == g.W * cin) && (g.N == 1 || xs.n == g.H * g.W * cin);
  const in_t* xrows = x_ready ? reinterpret_cast<const in_t*>(x.data_ptr<scalar_t>())
                              : scratch<in_t>(0, g.N * g.H * g.W * cin);
  const std::vector<in_t> zero_row(std::max<int64_t>(cin, 1), in_t(0));

  // Weights per phase as [block][tap][ci][BW] (channels past Cout are zero).
  std::vector<int64_t> wofs(phases.size() + 1, 0);
  // Where kernel element (ky, kx) goes: offset of its (phase, tap) panel for
  // block 0 and the distance between blocks; -1 if its phase has no outputs.
  std::vector<int64_t> kofs(g.kh * g.kw, -1), kblock(g.kh * g.kw, 0);
  for (size_t p = 0; p < phases.size(); ++p) {
    const int64_t ntaps = static_cast<int64_t>(phases[p].taps.size());
    wofs[p + 1] = wofs[p] + blocks * ntaps * cin * BW;
    for (int64_t tap = 0; tap < ntaps; ++tap) {
      const auto [jy, jx] = phases[p].taps[tap];
      const int64_t k = (phases[p].ry + jy * g.sh) * g.kw + phases[p].rx + jx * g.sw;
      kofs[k] = wofs[p] + tap * cin * BW;
      kblock[k] = ntaps * cin * BW;
    }
  }
  // Packed weights come from the cache when these values were packed before
  // for this layout. Only without autograd (inference, evaluation): a
  // training step changes the weights every call, and each miss also costs a
  // copy of the weights into the cache.
  const bool cacheable = !c10::GradMode::is_enabled() && weight.is_contiguous();
  std::string layout;
  std::shared_ptr<const PackedWeights> cached;
  std::shared_ptr<PackedWeights> fresh;
  in_t* wpack;
  if (cacheable) {
    layout = packing_layout<Tile>(weight, kofs, kblock, wofs.back());
    cached = PackedWeightCache::instance().find(layout, weight.const_data_ptr(), weight.nbytes());
  }
  if (cached != nullptr) {
    wpack = const_cast<in_t*>(reinterpret_cast<const in_t*>(cached->packed.data()));
  } else {
    if (cacheable) {
      fresh = std::make_shared<PackedWeights>();
      fresh->layout = std::move(layout);
      // Zero-filled: the padding lanes past Cout stay zero.
      fresh->packed.resize((wofs.back() * sizeof(in_t) + sizeof(float) - 1) / sizeof(float));
      wpack = reinterpret_cast<in_t*>(fresh->packed.data());
    } else {
      wpack = scratch<in_t>(1, wofs.back());
      if (g.Cout % BW != 0) std::fill(wpack, wpack + wofs.back(), in_t(0));  // padding lanes
    }
  }

  // Packing, in one parallel region (each region costs a thread hand-off,
  // and on a shared CPU a hand-off can cost a scheduler tick): weight items
  // first (none when the cache had them), then input rows to convert.
  const scalar_t* w = weight.data_ptr<scalar_t>();
  const Strides ws = strides_of(weight);
  const scalar_t* src = x.data_ptr<scalar_t>();
  in_t* x_copy = const_cast<in_t*>(xrows);
  // Weight items: (block, 8 input channels), so an item reads an L1-sized
  // slab of the weight and writes each tap panel's rows in one contiguous run
  // (filling lines in many panels at once would keep hundreds of write
  // misses in flight).
  constexpr int64_t kPackChannels = 8;  // even: bf16 channel pairs stay in one item
  const int64_t ci_groups = (cin + kPackChannels - 1) / kPackChannels;
  const int64_t weight_items = cached != nullptr ? 0 : blocks * ci_groups;
  // Input items: bands of rows that together span at least a cache line of
  // each channel, so no line is split between two items (and two threads).
  const int64_t band = std::clamp<int64_t>(
      64 / std::max<int64_t>(g.W * static_cast<int64_t>(sizeof(scalar_t)), 1), 1, g.H);
  const int64_t bands = (g.H + band - 1) / band;
  const int64_t pack_items = weight_items + (x_ready ? 0 : g.N * bands);
  parallel_items(pack_items, weight.numel() + x.numel(), [&](int64_t item, int) {
    if (item < weight_items) {
      const int64_t b = item / ci_groups, ci0 = item % ci_groups * kPackChannels;
      const int64_t ci1 = std::min(cin, ci0 + kPackChannels);
      const int64_t co0 = b * BW, n = std::min<int64_t>(BW, g.Cout - co0);
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t k = ky * g.kw + kx;
          if (kofs[k] < 0) continue;
          pack_weight_slice<scalar_t, Tile>(w + co0 * ws.c + ky * ws.h + kx * ws.w, ws.n, ws.c,
                                            ci0, ci1, n, wpack + kofs[k] + b * kblock[k]);
        }
    } else {
      const int64_t n = (item - weight_items) / bands, h0 = (item - weight_items) % bands * band;
      for (int64_t h = h0; h < std::min(h0 + band, g.H); ++h)
        pack_input_row<scalar_t, in_t>(src + n * xs.n + h * xs.h, xs.c, xs.w, cin, g.W,
                                       x_copy + (n * g.H + h) * g.W * cin);
    }
  });
  if (fresh != nullptr) {
    const auto* bytes = static_cast<const uint8_t*>(weight.const_data_ptr());
    fresh->source.assign(bytes, bytes + weight.nbytes());
    PackedWeightCache::instance().insert(std::move(fresh));
  }

  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  const Strides os = strides_of(out);
  const acc_t slope = static_cast<acc_t>(g.negative_slope);

  // Pixel order within a phase. Image-fastest (t, u, n) makes the NR pixels of
  // a group share one (t, u), hence the same taps inside the image, so taps
  // outside are skipped for the whole group (1/4 of the work of a 4x4 -> 8x8
  // layer, 15/16 of a 1x1 -> 4x4 one); with channels_last output each pixel's
  // channels are one contiguous store. For NCHW output of larger images the
  // row order (n, t, u) instead makes consecutive pixels neighbours in the
  // output rows that the epilogue writes channel by channel.
  bool image_fastest = os.c == 1;
  for (const Phase& ph : phases) image_fastest |= ph.rows() * ph.cols() <= 32;
  auto locate = [&](const Phase& ph, int64_t m, int64_t& n, int64_t& t, int64_t& u) {
    if (image_fastest) {
      n = m % g.N;
      t = ph.t0 + (m / g.N) / ph.cols();
      u = ph.u0 + (m / g.N) % ph.cols();
    } else {
      const int64_t per_image = ph.rows() * ph.cols();
      n = m / per_image;
      t = ph.t0 + (m % per_image) / ph.cols();
      u = ph.u0 + (m % per_image) % ph.cols();
    }
  };
  // Image-fastest pixels with NCHW output: a group's pixels belong to
  // different images, so writing them straight to the channel planes costs a
  // scalar store per value, to lines that the other row phases, in other work
  // items, write again (in a 4x4 -> 8x8 layer one line holds two output rows,
  // so each would be fetched twice). Such outputs are staged as NHWC rows and
  // then written image by image, where 8 pixels are neighbours in a row.
  const bool staged = image_fastest && os.c != 1;
  const int64_t ld_staged = (g.Cout + 7) / 8 * 8;
  const int64_t out_pixels = g.Ho * g.Wo;
  // + 8 rows: store_channel_planes' 8x8 transposes may read past the last.
  acc_t* const staged_out =
      staged ? scratch<acc_t>(2, (g.N * out_pixels + 8) * ld_staged) : nullptr;

  // Blocking, as in BLIS: a work item is a chunk of NR-pixel groups with a C
  // buffer of chunk x Cout accumulators (L2). The K loop (tap, slice of kc
  // input channels) is outermost, so the weight slice of every channel block
  // (Cout x kc, <= 128 KiB) stays in L2 while the chunk's groups run through
  // it, and a group's input rows (NR x kc) stay in L1 across channel blocks.
  // An item runs its chunk for each phase of one row residue ry in turn:
  // those phases interleave their columns in the same output rows, so the
  // later ones write lines the first one brought into cache, where items of
  // single phases would fetch every output line from memory sw times.
  const int threads = at::get_num_threads();
  std::vector<int64_t> groups(phases.size());
  int64_t total_groups = 0;
  for (size_t p = 0; p < phases.size(); ++p) {
    groups[p] = (g.N * phases[p].rows() * phases[p].cols() + NR - 1) / NR;
    total_groups += groups[p];
  }
  std::vector<size_t> family_start{0};  // phases [start[f], start[f + 1]) share ry
  for (size_t p = 1; p < phases.size(); ++p)
    if (phases[p].ry != phases[p - 1].ry) family_start.push_back(p);
  family_start.push_back(phases.size());
  const size_t families = family_start.size() - 1;
  const int64_t chunk = std::clamp<int64_t>(
      std::min<int64_t>(total_groups / (4 * threads * g.sw),
                        (128 << 10) / static_cast<int64_t>(NR * ldc * sizeof(acc_t))),
      1, 32);
  const int64_t kc_max = std::clamp<int64_t>(
      (128 << 10) / static_cast<int64_t>(ldc * sizeof(in_t)) / Tile::kStep * Tile::kStep, 32,
      std::max<int64_t>(cin, 1));
  std::vector<int64_t> item_start(families + 1, 0);  // first item of each family
  for (size_t f = 0; f < families; ++f) {
    int64_t most = 0;
    for (size_t p = family_start[f]; p < family_start[f + 1]; ++p)
      most = std::max(most, (groups[p] + chunk - 1) / chunk);
    item_start[f + 1] = item_start[f] + most;
  }
  int64_t total_macs = 0;
  for (const Phase& ph : phases)
    total_macs += g.N * ph.rows() * ph.cols() * static_cast<int64_t>(ph.taps.size()) * cin * g.Cout;

  struct Workspace {
    std::vector<const in_t*> table;   // [group][tap][pixel] input rows
    std::vector<uint8_t> active;      // [group][tap]: inside the image for some pixel
    std::vector<scalar_t*> dst;       // [group * NR + pixel] output address of channel 0
    std::vector<acc_t*> staged_dst;   // [group * NR + pixel] staged row (instead of dst)
    std::vector<acc_t> cbuf;          // [group * NR + pixel][ldc] accumulators
  };
  std::vector<Workspace> workspaces(at::get_num_threads());
  // Chunk [g0, g0 + chunk) of phase p's groups.
  auto run_chunk = [&](size_t p, int64_t g0, Workspace& workspace) {
    auto& [table, active, dst, staged_dst, cbuf] = workspace;
    const Phase& ph = phases[p];
    const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
    const int64_t ng = std::min(chunk, groups[p] - g0);
    const int64_t pixels = g.N * ph.rows() * ph.cols();

    table.resize(ng * ntaps * NR);
    active.assign(ng * ntaps, 0);
    dst.resize(staged ? 0 : ng * NR);
    staged_dst.resize(staged ? ng * NR : 0);
    cbuf.assign((ng * NR + 8) * ldc, acc_t(0));  // + 8 rows: the 8x8 transposes may overrun
    for (int64_t gi = 0; gi < ng; ++gi) {
      for (int i = 0; i < NR; ++i) {
        // Past the last pixel, repeat it (computed, never stored).
        const int64_t m = std::min((g0 + gi) * NR + i, pixels - 1);
        int64_t n, t, u;
        locate(ph, m, n, t, u);
        const bool stored = (g0 + gi) * NR + i < pixels;
        const int64_t oy = t * g.sh + ph.ry - g.ph, ox = u * g.sw + ph.rx - g.pw;
        if (staged)
          staged_dst[gi * NR + i] =
              stored ? staged_out + ((n * g.Ho + oy) * g.Wo + ox) * ld_staged : nullptr;
        else
          dst[gi * NR + i] = stored ? out_ptr + n * os.n + oy * os.h + ox * os.w : nullptr;
        for (int64_t tap = 0; tap < ntaps; ++tap) {
          const int64_t iy = t - ph.taps[tap][0], ix = u - ph.taps[tap][1];
          const bool inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
          table[(gi * ntaps + tap) * NR + i] =
              inside ? xrows + ((n * g.H + iy) * g.W + ix) * cin : zero_row.data();
          active[gi * ntaps + tap] |= inside;
        }
      }
    }

    const in_t* wphase = wpack + wofs[p];
    for (int64_t tap = 0; tap < ntaps; ++tap) {
      for (int64_t k0 = 0; k0 < cin; k0 += kc_max) {
        const int64_t kc = std::min(kc_max, cin - k0);
        for (int64_t gi = 0; gi < ng; ++gi) {
          if (!active[gi * ntaps + tap]) continue;
          const in_t* rows[NR];
          for (int i = 0; i < NR; ++i) rows[i] = table[(gi * ntaps + tap) * NR + i] + k0;
          for (int64_t b = 0; b < blocks; ++b)
            Tile::run(rows, kc, wphase + ((b * ntaps + tap) * cin + k0) * BW,
                      cbuf.data() + gi * NR * ldc + b * BW, ldc);
        }
      }
    }

    // Epilogue on the chunk while it is in cache: y = act(acc * scale + shift).
    for (int64_t r = 0; r < ng * NR; ++r) {
      acc_t* c = cbuf.data() + r * ldc;
      for (int64_t co = 0; co < ldc; co += L)
        storeu(c + co, activation_vec<acc_t>(fmadd(loadu(c + co), loadu(eff_scale.data() + co),
                                                   loadu(eff_shift.data() + co)),
                                             g.act, slope));
    }
    if (staged) {
      for (int64_t r = 0; r < ng * NR; ++r)
        if (staged_dst[r] != nullptr)
          std::copy(cbuf.data() + r * ldc, cbuf.data() + r * ldc + ld_staged, staged_dst[r]);
    } else if (os.c == 1) {
      // Channels contiguous (channels_last): one contiguous row per pixel.
      for (int64_t r = 0; r < ng * NR; ++r) {
        scalar_t* d = dst[r];
        if (d == nullptr) continue;
        const acc_t* c = cbuf.data() + r * ldc;
        if constexpr (std::is_same_v<scalar_t, acc_t>)
          std::memcpy(d, c, g.Cout * sizeof(acc_t));
        else
          for (int64_t co = 0; co < g.Cout; ++co) d[co] = static_cast<scalar_t>(c[co]);
      }
    } else {
      store_channel_planes<scalar_t, acc_t>(cbuf.data(), ldc, ng * NR, dst.data(), g.Cout,
                                            os.c, g.sw * os.w);
    }
  };
  parallel_items(item_start.back(), total_macs, [&](int64_t item, int thread) {
    const size_t f = std::upper_bound(item_start.begin(), item_start.end(), item) -
                     item_start.begin() - 1;
    const int64_t g0 = (item - item_start[f]) * chunk;
    for (size_t p = family_start[f]; p < family_start[f + 1]; ++p)
      if (g0 < groups[p]) run_chunk(p, g0, workspaces[thread]);
  });
  if (staged) {
    parallel_items(g.N, g.N * out_pixels * g.Cout, [&](int64_t n, int thread) {
      std::vector<scalar_t*>& dst = workspaces[thread].dst;
      dst.resize(out_pixels);
      for (int64_t r = 0; r < out_pixels; ++r)
        dst[r] = out_ptr + n * os.n + (r / g.Wo) * os.h + (r % g.Wo) * os.w;
      store_channel_planes<scalar_t, acc_t>(staged_out + n * out_pixels * ld_staged, ld_staged,
                                            out_pixels, dst.data(), g.Cout, os.c, os.w);
    });
  }
}

}  // namespace

template <typename scalar_t>
void run_cout_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                    const at::Tensor& weight, const std::vector<acc_of<scalar_t>>& eff_scale,
                    const std::vector<acc_of<scalar_t>>& eff_shift, const at::Tensor& out) {
  using acc_t = acc_of<scalar_t>;
  constexpr int L = kLanes<acc_t>;
  auto run = [&](auto engine) { engine(g, phases, x, weight, eff_scale, eff_shift, out); };
#ifdef AIGC_UPSAMPLE_BF16_DOT
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    if (g.Cin % 2 == 0) {  // channel pairs
      if (g.Cout <= 16) return run(cout_lanes<scalar_t, ZmmTile<c10::BFloat16, 14, 1>>);
      return run(cout_lanes<scalar_t, ZmmTile<c10::BFloat16, 12, 2>>);
    }
  }
#endif
#ifdef __AVX512F__
  if constexpr (std::is_same_v<acc_t, float>) {
    if (g.Cout > 16) return run(cout_lanes<scalar_t, ZmmTile<float, 12, 2>>);
    if (g.Cout > L) return run(cout_lanes<scalar_t, ZmmTile<float, 14, 1>>);
  }
#endif
  if (g.Cout <= L) return run(cout_lanes<scalar_t, FmaTile<acc_t, 12, 1>>);
  return run(cout_lanes<scalar_t, FmaTile<acc_t, 6, 2>>);
}

#define AIGC_UPSAMPLE_ENGINE_INSTANCE(ENGINE, T)                                              \
  template void ENGINE<T>(const Geometry&, const std::vector<Phase>&, const at::Tensor&,      \
                          const at::Tensor&, const std::vector<acc_of<T>>&,                   \
                          const std::vector<acc_of<T>>&, const at::Tensor&);
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_cout_lanes, float)
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_cout_lanes, double)
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_cout_lanes, c10::BFloat16)
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_cout_lanes, c10::Half)
#undef AIGC_UPSAMPLE_ENGINE_INSTANCE

}  // namespace aigc::upsample
