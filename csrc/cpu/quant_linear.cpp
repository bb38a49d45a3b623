// aigc::quant_linear on the CPU: y = x W^T (+ bias) with W [N, K] kept in a
// GGUF block format (csrc/kernels/quant_formats.h).
//
// Two paths:
//  * int8 (small M, the decode step): each row of x is quantized to int8 per
//    block with a float scale (per 32 for the 32-wide types, per 256 for the
//    K-quants, as llama.cpp's Q8_0 / Q8_K), with the sums of each 16
//    activations for the min and offset terms. Each weight block is then
//    unpacked to bytes in registers and multiplied with integer dot products
//    (AVX2: vpmaddubsw + vpmaddwd; AVX-512 VNNI / AVX-VNNI: vpdpbusd), scaled
//    once a block (once a super-block for the K-quants, whose sub-block scales
//    are integers and go into vpmaddwd). The weight stream is the only memory
//    traffic that grows with the matrix, so the goal is the read bandwidth.
//    The 32-wide types go 8 weight rows at a time, unpacked once for all rows
//    of x ("column tiles" below; a single row of x has its own variants of
//    the same arithmetic), and so do the tiled K-quants (Q4_Kx8, Q6_Kx8); the
//    K-quants in the GGUF layout one weight row at a time, for up to
//    kRowGroup rows of x while its blocks are in registers.
//  * fp32 (large M, and `exact`): a tile of W rows is dequantized into float32
//    (the same float operations as gguf's dequantization) and multiplied with
//    x by the BLAS GEMM (at::mm), one tile per work item on each thread: the
//    dequantization is read once per tile and reused for all M rows.
// The int8 path differs from the float reference by the activation rounding
// (at most half a step, amax / 254, per activation); the fp32 path only by
// the order of the additions.
//
// Also aigc::dequantize: a matrix (or an embedding's rows) of GGUF blocks to
// float32, with the fp32 path's dequantization.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "cpu/parallel_items.h"
#include "cpu/simd.h"
#include "kernels/quant_formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifdef AIGC_SIMD_AVX2  // simd.h: AVX2, FMA and F16C
#define AIGC_QL_AVX2 1
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define AIGC_QL_VNNI 1  // vpdpbusd on ymm registers (AVX-512 VNNI + VL)
#elif defined(__AVXVNNI__)
#define AIGC_QL_AVXVNNI 1  // the VEX encoding of the same (Alder Lake, Zen 5)
#endif
#endif

namespace {

using namespace aigc::quant;

// Below this many rows of x the int8 path runs; from it on, the fp32 tiles
// (where dequantizing a tile once pays for itself; docs/performance.md).
constexpr int64_t kFp32MinRows = 32;
constexpr int kRowGroup = 4;              // rows of x per pass over a weight row
constexpr int kTileCols = 8;              // W rows (output columns) a column tile computes
constexpr int64_t kItemsPerThread = 8;    // work items a thread gets, for balance
// N * K * M below which one thread runs: waking the pool costs a few us, as
// much as a small matrix's whole product.
constexpr int64_t kSerialWeights = 1 << 18;
constexpr int64_t kTileRows = 256;        // W rows a thread dequantizes per GEMM (fp32 path)

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float half_to_float(uint16_t h) {
#ifdef __F16C__
  return _cvtsh_ss(h);
#else
  return c10::detail::fp16_ieee_to_fp32_value(h);
#endif
}
inline float load_half(const uint8_t* p) { return half_to_float(load_u16(p)); }

// ------------------------------------------------------- dequantization --
// Exactly gguf.quants' float32 operations (d * q + m as two roundings, d * sc
// before * q), so the fp32 path differs from the reference by summation order.

void dequantize_row(int qtype, const uint8_t* row, int64_t K, float* out) {
  const Format f = format_of(qtype);
  const int64_t nb = K / f.block;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * f.bytes;
    float* y = out + b * f.block;
    switch (qtype) {
      case kQ4_0: {
        const float d = load_half(blk);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * static_cast<float>((blk[2 + j] & 15) - 8);
          y[j + 16] = d * static_cast<float>((blk[2 + j] >> 4) - 8);
        }
        break;
      }
      case kQ4_1: {
        const float d = load_half(blk), m = load_half(blk + 2);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * static_cast<float>(blk[4 + j] & 15) + m;
          y[j + 16] = d * static_cast<float>(blk[4 + j] >> 4) + m;
        }
        break;
      }
      case kQ5_0: {
        const float d = load_half(blk);
        const uint32_t qh = load_u32(blk + 2);
        for (int j = 0; j < 16; ++j) {
          const int lo = (blk[6 + j] & 15) | ((qh >> j) & 1) << 4;
          const int hi = (blk[6 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
          y[j] = d * static_cast<float>(lo - 16);
          y[j + 16] = d * static_cast<float>(hi - 16);
        }
        break;
      }
      case kQ5_1: {
        const float d = load_half(blk), m = load_half(blk + 2);
        const uint32_t qh = load_u32(blk + 4);
        for (int j = 0; j < 16; ++j) {
          const int lo = (blk[8 + j] & 15) | ((qh >> j) & 1) << 4;
          const int hi = (blk[8 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
          y[j] = d * static_cast<float>(lo) + m;
          y[j + 16] = d * static_cast<float>(hi) + m;
        }
        break;
      }
      case kQ8_0: {
        const float d = load_half(blk);
        const auto* q = reinterpret_cast<const int8_t*>(blk + 2);
        for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j]);
        break;
      }
      case kQ4_K:
      case kQ5_K: {
        const bool q5 = qtype == kQ5_K;
        const float d = load_half(blk), dmin = load_half(blk + 2);
        const KScales s = unpack_k_scales(load_u32(blk + 4), load_u32(blk + 8), load_u32(blk + 12));
        const uint8_t sc[8] = {uint8_t(s.sc_lo), uint8_t(s.sc_lo >> 8), uint8_t(s.sc_lo >> 16),
                               uint8_t(s.sc_lo >> 24), uint8_t(s.sc_hi), uint8_t(s.sc_hi >> 8),
                               uint8_t(s.sc_hi >> 16), uint8_t(s.sc_hi >> 24)};
        const uint8_t mn[8] = {uint8_t(s.mn_lo), uint8_t(s.mn_lo >> 8), uint8_t(s.mn_lo >> 16),
                               uint8_t(s.mn_lo >> 24), uint8_t(s.mn_hi), uint8_t(s.mn_hi >> 8),
                               uint8_t(s.mn_hi >> 16), uint8_t(s.mn_hi >> 24)};
        const uint8_t* qh = blk + 16;
        const uint8_t* qs = blk + (q5 ? 48 : 16);
        for (int c = 0; c < 4; ++c) {
          for (int half = 0; half < 2; ++half) {
            const int s_idx = 2 * c + half;
            const float ds = d * static_cast<float>(sc[s_idx]);
            const float dm = dmin * static_cast<float>(mn[s_idx]);
            for (int l = 0; l < 32; ++l) {
              int q = half ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
              if (q5) q |= ((qh[l] >> s_idx) & 1) << 4;
              y[64 * c + 32 * half + l] = ds * static_cast<float>(q) - dm;
            }
          }
        }
        break;
      }
      case kQ6_K: {
        const uint8_t* ql = blk;
        const uint8_t* qh = blk + 128;
        const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
        const float d = load_half(blk + 208);
        for (int h = 0; h < 2; ++h) {
          for (int l = 0; l < 32; ++l) {
            const uint8_t a = ql[64 * h + l], b = ql[64 * h + l + 32], hb = qh[32 * h + l];
            const int q[4] = {(a & 15) | (hb & 3) << 4, (b & 15) | (hb >> 2 & 3) << 4,
                              (a >> 4) | (hb >> 4 & 3) << 4, (b >> 4) | (hb >> 6 & 3) << 4};
            for (int i = 0; i < 4; ++i) {
              const int e = 128 * h + 32 * i + l;
              y[e] = (d * static_cast<float>(sc[e / 16])) * static_cast<float>(q[i] - 32);
            }
          }
        }
        break;
      }
      default: TORCH_CHECK(false, "aigc.quant_linear: unreachable type ", qtype);
    }
  }
}

// ------------------------------------------------ activation quantization --
// Row m of x as int8 q (K bytes), a float scale d per `block` activations
// (d = amax / 127, q = round-half-even(x * (1 / d))), bs, the sum of each 16
// consecutive q (int16, for the K-quants), and s, d times the sum of each 32
// q (float, for the 32-wide types' offsets and mins).
// reference.quantize_activations rounds the same way.
// One quantized row of x as the dot products read it.
struct XRow {
  const int8_t* q;
  const float* d;
  const float* s;
  const int16_t* bs;
};

struct QuantRows {
  int64_t K, block;
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int16_t> bs;
  const int8_t* q_row(int64_t m) const { return q.data() + m * K; }
  const float* d_row(int64_t m) const { return d.data() + m * (K / block); }
  const float* s_row(int64_t m) const { return s.data() + m * (K / 32); }
  const int16_t* bs_row(int64_t m) const { return bs.data() + m * (K / 16); }
  XRow row(int64_t m) const { return {q_row(m), d_row(m), s_row(m), bs_row(m)}; }
};

void quantize_row(const float* x, int64_t K, int64_t block, int8_t* q, float* d, int16_t* bs) {
  for (int64_t b0 = 0; b0 < K; b0 += block) {
    float amax = 0.0f;
#ifdef AIGC_QL_AVX2
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    for (int64_t j = 0; j < block; j += 8)
      vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + b0 + j)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    amax = _mm_cvtss_f32(m4);
#else
    for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b0 + j]));
#endif
    const float dd = amax / 127.0f;
    const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
    d[b0 / block] = dd;
#ifdef AIGC_QL_AVX2
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t j = 0; j < block; j += 32) {
      const float* p = x + b0 + j;
      // cvtps rounds half to even (MXCSR's default), as torch.round does.
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), vid));
      const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 8), vid));
      const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 16), vid));
      const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 24), vid));
      // The packs interleave 128-bit lanes; the permute restores the order.
      const __m256i packed =
          _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b0 + j),
                          _mm256_permutevar8x32_epi32(packed, order));
    }
#else
    for (int64_t j = 0; j < block; ++j) {
      const float v = std::nearbyint(x[b0 + j] * id);
      q[b0 + j] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
    }
#endif
  }
  for (int64_t g = 0; g < K / 16; ++g) {
    int s = 0;
    for (int j = 0; j < 16; ++j) s += q[16 * g + j];
    bs[g] = static_cast<int16_t>(s);
  }
}

// x: [M, K] float rows with row stride ldx, for weights of type qtype.
void quantize_rows(const float* x, int64_t ldx, int64_t M, int64_t K, int qtype,
                   QuantRows& out) {
  const int64_t block = is_k_quant(qtype) ? 256 : 32;
  out.K = K;
  out.block = block;
  out.q.resize(M * K);
  out.d.resize(M * (K / block));
  out.bs.resize(M * (K / 16));
  out.s.resize(M * (K / 32));
  for (int64_t m = 0; m < M; ++m) {
    int8_t* q = out.q.data() + m * K;
    const float* d = out.d.data() + m * (K / block);
    const int16_t* bs = out.bs.data() + m * (K / 16);
    quantize_row(x + m * ldx, K, block, q, out.d.data() + m * (K / block),
                 out.bs.data() + m * (K / 16));
    float* s = out.s.data() + m * (K / 32);
    for (int64_t b = 0; b < K / 32; ++b)
      s[b] = d[b * 32 / block] * static_cast<float>(bs[2 * b] + bs[2 * b + 1]);
  }
}

// ------------------------------------------------------------ int8 dots --
// dot_row<QT, R>(w, xs, out): out[r] = sum_k W[k] * xhat_r[k] for one weight
// row w and R quantized activation rows (xhat = d * q).

// A K-quant super-block's share of a dot product, added to acc: its integer
// total sum_s sc[s] (q_s . xq_s) times d dx (Q6_K's q less 32), and for Q4_K
// and Q5_K less its mins' total sum_s mn[s] (sum of xq_s) times dmin dx. Every
// kernel of these types ends a super-block with these float operations (the
// AVX2 tiles on 8 lanes), so the GGUF and tiled layouts give the same bits.
inline float scale_k_block(int total, float d_dx, float acc) {
  return std::fma(static_cast<float>(total), d_dx, acc);
}
inline float scale_k_block(int total, int min_total, float d_dx, float dmin_dx, float acc) {
  return std::fma(-static_cast<float>(min_total), dmin_dx, scale_k_block(total, d_dx, acc));
}

// Where the 8 rows from row n (a multiple of 8) of a tiled weight keep their
// groups (block b of them at `at + b * stride`): a tile of an x16 type holds
// two such halves, their groups alternating (quant_formats.h).
struct EightRows {
  const uint8_t* at;
  int64_t stride;
};
inline EightRows eight_rows(int qtype, const uint8_t* w, int64_t row_bytes, int64_t n) {
  const int rows = tile_rows(qtype);
  const int64_t group = kTileRowsX8 * format_of(tiled_base(qtype)).bytes;
  const int64_t first = n / rows * rows;
  return {w + first * row_bytes + (n - first) / kTileRowsX8 * group, rows / kTileRowsX8 * group};
}

#ifdef AIGC_QL_AVX2

// acc + 8 int32 lanes, each the sum of 4 adjacent u8 * s8 products.
inline __m256i add_dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if defined(AIGC_QL_VNNI)
  return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(AIGC_QL_AVXVNNI)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  // No saturation: |u| <= 128 (Q8_0's |w|), |s| <= 127, 2 * 128 * 127 < 2^15.
  return _mm256_add_epi32(
      acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// 16 packed bytes -> 32 bytes: low nibbles (elements 0-15), then high ones.
inline __m256i nibbles_32(__m128i v) {
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(both, _mm256_set1_epi8(15));
}
inline __m256i nibbles_32(const uint8_t* p) {
  return nibbles_32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The 32 bits of a word as bytes (byte j for bit j): 0x10 where the bit is set.
inline __m256i bits_x16(uint32_t bits) {
  const __m256i rep = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                       3, 3, 3, 3, 3, 3, 3));
  const __m256i sel = _mm256_set1_epi64x(0x8040201008040201LL);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(rep, sel), sel),
                          _mm256_set1_epi8(0x10));
}

// The weight stream, requested kPrefetchBytes ahead of its use, every cache
// line of it: the hardware prefetchers alone leave a thread streaming a large
// matrix well short of the read bandwidth.
constexpr int kPrefetchBytes = 2048;
// Requests the kBytes a step reads (one request per cache line).
template <int kBytes>
inline void prefetch_ahead(const uint8_t* p) {
  for (int o = 0; o < kBytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes + o, _MM_HINT_T0);
}

inline __m256i load_256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The 32-wide types, w = d * q + c with q unsigned (4 or 5 bits; c = m for
// Q4_1 and Q5_1, -8 d and -16 d for Q4_0 and Q5_0) or signed (Q8_0, c = 0).
template <int QT>
struct Nibbles {
  static constexpr bool has_min = QT == kQ4_1 || QT == kQ5_1;
  static constexpr bool five_bit = QT == kQ5_0 || QT == kQ5_1;
  static constexpr int qs_offset = 2 + (has_min ? 2 : 0) + (five_bit ? 4 : 0);
  static constexpr float offset = QT == kQ4_0 ? 8.0f : QT == kQ5_0 ? 16.0f : 0.0f;
};

// ------------------------------------------------------ column tiles --
// The 32-wide types run 8 weight rows (8 output columns) at a time. Each
// block of a tile is unpacked once into bytes laid out so that int32 lane j of
// every product belongs to column j: step c of a block holds w_j[4c .. 4c+3]
// in lane j, and the activations' bytes x[4c .. 4c+3] are broadcast to all
// lanes. One vpmaddubsw then serves 8 columns, a block's scales multiply a
// vector of 8 column sums, no horizontal sum is needed, and the unpacking is
// paid once for all rows of x, so each extra row costs little more than its
// multiplies. Every row of x is computed the same way whatever M is, so a
// row's result does not depend on the rows beside it.

struct alignas(32) TileBlock {
  __m256i w[8];  // step c: lane j = column j's weights 4c .. 4c+3 (|q| for Q8_0)
  __m256 d;      // the columns' scales
  __m256 c;      // their offsets (unused for Q8_0)
};

// Q8_0's signs, kept apart: the sign trick moves them onto the activations.
struct alignas(32) TileSigns {
  __m256i q[8];
};

// In place: r[c] lane j <- r[j] lane c (8x8 32-bit elements).
inline void transpose_8x8(__m256i r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    const __m256 a = _mm256_castsi256_ps(r[2 * i]), b = _mm256_castsi256_ps(r[2 * i + 1]);
    t[2 * i] = _mm256_unpacklo_ps(a, b);
    t[2 * i + 1] = _mm256_unpackhi_ps(a, b);
  }
  for (int i = 0; i < 2; ++i) {
    s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_castps_si256(_mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
    r[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
  }
}

// One block (32 weights) of a row as 32 bytes in order, unsigned (signed for Q8_0).
template <int QT>
inline __m256i block_bytes(const uint8_t* blk) {
  if constexpr (QT == kQ8_0) {
    return load_256(blk + 2);
  } else {
    using T = Nibbles<QT>;
    __m256i q = nibbles_32(blk + T::qs_offset);
    if constexpr (T::five_bit)
      q = _mm256_or_si256(q, bits_x16(load_u32(blk + (T::has_min ? 4 : 2))));
    return q;
  }
}

// The float16 d (at byte 0) and m (at byte 2) of 8 blocks, as floats.
inline void eight_scales(const uint8_t* const* blk, __m256& d, __m256& m) {
  // [d0 m0 d1 m1 ...] from one 32-bit load a block, then deinterleaved.
  const auto word = [&](int j) { return static_cast<int>(load_u32(blk[j])); };
  const __m128i lo = _mm_setr_epi32(word(0), word(1), word(2), word(3));
  const __m128i hi = _mm_setr_epi32(word(4), word(5), word(6), word(7));
  const __m128i split = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m128i a = _mm_shuffle_epi8(lo, split), b = _mm_shuffle_epi8(hi, split);
  d = _mm256_cvtph_ps(_mm_unpacklo_epi64(a, b));
  m = _mm256_cvtph_ps(_mm_unpackhi_epi64(a, b));
}

// The 4-bit types' weights of 8 blocks, step by step (see TileBlock::w): each
// 32-bit word of a block's packed bytes holds 4 consecutive weights in its low
// nibbles and the 4 weights 16 further on in its high ones, so a 4x4 transpose
// of the packed words gives steps c and c + 4 at once.
template <int QT>
inline void unpack_4bit(const uint8_t* const* blk, __m256i* w) {
  constexpr int at = Nibbles<QT>::qs_offset;
  __m256i p[4];
  for (int i = 0; i < 4; ++i)
    p[i] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(blk[i + 4] + at),
                               reinterpret_cast<const __m128i*>(blk[i] + at));
  const __m256i t0 = _mm256_unpacklo_epi32(p[0], p[1]), t1 = _mm256_unpackhi_epi32(p[0], p[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(p[2], p[3]), t3 = _mm256_unpackhi_epi32(p[2], p[3]);
  const __m256i words[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                            _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int c = 0; c < 4; ++c) {
    w[c] = _mm256_and_si256(words[c], low4);
    w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(words[c], 4), low4);
  }
}

// Unpacks block b of the tile's 8 weight rows (blk[j] for column j) into t
// (and the signs into ts for Q8_0).
template <int QT>
inline void unpack_block(const uint8_t* const* blk, TileBlock& t, TileSigns& ts) {
  using T = Nibbles<QT>;
  __m256 m;
  eight_scales(blk, t.d, m);
  if constexpr (QT == kQ4_0 || QT == kQ4_1) {
    unpack_4bit<QT>(blk, t.w);
  } else {
    __m256i r[8];
    for (int j = 0; j < 8; ++j) r[j] = block_bytes<QT>(blk[j]);
    transpose_8x8(r);
    for (int c = 0; c < 8; ++c) {
      if constexpr (QT == kQ8_0) {
        ts.q[c] = r[c];
        t.w[c] = _mm256_sign_epi8(r[c], r[c]);
      } else {
        t.w[c] = r[c];
      }
    }
  }
  if constexpr (QT != kQ8_0)
    t.c = T::has_min ? m : _mm256_mul_ps(t.d, _mm256_set1_ps(-T::offset));
}

inline __m256i broadcast_4_bytes(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// The int32 sums of one block for the tile's 8 columns against R rows'
// activations xq[r] (32 bytes each): sum[r] lane j = sum_k q_j[k] xq_r[k]. The
// R rows go together so that each step's weights are loaded once for all.
template <int QT, int R>
inline void tile_block_dot(const TileBlock& t, const TileSigns* s, const int8_t* const* xq,
                           __m256i* sum) {
  if constexpr (QT == kQ8_0) {
    for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i w = t.w[c], sign = s->q[c];
      for (int r = 0; r < R; ++r) {
        const __m256i x = _mm256_sign_epi8(broadcast_4_bytes(xq[r] + 4 * c), sign);
        sum[r] = add_dot_u8s8(sum[r], w, x);
      }
    }
  } else {
#if defined(AIGC_QL_VNNI) || defined(AIGC_QL_AVXVNNI)
    for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i w = t.w[c];
      for (int r = 0; r < R; ++r)
        sum[r] = add_dot_u8s8(sum[r], w, broadcast_4_bytes(xq[r] + 4 * c));
    }
#else
    // Steps summed as int16 before widening: each step's lanes are at most
    // 2 * 15 * 127 for 4-bit weights (eight steps: 30480 < 2^15), 2 * 31 * 127
    // for 5-bit ones (four steps: 31496).
    constexpr int group = Nibbles<QT>::five_bit ? 4 : 8;
    for (int g = 0; g < 8 / group; ++g) {
      __m256i p[R];
      for (int c = 0; c < group; ++c) {
        const __m256i w = t.w[group * g + c];
        for (int r = 0; r < R; ++r) {
          const __m256i d =
              _mm256_maddubs_epi16(w, broadcast_4_bytes(xq[r] + 4 * (group * g + c)));
          p[r] = c == 0 ? d : _mm256_add_epi16(p[r], d);
          // Keeps each product summed as it is made: left free, the compiler
          // makes all of a block's products first and spills them.
          asm("" : "+x"(p[r]));
        }
      }
      for (int r = 0; r < R; ++r) {
        const __m256i wide = _mm256_madd_epi16(p[r], _mm256_set1_epi16(1));
        sum[r] = g == 0 ? wide : _mm256_add_epi32(sum[r], wide);
      }
    }
#endif
  }
}

// One block's contribution to R rows' accumulators (8 columns each):
// acc += (d dx) (q . xq) + c s, the same operations for every row whatever M is.
template <int QT, int R>
[[gnu::always_inline]] inline void tile_block_rows(const TileBlock& t, const TileSigns& ts,
                                                   const XRow* xs, int64_t b, __m256* acc) {
  const int8_t* xb[R];
  for (int r = 0; r < R; ++r) xb[r] = xs[r].q + 32 * b;
  __m256i sum[R];
  tile_block_dot<QT, R>(t, &ts, xb, sum);
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]),
                             _mm256_mul_ps(t.d, _mm256_set1_ps(xs[r].d[b])), acc[r]);
    if constexpr (QT != kQ8_0) acc[r] = _mm256_fmadd_ps(t.c, _mm256_set1_ps(xs[r].s[b]), acc[r]);
  }
}

// The tile reads its 8 rows side by side, interleaved streams that the
// hardware prefetchers follow badly, so the next tile (one sequential range)
// is requested while this one is computed: with each block of this tile, the
// same share of the next, 8 blocks' bytes, as straight-line code.
template <int QT>
struct NextTile {
  static constexpr int kStep = kTileCols * format_of(QT).bytes;
  static constexpr int kLines = (kStep + 63) / 64;
  uintptr_t at, last;  // addresses: the last tile's "next" is empty, at its end

  NextTile(const uint8_t* w, int64_t row_bytes, int64_t N, int64_t n)
      : at(reinterpret_cast<uintptr_t>(w + std::min(N, n + kTileCols) * row_bytes)),
        last(reinterpret_cast<uintptr_t>(w + std::min(N, n + 2 * kTileCols) * row_bytes) - 1) {}

  // Lines at, at + 64, ...: a line of the share missed at its end is the
  // first of the next share.
  inline void request() {
    for (int i = 0; i < kLines; ++i)
      _mm_prefetch(reinterpret_cast<const char*>(std::min(at + 64 * i, last)), _MM_HINT_T0);
    at += kStep;
  }
};

// Columns [n0, n1) of the output (weight rows), n0 a multiple of 8. Block by
// block: each block of a tile is unpacked once into t (in L1) and then
// serves every row of x, rows four (then two) at a time so that a step's
// weights load once for them all; the rows' accumulators wait in acc between
// blocks. kRows > 0 fixes M at compile time: the row loops unroll, and for a
// single row the tile stays in registers.
template <int QT, int kRows = 0>
void int8_tiles(const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K, const QuantRows& xq,
                int64_t rows_of_x, int64_t n0, int64_t n1, float* out, int64_t ldo) {
  const int64_t M = kRows > 0 ? kRows : rows_of_x;
  constexpr int bytes = format_of(QT).bytes;
  const int64_t nb = K / 32;
  XRow xs[kFp32MinRows];
  for (int64_t m = 0; m < M; ++m) xs[m] = xq.row(m);
  TileBlock t;
  TileSigns ts;
  __m256 acc[kFp32MinRows];
  for (int64_t n = n0; n < n1; n += kTileCols) {
    const int cols = static_cast<int>(std::min<int64_t>(kTileCols, n1 - n));
    // A partial tile repeats its last row in the missing lanes (lanes are
    // independent; those results are not stored).
    const uint8_t* rows[kTileCols];
    for (int j = 0; j < kTileCols; ++j) rows[j] = w + (n + std::min(j, cols - 1)) * row_bytes;
    NextTile<QT> next(w, row_bytes, N, n);
    for (int64_t m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      next.request();
      const uint8_t* blk[kTileCols];
      for (int j = 0; j < kTileCols; ++j) blk[j] = rows[j] + b * bytes;
      unpack_block<QT>(blk, t, ts);
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) tile_block_rows<QT, 4>(t, ts, xs + m, b, acc + m);
      for (; m + 2 <= M; m += 2) tile_block_rows<QT, 2>(t, ts, xs + m, b, acc + m);
      if (m < M) tile_block_rows<QT, 1>(t, ts, xs + m, b, acc + m);
    }
    for (int64_t m = 0; m < M; ++m) {
      float* o = out + m * ldo + n;
      if (cols == kTileCols) {
        _mm256_storeu_ps(o, acc[m]);
      } else {
        alignas(32) float tmp[kTileCols];
        _mm256_store_ps(tmp, acc[m]);
        std::copy(tmp, tmp + cols, o);
      }
    }
  }
}

// lane j <- the sum of v[j]'s 8 lanes.
inline __m256i sum_lanes_8(const __m256i* v) {
  const auto pairs = [](__m256i a, __m256i b) {
    return _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
  };
  const auto quads = [](__m256i a, __m256i b) {
    return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
  };
  const __m256i lo = quads(pairs(v[0], v[1]), pairs(v[2], v[3]));
  const __m256i hi = quads(pairs(v[4], v[5]), pairs(v[6], v[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                          _mm256_permute2x128_si256(lo, hi, 0x31));
}

// int8_tiles for a single row of x and the types whose tiles need the 8x8
// transpose (Q5_0, Q5_1, Q8_0): there the transposed copy would serve one
// row only, so each of the 8 weight rows is multiplied as stored and the 8
// sums are gathered into the column lanes after. The integer sums are the
// tile's (exact), and the float operations are tile_block_rows<QT, 1>'s, so
// the results are bit for bit those of the same row in a larger batch.
template <int QT>
void int8_tile_columns_one_row(const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K,
                               const QuantRows& xq, int64_t n0, int64_t n1, float* out) {
  using T = Nibbles<QT>;
  constexpr int bytes = format_of(QT).bytes;
  const int64_t nb = K / 32;
  const int8_t* xq_row = xq.q_row(0);
  const float* x_scale = xq.d_row(0);
  const float* x_sum = xq.s_row(0);
  for (int64_t n = n0; n < n1; n += kTileCols) {
    const int cols = static_cast<int>(std::min<int64_t>(kTileCols, n1 - n));
    const uint8_t* rows[kTileCols];
    for (int j = 0; j < kTileCols; ++j) rows[j] = w + (n + std::min(j, cols - 1)) * row_bytes;
    NextTile<QT> next(w, row_bytes, N, n);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      next.request();
      const uint8_t* blk[kTileCols];
      for (int j = 0; j < kTileCols; ++j) blk[j] = rows[j] + b * bytes;
      __m256 d, m;
      eight_scales(blk, d, m);
      const __m256i x = load_256(xq_row + 32 * b);
      __m256i dots[kTileCols];
      for (int j = 0; j < kTileCols; ++j) {
        __m256i q = block_bytes<QT>(blk[j]);
        __m256i xj = x;
        if constexpr (QT == kQ8_0) {  // the sign trick, as in tile_block_dot
          xj = _mm256_sign_epi8(x, q);
          q = _mm256_sign_epi8(q, q);
        }
        dots[j] = add_dot_u8s8(_mm256_setzero_si256(), q, xj);
      }
      const __m256i sum = sum_lanes_8(dots);
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(x_scale[b])),
                            acc);
      if constexpr (QT != kQ8_0) {
        const __m256 c = T::has_min ? m : _mm256_mul_ps(d, _mm256_set1_ps(-T::offset));
        acc = _mm256_fmadd_ps(c, _mm256_set1_ps(x_sum[b]), acc);
      }
    }
    if (cols == kTileCols) {
      _mm256_storeu_ps(out + n, acc);
    } else {
      alignas(32) float tmp[kTileCols];
      _mm256_store_ps(tmp, acc);
      std::copy(tmp, tmp + cols, out + n);
    }
  }
}

// Calls f.template operator()<kRows>() with kRows = M for M = 1..8 (the tiles'
// row loops then unroll), 0 (M at run time) for more rows.
template <typename F>
void with_rows_of_x(int64_t M, F&& f) {
  switch (M) {
    case 1: f.template operator()<1>(); break;
    case 2: f.template operator()<2>(); break;
    case 3: f.template operator()<3>(); break;
    case 4: f.template operator()<4>(); break;
    case 5: f.template operator()<5>(); break;
    case 6: f.template operator()<6>(); break;
    case 7: f.template operator()<7>(); break;
    case 8: f.template operator()<8>(); break;
    default: f.template operator()<0>(); break;
  }
}

// Columns [n0, n1) for any M: the fastest of the above for the type and M.
template <int QT>
void int8_columns(const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K, const QuantRows& xq,
                  int64_t M, int64_t n0, int64_t n1, float* out) {
  if constexpr (QT != kQ4_0 && QT != kQ4_1) {
    if (M == 1) return int8_tile_columns_one_row<QT>(w, row_bytes, N, K, xq, n0, n1, out);
  }
  with_rows_of_x(M, [&]<int kRows>() {
    int8_tiles<QT, kRows>(w, row_bytes, N, K, xq, M, n0, n1, out, N);
  });
}

// ------------------------------------------------- tiled (x8) layouts --
// Q4_0x8 / Q4_1x8 / Q8_0x8 (quant_formats.h): a group holds the 8 rows' block
// b as a tile wants it, so loading it is one to three loads for the scales and
// 4 (8 for Q8_0) for the weights, against the GGUF tile's gathers and
// transposes; the tiles are one sequential stream. The arithmetic is
// tile_block_rows', so every row's result is bit for bit the GGUF layout's.
template <int QT>
inline void load_x8_group(const uint8_t* g, TileBlock& t, TileSigns& ts) {
  using T = Nibbles<QT>;
  const uint8_t* words = g + kTileRowsX8 * block_scale_bytes(QT);
  t.d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
  if constexpr (QT == kQ8_0) {
    for (int c = 0; c < 8; ++c) {
      const __m256i q = load_256(words + 32 * c);
      ts.q[c] = q;
      t.w[c] = _mm256_sign_epi8(q, q);
    }
    return;
  }
  if constexpr (T::has_min)
    t.c = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
  else
    t.c = _mm256_mul_ps(t.d, _mm256_set1_ps(-T::offset));
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int c = 0; c < 4; ++c) {
    const __m256i w = load_256(words + 32 * c);
    t.w[c] = _mm256_and_si256(w, low4);
    t.w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(w, 4), low4);
  }
}

// lane j <- sum_i pairs[i] . (bs[2i], bs[2i + 1]) over i = 0..7: each column's
// int16 pairs (scales or mins) against a super-block's 16 activation sums.
inline __m256i dot_pairs_with_sums(const __m256i* pairs, const int16_t* bs) {
  __m256i acc = _mm256_setzero_si256();
  for (int i = 0; i < 8; ++i) {
    int32_t both;
    std::memcpy(&both, bs + 2 * i, 4);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs[i], _mm256_set1_epi32(both)));
  }
  return acc;
}

// Q4_Kx8: a group is super-block b of the tile's 8 columns. Their 6-bit
// scales and mins unpack together, unpack_k_scales on 32-bit lanes, into
// int16 pairs that vpmaddwd multiplies with: column j's scale in lane j.
struct alignas(32) KTileScales {
  __m256 d, dmin;
  __m256i sc[8];  // sub-block s: lane j = (sc_j[s], sc_j[s]) as int16
  __m256i mn[8];  // the same for the mins
};

inline void load_q4k_x8_scales(const uint8_t* g, KTileScales& s) {
  s.d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
  s.dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
  const __m256i b0 = load_256(g + 32), b1 = load_256(g + 64), b2 = load_256(g + 96);
  const __m256i six = _mm256_set1_epi8(0x3f), low4 = _mm256_set1_epi8(0x0f);
  const __m256i top2 = _mm256_set1_epi8(0x30);
  const __m256i sc_lo = _mm256_and_si256(b0, six), mn_lo = _mm256_and_si256(b1, six);
  const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(b2, low4),
                                        _mm256_and_si256(_mm256_srli_epi32(b0, 2), top2));
  const __m256i mn_hi =
      _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(b2, 4), low4),
                      _mm256_and_si256(_mm256_srli_epi32(b1, 2), top2));
  // Byte i of each 32-bit lane to both int16 halves of the lane (vpshufb
  // indexes within a 128-bit half: lane k's byte i is byte 4k + i there).
  const __m256i lane_base = _mm256_setr_epi32(0, 0x00040004, 0x00080008, 0x000c000c, 0,
                                              0x00040004, 0x00080008, 0x000c000c);
  for (int i = 0; i < 4; ++i) {
    const __m256i pick =
        _mm256_add_epi32(lane_base, _mm256_set1_epi32(int(0x80008000u) | i << 16 | i));
    s.sc[i] = _mm256_shuffle_epi8(sc_lo, pick);
    s.sc[i + 4] = _mm256_shuffle_epi8(sc_hi, pick);
    s.mn[i] = _mm256_shuffle_epi8(mn_lo, pick);
    s.mn[i + 4] = _mm256_shuffle_epi8(mn_hi, pick);
  }
}

// R rows' products with the group g (scales s) of super-block b: acc[r] lane
// j += d_j dx (sum_s sc_j[s] q_j,s . xq_s) - dmin_j dx (sum_s mn_j[s] sum xq_s).
// Word w of chunk c holds a column's weights 64c + 4w .. +3 in its low nibbles
// (sub-block 2c) and 32 further on in its high ones (2c + 1). A sub-block's
// eight products are summed as int16 (at most 8 * 2 * 15 * 127 = 30480), then
// scaled in vpmaddwd: each column's totals are exact integers, and the float
// operations are scale_k_block's, as in dot_rows_q45k.
template <int R>
[[gnu::always_inline]] inline void q4k_x8_rows(const uint8_t* g, const KTileScales& s,
                                               const XRow* xs, int64_t b, __m256* acc) {
  const uint8_t* qs = g + kTileRowsX8 * block_scale_bytes(kQ4_K) + 3 * 32;
  const __m256i low4 = _mm256_set1_epi8(15);
  __m256i total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    __m256i lo_sum[R], hi_sum[R];
    for (int w = 0; w < 8; ++w) {
      const __m256i v = load_256(qs + 32 * (8 * c + w));
      const __m256i lo = _mm256_and_si256(v, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      for (int r = 0; r < R; ++r) {
        const int8_t* x = xs[r].q + 256 * b + 64 * c + 4 * w;
        const __m256i p_lo = _mm256_maddubs_epi16(lo, broadcast_4_bytes(x));
        const __m256i p_hi = _mm256_maddubs_epi16(hi, broadcast_4_bytes(x + 32));
        lo_sum[r] = w == 0 ? p_lo : _mm256_add_epi16(lo_sum[r], p_lo);
        hi_sum[r] = w == 0 ? p_hi : _mm256_add_epi16(hi_sum[r], p_hi);
        asm("" : "+x"(lo_sum[r]), "+x"(hi_sum[r]));  // as in tile_block_dot
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256i t = _mm256_add_epi32(_mm256_madd_epi16(lo_sum[r], s.sc[2 * c]),
                                         _mm256_madd_epi16(hi_sum[r], s.sc[2 * c + 1]));
      total[r] = _mm256_add_epi32(total[r], t);
    }
  }
  for (int r = 0; r < R; ++r) {
    // (bs[2i], bs[2i + 1]) sum the 32 activations of sub-block i.
    const __m256i mins = dot_pairs_with_sums(s.mn, xs[r].bs + 16 * b);
    const __m256 dx = _mm256_set1_ps(xs[r].d[b]);
    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total[r]), _mm256_mul_ps(s.d, dx), acc[r]);
    acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_mul_ps(s.dmin, dx), acc[r]);
  }
}

// Q6_Kx8 (quant_formats.h): a group is super-block b of the tile's 8 columns.
// Each word of a column holds two weights of each of two sub-blocks, 2p and
// 2p + 1 (the activations are rearranged to match, pair_sub_blocks), so the
// int16 halves of a vpmaddubsw lane belong to those two sub-blocks and one
// vector of scale pairs multiplies them in vpmaddwd; the same pairs serve the
// offset term.
struct alignas(32) Q6TileScales {
  __m256 d;
  __m256i pair[8];  // lane j = (sc_j[2p], sc_j[2p + 1]) as int16
};

inline void load_q6k_x8_scales(const uint8_t* g, Q6TileScales& s) {
  s.d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
  for (int p = 0; p < 8; ++p)
    s.pair[p] = _mm256_cvtepi8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + kQ6TileScalesAt + 16 * p)));
}

// R rows' products with the group g (scales s) of super-block b: acc[r] lane
// j += d_j dx (sum_g sc_j[g] (q_j,g - 32) . xq_g). Step t of half h reads
// three words, the 6-bit weights of chunks 4h .. 4h + 3 (word t of each): the
// first three in their low bits, the fourth's bits in pairs on top of them.
// Two steps' products are summed as int16 (at most 2 * 2 * 63 * 127 = 32004),
// then scaled in vpmaddwd: the integer totals are exact, and the float
// operations are scale_k_block's.
template <int R>
[[gnu::always_inline]] inline void q6k_x8_rows(const uint8_t* g, const Q6TileScales& s,
                                               const XRow* xs, int64_t b, __m256* acc) {
  const uint8_t* words = g + kQ6TileWordsAt;
  const __m256i low6 = _mm256_set1_epi8(0x3f);
  __m256i total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm256_setzero_si256();
  // Unrolled in full, or the scales' indices are computed at run time.
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
    for (int t2 = 0; t2 < 8; t2 += 2) {
      __m256i pair_sum[R][4];
#pragma GCC unroll 2
      for (int t = t2; t < t2 + 2; ++t) {
        const uint8_t* v = words + 3 * 32 * (8 * h + t);
        const __m256i v0 = load_256(v), v1 = load_256(v + 32), v2 = load_256(v + 64);
        // The top bits (andnot: v & 0xc0) shifted down within their bytes.
        const __m256i q3 = _mm256_or_si256(
            _mm256_or_si256(_mm256_srli_epi16(_mm256_andnot_si256(low6, v0), 6),
                            _mm256_srli_epi16(_mm256_andnot_si256(low6, v1), 4)),
            _mm256_srli_epi16(_mm256_andnot_si256(low6, v2), 2));
        const __m256i q[4] = {_mm256_and_si256(v0, low6), _mm256_and_si256(v1, low6),
                              _mm256_and_si256(v2, low6), q3};
        for (int r = 0; r < R; ++r) {
          const int8_t* x = xs[r].q + 256 * b + 128 * h + 4 * t;
          for (int i = 0; i < 4; ++i) {  // chunk 4h + i
            const __m256i p = _mm256_maddubs_epi16(q[i], broadcast_4_bytes(x + 32 * i));
            pair_sum[r][i] = t == t2 ? p : _mm256_add_epi16(pair_sum[r][i], p);
          }
        }
      }
      for (int r = 0; r < R; ++r) {
        for (int i = 0; i < 4; ++i)
          total[r] = _mm256_add_epi32(total[r],
                                      _mm256_madd_epi16(pair_sum[r][i], s.pair[4 * h + i]));
        asm("" : "+x"(total[r]));  // summed now, not all at the end (spills)
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    // q - 32: less 32 sum_g sc[g] (sum of the 16 activations of g).
    const __m256i offset = dot_pairs_with_sums(s.pair, xs[r].bs + 16 * b);
    const __m256i t = _mm256_sub_epi32(total[r], _mm256_slli_epi32(offset, 5));
    const __m256 dx = _mm256_set1_ps(xs[r].d[b]);
    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(s.d, dx), acc[r]);
  }
}

// The activations as q6k_x8_rows reads them: in each 32 (sub-blocks 2p and
// 2p + 1), word t = x[2t], x[2t + 1], x[16 + 2t], x[17 + 2t]. The sums bs keep
// the natural order.
inline void pair_sub_blocks(int8_t* q, int64_t K) {
  // 64-bit quarters 0 2 1 3, then bytes 0 1 8 9, 2 3 10 11, ... in each half.
  const __m256i pick = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
                                        0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
  for (int64_t k = 0; k < K; k += 32) {
    const __m256i v = _mm256_permute4x64_epi64(load_256(q + k), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), _mm256_shuffle_epi8(v, pick));
  }
}

// ------------------------------------------------ Q4_0x16 and Q4_1x16 --
// From two rows of x on, the multiplies, not the reads, bound a 4-bit tiled
// weight's product, and with one 8-row tile a quarter of a row's vector
// operations are the broadcasts of its activations. An x16 tile's two halves
// computed together share each broadcast, and their groups alternate, so the
// pair is one sequential stream (two tiles read side by side, two streams,
// lost the gain where the weights come from memory). The integer sums are
// exact and each row's float operations are tile_block_rows', so results are
// bit for bit the x8 layout's.

// Block b of both halves t[0], t[1] against rows xs[0..R): half k's row r
// accumulates in acc[k * kFp32MinRows + r].
template <int R>
[[gnu::always_inline]] inline void x16_block_rows(const TileBlock* t, const XRow* xs, int64_t b,
                                                  __m256* acc) {
  __m256i sum[2][R];
#if defined(AIGC_QL_VNNI) || defined(AIGC_QL_AVXVNNI)
  for (int k = 0; k < 2; ++k)
    for (int r = 0; r < R; ++r) sum[k][r] = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c)
    for (int r = 0; r < R; ++r) {
      const __m256i x = broadcast_4_bytes(xs[r].q + 32 * b + 4 * c);
      for (int k = 0; k < 2; ++k) sum[k][r] = add_dot_u8s8(sum[k][r], t[k].w[c], x);
    }
#else
  __m256i p[2][R];
  for (int c = 0; c < 8; ++c)
    for (int r = 0; r < R; ++r) {
      const __m256i x = broadcast_4_bytes(xs[r].q + 32 * b + 4 * c);
      for (int k = 0; k < 2; ++k) {
        const __m256i d = _mm256_maddubs_epi16(t[k].w[c], x);
        p[k][r] = c == 0 ? d : _mm256_add_epi16(p[k][r], d);  // int16: see tile_block_dot
        asm("" : "+x"(p[k][r]));
      }
    }
  for (int k = 0; k < 2; ++k)
    for (int r = 0; r < R; ++r) sum[k][r] = _mm256_madd_epi16(p[k][r], _mm256_set1_epi16(1));
#endif
  for (int r = 0; r < R; ++r) {
    const __m256 dx = _mm256_set1_ps(xs[r].d[b]), sx = _mm256_set1_ps(xs[r].s[b]);
    for (int k = 0; k < 2; ++k) {
      __m256& a = acc[k * kFp32MinRows + r];
      a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[k][r]), _mm256_mul_ps(t[k].d, dx), a);
      a = _mm256_fmadd_ps(t[k].c, sx, a);
    }
  }
}

#if defined(AIGC_QL_VNNI) && defined(__AVX512BW__)
#define AIGC_QL_X16_ZMM 1
// With AVX-512 VNNI a tile's 16 columns fill one zmm register: one vpdpbusd a
// step and row for both halves, where the ymm path needs two (Sapphire
// Rapids-class cores issue the 512-bit form as often as the 256-bit one). The
// lanes' integer sums and float operations are those of x16_block_rows, so
// results are bit for bit the same.
struct alignas(64) TileBlock16 {
  __m512i w[8];  // step c: lane j = column j's weights 4c .. 4c+3
  __m512 d, c;   // the columns' scales and offsets
};

// Block b of a 16-row tile: `g` is half 0's group, half 1's follows it.
template <int QT>
inline void load_x16_group(const uint8_t* g, int group, TileBlock16& t) {
  using T = Nibbles<QT>;
  const auto both = [&](int offset) {  // half 0's 16 bytes at offset, then half 1's
    return _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(g + group + offset),
                               reinterpret_cast<const __m128i*>(g + offset));
  };
  // maskz forms: the plain ones trip GCC 12's uninitialized warnings (simd.h).
  t.d = _mm512_maskz_cvtph_ps(0xFFFF, both(0));
  if constexpr (T::has_min)
    t.c = _mm512_maskz_cvtph_ps(0xFFFF, both(16));
  else
    t.c = _mm512_mul_ps(t.d, _mm512_set1_ps(-T::offset));
  const uint8_t* words = g + kTileRowsX8 * block_scale_bytes(QT);
  const __m512i low4 = _mm512_set1_epi8(15);
  for (int c = 0; c < 4; ++c) {
    const __m512i w = _mm512_maskz_inserti64x4(
        0xFF, _mm512_castsi256_si512(load_256(words + 32 * c)), load_256(words + group + 32 * c), 1);
    t.w[c] = _mm512_and_si512(w, low4);
    t.w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(w, 4), low4);
  }
}

// Block b of the tile against rows xs[0..R), row r accumulating in acc[r].
template <int R>
[[gnu::always_inline]] inline void x16_block_rows_zmm(const TileBlock16& t, const XRow* xs,
                                                      int64_t b, __m512* acc) {
  // Two chains a row (even and odd steps): vpdpbusd's latency is several
  // times its issue interval, and one chain a row leaves the pipes idle.
  __m512i sum[2][R];
  for (int r = 0; r < R; ++r) sum[0][r] = sum[1][r] = _mm512_setzero_si512();
  for (int c = 0; c < 8; ++c)
    for (int r = 0; r < R; ++r) {
      // The activations' 4 bytes broadcast by the multiply itself ({1to16}):
      // GCC emits a vpbroadcastd apiece, a quarter of the loop's instructions.
      asm("vpdpbusd %[x]%{1to16%}, %[w], %[sum]"
          : [sum] "+v"(sum[c % 2][r])
          : [w] "v"(t.w[c]), [x] "m"(*reinterpret_cast<const int32_t*>(xs[r].q + 32 * b + 4 * c)));
    }
  for (int r = 0; r < R; ++r) {
    const __m512 dx = _mm512_set1_ps(xs[r].d[b]), sx = _mm512_set1_ps(xs[r].s[b]);
    const __m512 sum_f =  // maskz: see load_x16_group
        _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_add_epi32(sum[0][r], sum[1][r]));
    acc[r] = _mm512_fmadd_ps(sum_f, _mm512_mul_ps(t.d, dx), acc[r]);
    acc[r] = _mm512_fmadd_ps(t.c, sx, acc[r]);
  }
}
#endif

// Columns [n0, n1) (multiples of 16) of a Q4_0x16 / Q4_1x16 weight. A single
// row of x runs it too: walking each half's groups on its own, two strided
// passes over the stream, made the one-row decode step 15% slower. Not inlined
// into int8_tiles_x8: there, GCC's register allocation for the whole function
// made this loop 15-20% slower.
template <int QT, int kRows>
[[gnu::noinline]] void int8_tiles_x16(int tiled, const uint8_t* w, int64_t K, const XRow* xs,
                                      int64_t rows_of_x, int64_t n0, int64_t n1, float* out,
                                      int64_t ldo) {
  static_assert(QT == kQ4_0 || QT == kQ4_1);
  const int64_t M = kRows > 0 ? kRows : rows_of_x;
  constexpr int group = kTileCols * format_of(QT).bytes;  // one half's block b
  const int64_t nb = K / 32;
#ifdef AIGC_QL_X16_ZMM
  TileBlock16 t;
  __m512 acc[kFp32MinRows];
  for (int64_t n = n0; n < n1; n += 2 * kTileCols) {
    const EightRows first_half = eight_rows(tiled, w, nb * format_of(QT).bytes, n);
    for (int64_t m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = first_half.at + b * first_half.stride;
      prefetch_ahead<2 * group>(g);
      load_x16_group<QT>(g, group, t);
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) x16_block_rows_zmm<4>(t, xs + m, b, acc + m);
      if (M - m >= 2) x16_block_rows_zmm<2>(t, xs + m, b, acc + m), m += 2;
      if (m < M) x16_block_rows_zmm<1>(t, xs + m, b, acc + m);
    }
    for (int64_t m = 0; m < M; ++m) _mm512_storeu_ps(out + m * ldo + n, acc[m]);
  }
#else
  TileBlock t[2];
  TileSigns unused;
  __m256 acc[2 * kFp32MinRows];  // half k's row r at k * kFp32MinRows + r
  for (int64_t n = n0; n < n1; n += 2 * kTileCols) {
    const EightRows first_half = eight_rows(tiled, w, nb * format_of(QT).bytes, n);
    for (int64_t m = 0; m < M; ++m) acc[m] = acc[kFp32MinRows + m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = first_half.at + b * first_half.stride;  // the second half's follows
      prefetch_ahead<2 * group>(g);
      load_x8_group<QT>(g, t[0], unused);
      load_x8_group<QT>(g + group, t[1], unused);
      int64_t m = 0;
      for (; m + 2 <= M; m += 2) x16_block_rows<2>(t, xs + m, b, acc + m);
      if (m < M) x16_block_rows<1>(t, xs + m, b, acc + m);
    }
    for (int64_t m = 0; m < M; ++m)
      for (int k = 0; k < 2; ++k)
        _mm256_storeu_ps(out + m * ldo + n + k * kTileCols, acc[k * kFp32MinRows + m]);
  }
#endif
}

// Columns [n0, n1) (multiples of the tile's rows) of a weight of tiled type
// `tiled`, for the GGUF type QT it rearranges; as int8_tiles otherwise (kRows >
// 0 fixes M at compile time).
template <int QT, int kRows = 0>
void int8_tiles_x8(int tiled, const uint8_t* w, int64_t K, const QuantRows& xq,
                   int64_t rows_of_x, int64_t n0, int64_t n1, float* out, int64_t ldo) {
  const int64_t M = kRows > 0 ? kRows : rows_of_x;
  constexpr Format f = format_of(QT);
  constexpr int group = kTileCols * f.bytes;
  const int64_t nb = K / f.block;
  XRow xs[kFp32MinRows];
  for (int64_t m = 0; m < M; ++m) xs[m] = xq.row(m);
  if constexpr (QT == kQ4_0 || QT == kQ4_1)
    if (tile_rows(tiled) == 16)
      return int8_tiles_x16<QT, kRows>(tiled, w, K, xs, M, n0, n1, out, ldo);
  TileBlock t;
  TileSigns ts;
  KTileScales ks;
  Q6TileScales q6s;
  __m256 acc[kFp32MinRows];
  for (int64_t n = n0; n < n1; n += kTileCols) {
    const EightRows rows = eight_rows(tiled, w, nb * f.bytes, n);
    for (int64_t m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = rows.at + b * rows.stride;
      prefetch_ahead<group>(g);
      if constexpr (QT == kQ4_K)
        load_q4k_x8_scales(g, ks);
      else if constexpr (QT == kQ6_K)
        load_q6k_x8_scales(g, q6s);
      else
        load_x8_group<QT>(g, t, ts);
      const auto rows = [&]<int R>(int64_t m) {
        if constexpr (QT == kQ4_K)
          q4k_x8_rows<R>(g, ks, xs + m, b, acc + m);
        else if constexpr (QT == kQ6_K)
          q6k_x8_rows<R>(g, q6s, xs + m, b, acc + m);
        else
          tile_block_rows<QT, R>(t, ts, xs + m, b, acc + m);
      };
      int64_t m = 0;
      if constexpr (QT != kQ6_K)  // Q6_K's four sums a row leave no registers for four rows
        for (; m + 4 <= M; m += 4) rows.template operator()<4>(m);
      for (; m + 2 <= M; m += 2) rows.template operator()<2>(m);
      if (m < M) rows.template operator()<1>(m);
    }
    for (int64_t m = 0; m < M; ++m) _mm256_storeu_ps(out + m * ldo + n, acc[m]);
  }
}


// vpshufb masks broadcasting int16 lane j of each 128-bit half to all of it.
inline __m256i broadcast_mask(int j) {
  return _mm256_set1_epi16(static_cast<int16_t>((2 * j) | (2 * j + 1) << 8));
}

// (sum of a's int32 lanes, sum of b's).
inline void sum_lanes_2(__m256i a, __m256i b, int& sum_a, int& sum_b) {
  const __m256i h = _mm256_hadd_epi32(a, b);  // each half: a01 a23 b01 b23
  const __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  const __m128i s = _mm_hadd_epi32(q, q);
  sum_a = _mm_cvtsi128_si32(s);
  sum_b = _mm_extract_epi32(s, 1);
}

// Q4_K / Q5_K against Q8_K-style activations (one scale per 256): per
// super-block, sum_s sc[s] (q_s . xq_s) in int32 (the scales ride in
// vpmaddwd), minus the mins against the activation sums. Both are summed to
// one exact integer a super-block, and scale_k_block's float operations
// follow, as in the Q4_Kx8 tiles: the two layouts give the same bits.
template <int QT, int RN, int R>
void dot_rows_q45k(const uint8_t* const* ws, int64_t K, const XRow* xs, float* out) {
  constexpr bool q5 = QT == kQ5_K;
  constexpr Format f = format_of(QT);
  const int64_t nb = K / 256;
  const __m256i low4 = _mm256_set1_epi8(15);
  float acc[RN * R] = {};
  for (int64_t b = 0; b < nb; ++b) for (int n = 0; n < RN; ++n) {
    const uint8_t* blk = ws[n] + b * f.bytes;
    prefetch_ahead<f.bytes>(blk);
    const float d = load_half(blk), dmin = load_half(blk + 2);
    const KScales s = unpack_k_scales(load_u32(blk + 4), load_u32(blk + 8), load_u32(blk + 12));
    // sc[0..7] as int16 in both 128-bit halves; mins as int16 pairs (m0 m0 m1 m1 ...).
    const __m128i sc8 =
        _mm_set_epi32(0, 0, static_cast<int>(s.sc_hi), static_cast<int>(s.sc_lo));
    const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
    const __m128i mn8 = _mm_set_epi32(0, 0, static_cast<int>(s.mn_hi), static_cast<int>(s.mn_lo));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
    const uint8_t* qs = blk + (q5 ? 48 : 16);
    __m256i hb;
    if constexpr (q5) hb = load_256(blk + 16);
    __m256i sumi[R];
    for (int r = 0; r < R; ++r) sumi[r] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load_256(qs + 32 * c);
      __m256i lo = _mm256_and_si256(v, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      if constexpr (q5) {
        // Bit 2c of qh[l] is the fifth bit of the low nibbles, 2c + 1 of the high ones.
        const __m256i h0 = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c));
        const __m256i bit = _mm256_set1_epi8(1);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h0, bit), 4));
        const __m256i h1 = _mm256_srli_epi16(h0, 1);
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(h1, bit), 4));
      }
      const __m256i s_lo = _mm256_shuffle_epi8(sc16, broadcast_mask(2 * c));
      const __m256i s_hi = _mm256_shuffle_epi8(sc16, broadcast_mask(2 * c + 1));
      for (int r = 0; r < R; ++r) {
        const int8_t* xq = xs[r].q + 256 * b + 64 * c;
        const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load_256(xq)), s_lo);
        const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load_256(xq + 32)), s_hi);
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_lo, p_hi));
      }
    }
    for (int r = 0; r < R; ++r) {
      const float dx = xs[r].d[b];
      const __m256i mins = _mm256_madd_epi16(load_256(xs[r].bs + 16 * b), mn16);
      int total, min_total;
      sum_lanes_2(sumi[r], mins, total, min_total);
      acc[n * R + r] = scale_k_block(total, min_total, d * dx, dmin * dx, acc[n * R + r]);
    }
  }
  for (int i = 0; i < RN * R; ++i) out[i] = acc[i];
}

template <int RN, int R>
void dot_rows_q6k(const uint8_t* const* ws, int64_t K, const XRow* xs, float* out) {
  const int64_t nb = K / 256;
  const __m256i low4 = _mm256_set1_epi8(15);
  // For chunk i of a half: scale 2i in the low 128-bit half (elements 0-15),
  // 2i + 1 in the high one (16-31).
  const __m256i pick[4] = {
      _mm256_set_m128i(_mm_set1_epi16(0x0302), _mm_set1_epi16(0x0100)),
      _mm256_set_m128i(_mm_set1_epi16(0x0706), _mm_set1_epi16(0x0504)),
      _mm256_set_m128i(_mm_set1_epi16(0x0b0a), _mm_set1_epi16(0x0908)),
      _mm256_set_m128i(_mm_set1_epi16(0x0f0e), _mm_set1_epi16(0x0d0c))};
  float acc[RN * R] = {};
  for (int64_t b = 0; b < nb; ++b) for (int n = 0; n < RN; ++n) {
    const uint8_t* blk = ws[n] + b * 210;
    prefetch_ahead<210>(blk);
    const float d = load_half(blk + 208);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192));
    const __m256i sc_all = _mm256_cvtepi8_epi16(sc8);  // 16 scales, one per 16 weights
    __m256i sumi[R];
    for (int r = 0; r < R; ++r) sumi[r] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load_256(blk + 64 * h), ql1 = load_256(blk + 64 * h + 32);
      const __m256i qh = load_256(blk + 128 + 32 * h);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4),
                          _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4),
                          _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0c)), 2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                          _mm256_and_si256(qh, _mm256_set1_epi8(0x30))),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_srli_epi16(
                              _mm256_and_si256(qh, _mm256_set1_epi8(char(0xc0))), 2))};
      const __m256i sc_half = _mm256_broadcastsi128_si256(
          _mm_cvtepi8_epi16(h == 0 ? sc8 : _mm_srli_si128(sc8, 8)));
      for (int i = 0; i < 4; ++i) {
        const __m256i s = _mm256_shuffle_epi8(sc_half, pick[i]);
        for (int r = 0; r < R; ++r) {
          const __m256i xq = load_256(xs[r].q + 256 * b + 128 * h + 32 * i);
          sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q[i], xq), s));
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      // q - 32: subtract 32 * sum_g sc[g] * (sum of the 16 activations of g).
      const __m256i off = _mm256_madd_epi16(sc_all, load_256(xs[r].bs + 16 * b));
      int total, offset;
      sum_lanes_2(sumi[r], off, total, offset);
      acc[n * R + r] = scale_k_block(total - 32 * offset, d * xs[r].d[b], acc[n * R + r]);
    }
  }
  for (int i = 0; i < RN * R; ++i) out[i] = acc[i];
}

// ----------------------------------------------- vectorized dequantization --
// The float operations of dequantize_row (and gguf), 8 weights a step.

// y[0:n] = d * q (+ m), q int8; two roundings where gguf has two.
template <bool kAddM>
inline void scale_bytes(const int8_t* q, int n, float d, float m, float* y) {
  const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
  for (int j = 0; j < n; j += 8) {
    const __m256 v = _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + j))));
    const __m256 r = _mm256_mul_ps(vd, v);
    _mm256_storeu_ps(y + j, kAddM ? _mm256_add_ps(r, vm) : r);
  }
}

inline void store_256(void* p, __m256i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}

// A 32-wide block from its unpacked weights q (unsigned, signed for Q8_0), d
// and m (Q4_1, Q5_1): gguf's d * (q - offset) or d * q + m, into y.
template <int QT>
inline void dequantize_block_32(__m256i q, float d, float m, float* y) {
  using T = Nibbles<QT>;
  alignas(32) int8_t bytes[32];
  if constexpr (T::offset != 0.0f)
    q = _mm256_sub_epi8(q, _mm256_set1_epi8(static_cast<char>(T::offset)));
  store_256(bytes, q);
  scale_bytes<T::has_min>(bytes, 32, d, m, y);
}

template <int QT>
void dequantize_row_avx2(const uint8_t* row, int64_t K, float* out) {
  constexpr Format f = format_of(QT);
  const int64_t nb = K / f.block;
  alignas(32) int8_t q[256];
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * f.bytes;
    float* y = out + b * f.block;
    if constexpr (QT == kQ8_0) {
      scale_bytes<false>(reinterpret_cast<const int8_t*>(blk + 2), 32, load_half(blk), 0.0f, y);
    } else if constexpr (!is_k_quant(QT)) {
      dequantize_block_32<QT>(block_bytes<QT>(blk), load_half(blk),
                              Nibbles<QT>::has_min ? load_half(blk + 2) : 0.0f, y);
    } else if constexpr (QT == kQ6_K) {
      const float d = load_half(blk + 208);
      const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = load_256(blk + 64 * h), ql1 = load_256(blk + 64 * h + 32);
        const __m256i qh = load_256(blk + 128 + 32 * h);
        const __m256i m32 = _mm256_set1_epi8(32);
        store_256(q + 128 * h, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(ql0, low4),
            _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4)), m32));
        store_256(q + 128 * h + 32, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(ql1, low4),
            _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0c)), 2)), m32));
        store_256(q + 128 * h + 64, _mm256_sub_epi8(_mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
            _mm256_and_si256(qh, _mm256_set1_epi8(0x30))), m32));
        store_256(q + 128 * h + 96, _mm256_sub_epi8(_mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
            _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(char(0xc0))), 2)), m32));
      }
      for (int g = 0; g < 16; ++g)
        scale_bytes<false>(q + 16 * g, 16, d * static_cast<float>(sc[g]), 0.0f, y + 16 * g);
    } else {  // Q4_K, Q5_K: w = (d sc) q - dmin mn
      constexpr bool q5 = QT == kQ5_K;
      const float d = load_half(blk), dmin = load_half(blk + 2);
      const KScales s = unpack_k_scales(load_u32(blk + 4), load_u32(blk + 8), load_u32(blk + 12));
      const uint64_t sc = uint64_t(s.sc_lo) | uint64_t(s.sc_hi) << 32;
      const uint64_t mn = uint64_t(s.mn_lo) | uint64_t(s.mn_hi) << 32;
      const uint8_t* qs = blk + (q5 ? 48 : 16);
      __m256i hb = _mm256_setzero_si256();
      if constexpr (q5) hb = load_256(blk + 16);
      const __m256i bit = _mm256_set1_epi8(1);
      for (int c = 0; c < 4; ++c) {
        const __m256i v = load_256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(v, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        if constexpr (q5) {
          const __m256i h0 = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c));
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h0, bit), 4));
          hi = _mm256_or_si256(
              hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h0, 1), bit), 4));
        }
        store_256(q + 64 * c, lo);
        store_256(q + 64 * c + 32, hi);
      }
      for (int sb = 0; sb < 8; ++sb) {
        const float ds = d * static_cast<float>((sc >> (8 * sb)) & 0xff);
        const float dm = dmin * static_cast<float>((mn >> (8 * sb)) & 0xff);
        scale_bytes<true>(q + 32 * sb, 32, ds, -dm, y + 32 * sb);
      }
    }
  }
}

template <int QT, int RN, int R>
void dot_rows(const uint8_t* const* ws, int64_t K, const XRow* xs, float* out) {
  if constexpr (QT == kQ6_K)
    dot_rows_q6k<RN, R>(ws, K, xs, out);
  else
    dot_rows_q45k<QT, RN, R>(ws, K, xs, out);
}

template <int QT, int R>
void dot_row(const uint8_t* w, int64_t K, const XRow* xs, float* out) {
  dot_rows<QT, 1, R>(&w, K, xs, out);
}

#else  // portable scalar version of the same integer arithmetic

template <int QT, int R>
void dot_row(const uint8_t* w, int64_t K, const XRow* xs, float* out) {
  constexpr Format f = format_of(QT);
  const int64_t nb = K / f.block;
  for (int r = 0; r < R; ++r) out[r] = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * f.bytes;
    if constexpr (!is_k_quant(QT)) {
      int q[32];
      float d = load_half(blk), m = 0.0f;
      const uint8_t* qs = blk + 2;
      uint32_t qh = 0;
      int offset = 0;
      if constexpr (QT == kQ4_0) offset = 8;
      if constexpr (QT == kQ4_1) { m = load_half(blk + 2); qs = blk + 4; }
      if constexpr (QT == kQ5_0) { qh = load_u32(blk + 2); qs = blk + 6; offset = 16; }
      if constexpr (QT == kQ5_1) { m = load_half(blk + 2); qh = load_u32(blk + 4); qs = blk + 8; }
      for (int j = 0; j < 16; ++j) {
        if constexpr (QT == kQ8_0) {
          q[j] = static_cast<int8_t>(qs[j]);
          q[j + 16] = static_cast<int8_t>(qs[j + 16]);
        } else {
          q[j] = int(qs[j] & 15) | int((qh >> j) & 1) << 4;
          q[j + 16] = int(qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
        }
      }
      for (int r = 0; r < R; ++r) {
        int dot = 0, sum = 0;
        for (int j = 0; j < 32; ++j) {
          dot += q[j] * xs[r].q[32 * b + j];
          sum += xs[r].q[32 * b + j];
        }
        const float dx = xs[r].d[b];
        out[r] += d * dx * static_cast<float>(dot) +
                  (m - static_cast<float>(offset) * d) * (dx * static_cast<float>(sum));
      }
    } else if constexpr (QT == kQ6_K) {
      const uint8_t* ql = blk;
      const uint8_t* qhp = blk + 128;
      const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
      const float d = load_half(blk + 208);
      int q[256];
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
          const uint8_t a = ql[64 * h + l], c = ql[64 * h + l + 32], hb = qhp[32 * h + l];
          q[128 * h + l] = ((a & 15) | (hb & 3) << 4) - 32;
          q[128 * h + l + 32] = ((c & 15) | (hb >> 2 & 3) << 4) - 32;
          q[128 * h + l + 64] = ((a >> 4) | (hb >> 4 & 3) << 4) - 32;
          q[128 * h + l + 96] = ((c >> 4) | (hb >> 6 & 3) << 4) - 32;
        }
      for (int r = 0; r < R; ++r) {
        int total = 0;
        for (int g = 0; g < 16; ++g) {
          int dot = 0;
          for (int j = 0; j < 16; ++j) dot += q[16 * g + j] * xs[r].q[256 * b + 16 * g + j];
          total += sc[g] * dot;
        }
        out[r] = scale_k_block(total, d * xs[r].d[b], out[r]);
      }
    } else {
      constexpr bool q5 = QT == kQ5_K;
      const float d = load_half(blk), dmin = load_half(blk + 2);
      const KScales s = unpack_k_scales(load_u32(blk + 4), load_u32(blk + 8), load_u32(blk + 12));
      const uint64_t sc = uint64_t(s.sc_lo) | uint64_t(s.sc_hi) << 32;
      const uint64_t mn = uint64_t(s.mn_lo) | uint64_t(s.mn_hi) << 32;
      const uint8_t* qh = blk + 16;
      const uint8_t* qs = blk + (q5 ? 48 : 16);
      for (int r = 0; r < R; ++r) {
        int total = 0, mins = 0;
        for (int sb = 0; sb < 8; ++sb) {
          const int c = sb / 2, half = sb % 2;
          int dot = 0;
          for (int l = 0; l < 32; ++l) {
            int q = half ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
            if (q5) q |= ((qh[l] >> sb) & 1) << 4;
            dot += q * xs[r].q[256 * b + 32 * sb + l];
          }
          total += int((sc >> (8 * sb)) & 0xff) * dot;
          const int16_t* bs = xs[r].bs + 16 * b + 2 * sb;
          mins += int((mn >> (8 * sb)) & 0xff) * (bs[0] + bs[1]);
        }
        out[r] = scale_k_block(total, mins, d * xs[r].d[b], dmin * xs[r].d[b], out[r]);
      }
    }
  }
}

#endif

// Rows [n0, n1) of W against all M quantized rows: out[m * ldo + n].
// The K-quants (and every type in the portable build) go one weight row at a
// time, so each thread reads one sequential stream, for up to kRowGroup rows of
// x a pass.
template <int QT>
void int8_rows(const uint8_t* w, int64_t row_bytes, int64_t K, const QuantRows& xq, int64_t M,
               int64_t n0, int64_t n1, float* out, int64_t ldo) {
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    for (int64_t m0 = 0; m0 < M; m0 += kRowGroup) {
      const int R = static_cast<int>(std::min<int64_t>(kRowGroup, M - m0));
      XRow xs[kRowGroup];
      for (int r = 0; r < R; ++r)
        xs[r] = xq.row(m0 + r);
      float res[kRowGroup];
      switch (R) {
        case 1: dot_row<QT, 1>(wr, K, xs, res); break;
        case 2: dot_row<QT, 2>(wr, K, xs, res); break;
        case 3: dot_row<QT, 3>(wr, K, xs, res); break;
        default: dot_row<QT, 4>(wr, K, xs, res); break;
      }
      for (int r = 0; r < R; ++r) out[(m0 + r) * ldo + n] = res[r];
    }
  }
}

template <typename F>
void dispatch_type(int qtype, const F& f) {
  switch (qtype) {
    case kQ4_0: f(std::integral_constant<int, kQ4_0>{}); break;
    case kQ4_1: f(std::integral_constant<int, kQ4_1>{}); break;
    case kQ5_0: f(std::integral_constant<int, kQ5_0>{}); break;
    case kQ5_1: f(std::integral_constant<int, kQ5_1>{}); break;
    case kQ8_0: f(std::integral_constant<int, kQ8_0>{}); break;
    case kQ4_K: f(std::integral_constant<int, kQ4_K>{}); break;
    case kQ5_K: f(std::integral_constant<int, kQ5_K>{}); break;
    case kQ6_K: f(std::integral_constant<int, kQ6_K>{}); break;
    default: TORCH_CHECK(false, "aigc.quant_linear: unreachable type ", qtype);
  }
}

#ifdef AIGC_QL_AVX2
// 8 rows (out: 8 x K floats) of a tiled weight (QT: the GGUF type it
// rearranges), their groups at `rows` (eight_rows): each row's quants of a
// block gathered from the group's words, then dequantize_block_32 as for a
// GGUF row.
template <int QT>
void dequantize_tile_x8_avx2(EightRows rows, int64_t K, float* out) {
  using T = Nibbles<QT>;
  for (int64_t b = 0; b < K / 32; ++b) {
    const uint8_t* g = rows.at + b * rows.stride;
    const uint8_t* words = g + kTileRowsX8 * block_scale_bytes(QT);
    for (int j = 0; j < kTileCols; ++j) {
      const auto word = [&](int c) { return static_cast<int>(load_u32(words + 32 * c + 4 * j)); };
      const __m256i q =
          QT == kQ8_0 ? _mm256_setr_epi32(word(0), word(1), word(2), word(3), word(4), word(5),
                                          word(6), word(7))
                      : nibbles_32(_mm_setr_epi32(word(0), word(1), word(2), word(3)));
      dequantize_block_32<QT>(q, load_half(g + 2 * j),
                              T::has_min ? load_half(g + 16 + 2 * j) : 0.0f, out + j * K + 32 * b);
    }
  }
}
#endif

// Row j of a Q6_Kx8 tile back in Q6_K blocks (out): the 6-bit weights of its
// steps, then Q6_K's packing of them (ql: low 4 bits, qh: high 2 bits).
void untile_q6k_row_x8(const uint8_t* tile, int64_t K, int j, uint8_t* out) {
  constexpr int group = kTileRowsX8 * 210;
  for (int64_t b = 0; b < K / 256; ++b) {
    const uint8_t* g = tile + b * group;
    uint8_t* blk = out + b * 210;
    uint8_t q[256];
    for (int s = 0; s < 16; ++s) {
      const uint8_t* v = g + kQ6TileWordsAt + 96 * s + 4 * j;
      const int h = s / 8, t = s % 8;
      for (int m = 0; m < 4; ++m) {
        const int k = 16 * (m / 2) + 2 * t + m % 2;  // within a chunk
        const uint8_t v0 = v[m], v1 = v[32 + m], v2 = v[64 + m];
        q[32 * (4 * h) + k] = v0 & 63;
        q[32 * (4 * h + 1) + k] = v1 & 63;
        q[32 * (4 * h + 2) + k] = v2 & 63;
        q[32 * (4 * h + 3) + k] = (v0 >> 6) | (v1 >> 6) << 2 | (v2 >> 6) << 4;
      }
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* w = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        blk[64 * h + l] = (w[l] & 15) | (w[l + 64] & 15) << 4;
        blk[64 * h + 32 + l] = (w[l + 32] & 15) | (w[l + 96] & 15) << 4;
        blk[128 + 32 * h + l] =
            (w[l] >> 4) | (w[l + 32] >> 4) << 2 | (w[l + 64] >> 4) << 4 | (w[l + 96] >> 4) << 6;
      }
    }
    for (int p = 0; p < 8; ++p)
      std::memcpy(blk + 192 + 2 * p, g + kQ6TileScalesAt + 16 * p + 2 * j, 2);
    std::memcpy(blk + 208, g + 2 * j, 2);
  }
}

// Row j of 8 rows (GGUF bytes, out), their groups at `rows` (eight_rows), of a
// weight in the tiled layout of GGUF type `base` (quant_formats.h).
void untile_row_x8(int base, EightRows rows, int64_t K, int j, uint8_t* out) {
  if (base == kQ6_K) return untile_q6k_row_x8(rows.at, K, j, out);  // Q6_Kx8 only
  const Format f = format_of(base);
  const int bytes = f.bytes, scales = block_scale_bytes(base), at = block_scale_offset(base);
  for (int64_t b = 0; b < K / f.block; ++b) {
    const uint8_t* g = rows.at + b * rows.stride;
    const uint8_t* words = g + kTileRowsX8 * scales;
    uint8_t* blk = out + b * bytes;
    for (int h = 0; h < scales / 2; ++h)  // d, then m or dmin: 8 of each
      std::memcpy(blk + at + 2 * h, g + 2 * (kTileRowsX8 * h + j), 2);
    for (int c = 0; c < (bytes - scales) / 4; ++c) {  // the other bytes in order
      const int k = 4 * c < at ? 4 * c : 4 * c + scales;
      std::memcpy(blk + k, words + 32 * c + 4 * j, 4);
    }
  }
}

void dequantize_rows(int qtype, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t n0,
                     int64_t n1, float* out);

// Row n of W as float32 (out: K floats), gguf's values, whatever the layout.
void dequantize_row_at(int qtype, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t n,
                       float* out) {
  const int base = tiled_base(qtype);
  if (base == 0) {
    dequantize_rows(qtype, w, row_bytes, K, n, n + 1, out);
    return;
  }
  static thread_local std::vector<uint8_t> row;
  row.resize(row_bytes);
  const int64_t first = n / kTileRowsX8 * kTileRowsX8;
  untile_row_x8(base, eight_rows(qtype, w, row_bytes, first), K, static_cast<int>(n - first),
                row.data());
  dequantize_rows(base, row.data(), row_bytes, K, 0, 1, out);
}

// Rows [n0, n1) of W as float32 rows of K (out), gguf's values; for a tiled
// weight n0 and n1 are multiples of 8.
void dequantize_rows(int qtype, const uint8_t* w, int64_t row_bytes, int64_t K, int64_t n0,
                     int64_t n1, float* out) {
  if (const int base = tiled_base(qtype)) {
#ifdef AIGC_QL_AVX2
    if (base == kQ4_0 || base == kQ4_1 || base == kQ8_0) {
      for (int64_t n = n0; n < n1; n += kTileRowsX8) {
        const EightRows rows = eight_rows(qtype, w, row_bytes, n);
        float* to = out + (n - n0) * K;
        if (base == kQ4_0) dequantize_tile_x8_avx2<kQ4_0>(rows, K, to);
        if (base == kQ4_1) dequantize_tile_x8_avx2<kQ4_1>(rows, K, to);
        if (base == kQ8_0) dequantize_tile_x8_avx2<kQ8_0>(rows, K, to);
      }
      return;
    }
#endif
    for (int64_t n = n0; n < n1; ++n)  // a row at a time, back in its GGUF bytes
      dequantize_row_at(qtype, w, row_bytes, K, n, out + (n - n0) * K);
    return;
  }
  dispatch_type(qtype, [&](auto qt) {
    for (int64_t n = n0; n < n1; ++n) {
#ifdef AIGC_QL_AVX2
      dequantize_row_avx2<decltype(qt)::value>(w + n * row_bytes, K, out + (n - n0) * K);
#else
      dequantize_row(qtype, w + n * row_bytes, K, out + (n - n0) * K);
#endif
    }
  });
}

// Work items of whole rows: about kItemsPerThread a thread, each at least
// `min_rows` (and a multiple of it).
int64_t rows_per_item(int64_t N, int64_t min_rows) {
  const int64_t items = std::max<int64_t>(1, at::get_num_threads() * kItemsPerThread);
  const int64_t rows = std::max<int64_t>(min_rows, (N + items - 1) / items);
  return (rows + min_rows - 1) / min_rows * min_rows;
}

// M rows of x, ldx floats apart.
void run_int8(const float* x, int64_t ldx, int64_t M, const uint8_t* w, int64_t row_bytes,
              int qtype, int64_t N, int64_t K, float* out) {
  // Reused across calls (a decode step makes hundreds): no allocation once warm.
  // A named reference, so that the pool's threads read this thread's rows (a
  // thread_local named in the lambda would be each worker's own).
  static thread_local QuantRows rows;
  QuantRows& xq = rows;
  // A tiled weight (only on AVX2 builds: quant_linear_cpu sends it to the float
  // path otherwise) runs as the GGUF type it rearranges.
  const int base = tiled_base(qtype);
  const int gguf_type = base != 0 ? base : qtype;
  quantize_rows(x, ldx, M, K, gguf_type, xq);
#ifdef AIGC_QL_AVX2
  if (qtype == kQ6_Kx8)
    for (int64_t m = 0; m < M; ++m) pair_sub_blocks(xq.q.data() + m * K, K);
#endif
  dispatch_type(gguf_type, [&](auto qt) {
    constexpr int QT = decltype(qt)::value;
#ifdef AIGC_QL_AVX2
    constexpr bool tiles = !is_k_quant(QT);
#else
    constexpr bool tiles = false;
#endif
    const int64_t step = rows_per_item(N, base != 0 ? tile_rows(qtype) : tiles ? kTileCols : 4);
    const int64_t items = (N + step - 1) / step;
    aigc::parallel_items(
        items, N * K * M, kSerialWeights,
        [&](int64_t item, int) {
          const int64_t n0 = item * step, n1 = std::min(N, n0 + step);
#ifdef AIGC_QL_AVX2
          if constexpr (QT == kQ4_0 || QT == kQ4_1 || QT == kQ8_0 || QT == kQ4_K || QT == kQ6_K) {
            if (base != 0) {
              with_rows_of_x(M, [&]<int kRows>() {
                int8_tiles_x8<QT, kRows>(qtype, w, K, xq, M, n0, n1, out, N);
              });
              return;
            }
          }
          if constexpr (tiles)
            int8_columns<QT>(w, row_bytes, N, K, xq, M, n0, n1, out);
          else
#endif
            int8_rows<QT>(w, row_bytes, K, xq, M, n0, n1, out, N);
        },
        aigc::Team::kKernelThreads);
  });
}

// The most rows of x the int8 path computes (exact=false); from there on, the
// fp32 tiles. With AVX-512 VNNI a Q4_0 / Q4_1 row costs a third of the float
// path's at 32 rows and half at 512 in the x16 tiles (x16_block_rows_zmm), and
// less than the float path's in the GGUF layout too (docs/performance.md), so a
// prefill runs them as well, kFp32MinRows rows at a time. Each row is then
// computed the same way whatever M is, and a tiled matrix still gives its GGUF
// layout's results bit for bit.
constexpr int64_t int8_max_rows(int qtype) {
  const int base = tiled_base(qtype);
#ifdef AIGC_QL_X16_ZMM
  const int gguf_type = base != 0 ? base : qtype;
  if (gguf_type == kQ4_0 || gguf_type == kQ4_1) return std::numeric_limits<int64_t>::max();
#endif
#ifndef AIGC_QL_AVX2
  if (base != 0) return 0;  // the x8 layouts' int8 kernels need AVX2
#endif
  (void)base;
  return kFp32MinRows - 1;
}

void run_fp32(const at::Tensor& xf, const uint8_t* w, int64_t row_bytes, int qtype, int64_t N,
              int64_t K, const at::Tensor& out) {
  const int64_t step = std::min<int64_t>(kTileRows, rows_per_item(N, 8));
  const int64_t items = (N + step - 1) / step;
  const int threads = at::get_num_threads();
  std::vector<at::Tensor> tiles(threads);
  // The pool's threads do not inherit the caller's inference mode, and writing into an
  // inference tensor (out, made under torch.inference_mode()) outside it is an error.
  const bool inference = c10::InferenceMode::is_enabled();
  aigc::parallel_items(items, N * K * xf.size(0), kSerialWeights, [&](int64_t item, int thread) {
    c10::InferenceMode inference_guard(inference);
    const int64_t n0 = item * step, rows = std::min(N, n0 + step) - n0;
    at::Tensor& tile = tiles[thread];
    if (!tile.defined()) tile = at::empty({step, K}, xf.options());
    dequantize_rows(qtype, w, row_bytes, K, n0, n0 + rows, tile.data_ptr<float>());
    // One thread's GEMM: inside the pool's parallel region the BLAS runs serially.
    at::Tensor dst = out.narrow(1, n0, rows);
    at::mm_out(dst, xf, tile.narrow(0, 0, rows).t());
  });
}

}  // namespace

namespace {

// The checks of a weight of raw GGUF blocks [N, K / block * bytes] of `qtype`,
// for op `op` ("aigc.quant_linear", "aigc.dequantize").
void check_gguf_weight(const char* op, const at::Tensor& weight, int64_t qtype, int64_t K) {
  const int base = tiled_base(static_cast<int>(qtype));
  const Format f = format_of(base != 0 ? base : static_cast<int>(qtype));
  TORCH_CHECK_VALUE(f.block != 0, op, ": unsupported GGML type id ", qtype,
                    "; supported: Q4_0 (2), Q4_1 (3), Q5_0 (6), Q5_1 (7), Q8_0 (8), Q4_K (12), "
                    "Q5_K (13), Q6_K (14), and the CPU layouts Q4_0x8 (258), Q4_1x8 (259), "
                    "Q8_0x8 (264), Q4_Kx8 (268), Q6_Kx8 (270), Q4_0x16 (514), Q4_1x16 (515)");
  const char* name = name_of(static_cast<int>(qtype));
  TORCH_CHECK_VALUE(K > 0 && K % f.block == 0, op, ": K = ", K,
                    " must be a positive multiple of the ", name, " block size ", f.block);
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kByte, op,
                   ": weight must be a uint8 tensor of raw GGUF blocks, got ",
                   weight.scalar_type());
  const int64_t row_bytes = K / f.block * f.bytes;
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == row_bytes, op,
                    ": weight must have shape [N, ", row_bytes, "] (", K / f.block, " ", name,
                    " blocks of ", f.bytes, " bytes for K = ", K, "), got ", weight.sizes());
  const int rows = tile_rows(static_cast<int>(qtype));
  TORCH_CHECK_VALUE(base == 0 || weight.size(0) % rows == 0, op, ": a ", name,
                    " weight holds its rows in tiles of ", rows, ": N = ", weight.size(0),
                    " must be a multiple of ", rows);
}

}  // namespace

namespace aigc {

// Shared with csrc/cuda/quant_linear.cu.
void check_quant_linear(const at::Tensor& x, const at::Tensor& weight, int64_t qtype, int64_t K,
                        const std::optional<at::Tensor>& bias) {
  check_gguf_weight("aigc.quant_linear", weight, qtype, K);
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
                   "aigc.quant_linear: x must be float32 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 2, "aigc.quant_linear: x must have shape [M, K], got ", x.sizes());
  TORCH_CHECK_VALUE(x.size(1) == K, "aigc.quant_linear: x has ", x.size(1),
                    " columns but the weight rows have K = ", K);
  TORCH_CHECK_VALUE(weight.is_contiguous(), "aigc.quant_linear: weight must be contiguous");
  TORCH_CHECK_VALUE(x.stride(1) == 1 || x.size(1) <= 1,
                    "aigc.quant_linear: the last dimension of x must be contiguous");
  TORCH_CHECK_VALUE(weight.device() == x.device(), "aigc.quant_linear: weight is on ",
                    weight.device(), " but x is on ", x.device());
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == weight.size(0),
                      "aigc.quant_linear: bias must have shape [N] = [", weight.size(0), "], got ",
                      b.sizes());
    TORCH_CHECK_TYPE(b.scalar_type() == at::kFloat || b.scalar_type() == x.scalar_type(),
                     "aigc.quant_linear: bias must be float32 or x's dtype, got ",
                     b.scalar_type());
    TORCH_CHECK_VALUE(b.device() == x.device(), "aigc.quant_linear: bias is on ", b.device(),
                      " but x is on ", x.device());
  }
}

}  // namespace aigc

namespace {

at::Tensor quant_linear_cpu(const at::Tensor& x, const at::Tensor& weight, int64_t qtype,
                            int64_t K, const std::optional<at::Tensor>& bias, bool exact) {
  aigc::check_quant_linear(x, weight, qtype, K, bias);
  const int64_t M = x.size(0), N = weight.size(0);
  const int64_t row_bytes = weight.size(1);
  const at::Tensor xf = x.scalar_type() == at::kFloat && x.stride(1) == 1
                            ? x
                            : x.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({M, N}, x.options().dtype(at::kFloat));
  if (M > 0 && N > 0) {
    const uint8_t* w = weight.data_ptr<uint8_t>();
    const int type = static_cast<int>(qtype);
    if (exact || M > int8_max_rows(type)) {
      run_fp32(xf, w, row_bytes, type, N, K, out);
    } else {
      const float* x_rows = xf.data_ptr<float>();
      for (int64_t m0 = 0; m0 < M; m0 += kFp32MinRows)  // rows the int8 kernels hold at once
        run_int8(x_rows + m0 * xf.stride(0), xf.stride(0), std::min(kFp32MinRows, M - m0), w,
                 row_bytes, type, N, K, out.data_ptr<float>() + m0 * N);
    }
  }
  if (bias.has_value()) out.add_(bias->to(at::kFloat));
  return x.scalar_type() == at::kFloat ? out : out.to(x.scalar_type());
}

}  // namespace

namespace {

// The float32 matrix [N, K] of raw GGUF blocks, or its rows `rows` ([n, K]):
// gguf's dequantization, row by row (an embedding lookup dequantizes a few
// rows; a whole matrix, many).
at::Tensor dequantize_cpu(const at::Tensor& weight, int64_t qtype, int64_t K,
                          const std::optional<at::Tensor>& rows) {
  check_gguf_weight("aigc.dequantize", weight, qtype, K);
  const int64_t row_bytes = weight.size(1);
  const at::Tensor w = weight.contiguous();
  const int64_t N = w.size(0);
  const uint8_t* src = w.data_ptr<uint8_t>();
  if (rows.has_value()) {
    TORCH_CHECK_TYPE(rows->scalar_type() == at::kLong && rows->dim() == 1,
                     "aigc.dequantize: rows must be a 1-D int64 tensor, got ",
                     rows->scalar_type(), " of shape ", rows->sizes());
    TORCH_CHECK_VALUE(rows->device().is_cpu(), "aigc.dequantize: rows must be on the CPU");
    const at::Tensor index = rows->contiguous();
    const int64_t n = index.numel();
    const int64_t* picked = index.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i)
      TORCH_CHECK_INDEX(picked[i] >= 0 && picked[i] < N, "aigc.dequantize: rows[", i,
                        "] = ", picked[i], " is outside [0, N = ", N, ")");
    at::Tensor out = at::empty({n, K}, w.options().dtype(at::kFloat));
    float* dst = out.data_ptr<float>();
    aigc::parallel_items(
        n, n * K, kSerialWeights,
        [&](int64_t i, int) {
          dequantize_row_at(static_cast<int>(qtype), src, row_bytes, K, picked[i], dst + i * K);
        },
        aigc::Team::kKernelThreads);
    return out;
  }
  at::Tensor out = at::empty({N, K}, w.options().dtype(at::kFloat));
  float* dst = out.data_ptr<float>();
  // Items of about 8 K weights (whole tiles of a tiled weight): enough of them
  // to share a matrix out evenly.
  const int64_t unit = tiled_base(static_cast<int>(qtype)) != 0 ? kTileRowsX8 : 1;
  const int64_t rows_per_item = (std::max<int64_t>(1, 8192 / K) + unit - 1) / unit * unit;
  const int64_t items = (N + rows_per_item - 1) / rows_per_item;
  aigc::parallel_items(items, N * K, kSerialWeights, [&](int64_t item, int) {
    const int64_t n0 = item * rows_per_item, n1 = std::min(N, n0 + rows_per_item);
    dequantize_rows(static_cast<int>(qtype), src, row_bytes, K, n0, n1, dst + n0 * K);
  });
  return out;
}

}  // namespace

// The most rows of x the CPU kernel computes with int8 activations when exact is
// false, for weights of type qtype on this build.
int64_t quant_linear_int8_rows(int64_t qtype) { return int8_max_rows(static_cast<int>(qtype)); }

TORCH_LIBRARY_FRAGMENT(aigc, m) {
  m.def(
      "quant_linear(Tensor x, Tensor weight, int qtype, int K, Tensor? bias=None, "
      "bool exact=False) -> Tensor");
  m.def("quant_linear_int8_rows(int qtype) -> int", &quant_linear_int8_rows);
  m.def("dequantize(Tensor weight, int qtype, int K, Tensor? rows=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) {
  m.impl("quant_linear", &quant_linear_cpu);
  m.impl("dequantize", &dequantize_cpu);
}
