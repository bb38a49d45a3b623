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
//    A weight row is used for up to kRowGroup rows of x at a time while its
//    blocks are in registers, and from L1 for the next groups.
//  * fp32 (large M, and `exact`): a tile of W rows is dequantized into float32
//    (the same float operations as gguf's dequantization) and multiplied with
//    x by the BLAS GEMM (at::mm), one tile per work item on each thread: the
//    dequantization is read once per tile and reused for all M rows.
// The int8 path differs from the float reference by the activation rounding
// (at most half a step, amax / 254, per activation); the fp32 path only by
// the order of the additions.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "cpu/parallel_items.h"
#include "kernels/quant_formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define AIGC_QL_AVX2 1
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define AIGC_QL_VNNI 1  // vpdpbusd on ymm registers (AVX-512 VNNI + VL)
#elif defined(__AVXVNNI__)
#define AIGC_QL_AVXVNNI 1  // the VEX encoding of the same (Alder Lake, Zen 5)
#endif
#endif

namespace {

using namespace aigc::quant;

// Below this many rows of x the int8 path runs; from it on, the fp32 tiles.
// Measured on an AVX2 Zen 3 (docs/performance.md).
constexpr int64_t kFp32MinRows = 32;
constexpr int kRowGroup = 4;              // rows of x per pass over a weight row
constexpr int64_t kItemsPerThread = 8;    // work items a thread gets, for balance
// N * K * M below which one thread runs: waking the pool costs a few us. At
// M = 1 (Zen 3, 2 threads) 192x576 took 10 us on one thread, 13 on two;
// 576x576 22 and 19.
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
//
// For the 4/5-bit 32-wide types the AVX2 kernel unpacks two blocks at a time
// from one 256-bit load of their packed bytes, which gives the low nibbles of
// both blocks (elements 0-15 of each) in one register and the high nibbles
// (16-31) in another: those rows of q are stored in that order, each 64
// activations as [x0[0:16], x1[0:16], x0[16:32], x1[16:32]] (an odd last
// block stays as it is).
struct QuantRows {
  int64_t K, block;
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int16_t> bs;
  const int8_t* q_row(int64_t m) const { return q.data() + m * K; }
  const float* d_row(int64_t m) const { return d.data() + m * (K / block); }
  const float* s_row(int64_t m) const { return s.data() + m * (K / 32); }
  const int16_t* bs_row(int64_t m) const { return bs.data() + m * (K / 16); }
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

// Reorders a row of q for the paired-nibble kernels (see QuantRows).
void pair_nibble_order(int8_t* q, int64_t K) {
  int8_t tmp[64];
  for (int64_t b = 0; b + 64 <= K; b += 64) {
    std::memcpy(tmp, q + b, 64);
    std::memcpy(q + b, tmp, 16);
    std::memcpy(q + b + 16, tmp + 32, 16);
    std::memcpy(q + b + 32, tmp + 16, 16);
    std::memcpy(q + b + 48, tmp + 48, 16);
  }
}

constexpr bool pairs_nibbles(int qtype) {
#ifdef AIGC_QL_AVX2
  return qtype == kQ4_0 || qtype == kQ4_1 || qtype == kQ5_0 || qtype == kQ5_1;
#else
  return false;
#endif
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
    if (pairs_nibbles(qtype)) pair_nibble_order(q, K);
  }
}

// ------------------------------------------------------------ int8 dots --
// dot_row<QT, R>(w, xs, out): out[r] = sum_k W[k] * xhat_r[k] for one weight
// row w and R quantized activation rows (xhat = d * q).

struct XRow {
  const int8_t* q;
  const float* d;
  const float* s;
  const int16_t* bs;
};

#ifdef AIGC_QL_AVX2

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int32 lanes, each the sum of 4 adjacent u8 * s8 products.
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(AIGC_QL_VNNI)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#elif defined(AIGC_QL_AVXVNNI)
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#else
  // No saturation: |u| <= 128 (Q8_0's |w|), |s| <= 127, 2 * 128 * 127 < 2^15.
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// 16 packed bytes -> 32 bytes: low nibbles (elements 0-15), then high ones.
inline __m256i nibbles_32(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(both, _mm256_set1_epi8(15));
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
// line of it. Streaming 11008x4096 matrices from memory (Zen 3, medians of
// interleaved rounds), one request a step -> every line, 1 KiB ahead: Q4_K
// 23-24 -> 29-31 GB/s and Q6_K 22-26 -> 30-35 on two threads; 1 -> 2 KiB
// ahead: 15 -> 16-18 GB/s on one thread (4 KiB: the same as 2).
constexpr int kPrefetchBytes = 2048;
// Requests the kBytes a step reads (one request per cache line).
template <int kBytes>
inline void prefetch_ahead(const uint8_t* p) {
  for (int o = 0; o < kBytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes + o, _MM_HINT_T0);
}

// f(0), f(1), f(2), f(3) with the index a constant (an immediate for the permutes).
template <typename F>
[[gnu::always_inline]] inline void static_for_4(F&& f) {
  f(std::integral_constant<int, 0>{});
  f(std::integral_constant<int, 1>{});
  f(std::integral_constant<int, 2>{});
  f(std::integral_constant<int, 3>{});
}

inline __m256i load_256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Q8_0: w = d * q, q signed, through the sign trick (|q| unsigned, the sign
// moved onto the activation). Four blocks a step (their scales in one
// conversion); RN weight rows against R activation rows: out[n * R + r].
template <int RN, int R>
void dot_rows_q8_0(const uint8_t* const* ws, int64_t K, const XRow* xs, float* out) {
  const int64_t nb = K / 32;
  __m256 acc[RN * R];
  for (int i = 0; i < RN * R; ++i) acc[i] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    for (int n = 0; n < RN; ++n) {
      const uint8_t* b0 = ws[n] + b * 34;
      prefetch_ahead<4 * 34>(b0);
      const uint32_t lo = uint32_t(load_u16(b0)) | uint32_t(load_u16(b0 + 34)) << 16;
      const uint32_t hi = uint32_t(load_u16(b0 + 68)) | uint32_t(load_u16(b0 + 102)) << 16;
      const __m128 d = _mm_cvtph_ps(
          _mm_insert_epi32(_mm_cvtsi32_si128(static_cast<int>(lo)), static_cast<int>(hi), 1));
      for (int r = 0; r < R; ++r) {
        const __m256 scale = _mm256_castps128_ps256(_mm_mul_ps(d, _mm_loadu_ps(xs[r].d + b)));
        __m256& a = acc[n * R + r];
        static_for_4([&](auto j) {
          const __m256i q = load_256(b0 + 34 * j + 2);
          const __m256i p = dot_u8s8(_mm256_sign_epi8(q, q),
                                     _mm256_sign_epi8(load_256(xs[r].q + 32 * (b + j)), q));
          a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                              _mm256_permutevar8x32_ps(scale, _mm256_set1_epi32(j)), a);
        });
      }
    }
  }
  for (; b < nb; ++b) {
    for (int n = 0; n < RN; ++n) {
      const uint8_t* blk = ws[n] + b * 34;
      const float d = load_half(blk);
      const __m256i q = load_256(blk + 2);
      for (int r = 0; r < R; ++r) {
        const __m256i p =
            dot_u8s8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(load_256(xs[r].q + 32 * b), q));
        __m256& a = acc[n * R + r];
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * xs[r].d[b]), a);
      }
    }
  }
  for (int i = 0; i < RN * R; ++i) out[i] = hsum(acc[i]);
}

// The 4/5-bit 32-wide types, w = d * (q - offset) + m with q unsigned:
//   sum_j w_j x_j = d dx (q . xq) + c s,   s = dx sum(xq),
// c = m (Q4_1, Q5_1) or -offset d (Q4_0: 8, Q5_0: 16). Two blocks a step: one
// 256-bit load of their packed bytes gives both blocks' low nibbles in one
// register and their high nibbles in another (the activations are stored to
// match, see QuantRows); one vpmaddwd sums both, its low four int32 lanes
// block 0's, the high four block 1's, scaled by [d0 dx0 x4, d1 dx1 x4].
template <int QT>
struct Nibbles {
  static constexpr bool has_min = QT == kQ4_1 || QT == kQ5_1;
  static constexpr bool five_bit = QT == kQ5_0 || QT == kQ5_1;
  static constexpr int qs_offset = 2 + (has_min ? 2 : 0) + (five_bit ? 4 : 0);
  static constexpr float offset = QT == kQ4_0 ? 8.0f : QT == kQ5_0 ? 16.0f : 0.0f;
};

// The float16 fields at byte `at` of two blocks, as floats [f0, f1, 0, 0].
inline __m128 two_halves(const uint8_t* b0, const uint8_t* b1, int at) {
  const uint32_t both = uint32_t(load_u16(b0 + at)) | uint32_t(load_u16(b1 + at)) << 16;
  return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(both)));
}

inline __m128 load_two_floats(const float* p) {
  return _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p)));
}

// The unpacked weights of two consecutive blocks: lo = low nibbles of both
// (elements 0-15 of each), hi = the high ones (16-31), fifth bits included.
template <int QT>
inline void unpack_pair(const uint8_t* b0, const uint8_t* b1, __m256i& lo, __m256i& hi) {
  using T = Nibbles<QT>;
  const __m256i low4 = _mm256_set1_epi8(15);
  const __m256i v =
      _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + T::qs_offset)),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + T::qs_offset)));
  lo = _mm256_and_si256(v, low4);
  hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  if constexpr (T::five_bit) {
    // Bits 0-15 of qh are the fifth bits of the low nibbles, 16-31 of the high ones.
    const int at = T::has_min ? 4 : 2;
    const uint32_t h0 = load_u32(b0 + at), h1 = load_u32(b1 + at);
    lo = _mm256_or_si256(lo, bits_x16((h0 & 0xffffu) | h1 << 16));
    hi = _mm256_or_si256(hi, bits_x16(h0 >> 16 | (h1 & 0xffff0000u)));
  }
}

// q . xq of a pair of blocks: int32 lanes 0-3 hold block 0's sums, 4-7 block 1's.
inline __m256i dot_pair(__m256i lo, __m256i hi, const int8_t* xq) {
#if defined(AIGC_QL_VNNI)
  return _mm256_dpbusd_epi32(dot_u8s8(lo, load_256(xq)), hi, load_256(xq + 32));
#elif defined(AIGC_QL_AVXVNNI)
  return _mm256_dpbusd_avx_epi32(dot_u8s8(lo, load_256(xq)), hi, load_256(xq + 32));
#else
  // Each int16 lane at most 2 * 2 * 31 * 127 < 2^15.
  return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, load_256(xq)),
                                            _mm256_maddubs_epi16(hi, load_256(xq + 32))),
                           _mm256_set1_epi16(1));
#endif
}

// The float16 d (and m) of four blocks: d = [d0 d1 d2 d3], c = [m0 m1 m2 m3]
// for the types with a min, else d.
template <int QT>
inline void four_scales(const uint8_t* b0, int64_t bytes, __m128& d, __m128& c) {
  if constexpr (Nibbles<QT>::has_min) {
    // d and m are adjacent: one 32-bit load a block, [d0 m0 d1 m1 ...] deinterleaved.
    __m128i h = _mm_cvtsi32_si128(static_cast<int>(load_u32(b0)));
    h = _mm_insert_epi32(h, static_cast<int>(load_u32(b0 + bytes)), 1);
    h = _mm_insert_epi32(h, static_cast<int>(load_u32(b0 + 2 * bytes)), 2);
    h = _mm_insert_epi32(h, static_cast<int>(load_u32(b0 + 3 * bytes)), 3);
    const __m256 f = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(h),
                                              _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    d = _mm256_castps256_ps128(f);
    c = _mm256_extractf128_ps(f, 1);
  } else {
    const uint32_t lo = uint32_t(load_u16(b0)) | uint32_t(load_u16(b0 + bytes)) << 16;
    const uint32_t hi =
        uint32_t(load_u16(b0 + 2 * bytes)) | uint32_t(load_u16(b0 + 3 * bytes)) << 16;
    d = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(static_cast<int>(lo)),
                                      static_cast<int>(hi), 1));
    c = d;
  }
}

// RN weight rows (ws[i]) against R activation rows: out[i * R + r] (int8_rows
// says why it passes one).
template <int QT, int RN, int R>
void dot_rows_nibbles(const uint8_t* const* ws, int64_t K, const XRow* xs, float* out) {
  using T = Nibbles<QT>;
  constexpr int bytes = format_of(QT).bytes;
  const int64_t nb = K / 32;
  const __m256i spread01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  const __m256i spread23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
  __m256 acc[RN * R];
  __m128 corr[RN * R];
  for (int i = 0; i < RN * R; ++i) {
    acc[i] = _mm256_setzero_ps();
    corr[i] = _mm_setzero_ps();
  }
  int64_t b = 0;
  // Four blocks a step: their scales in one conversion.
  for (; b + 4 <= nb; b += 4) {
    for (int n = 0; n < RN; ++n) {
      const uint8_t* b0 = ws[n] + b * bytes;
      prefetch_ahead<4 * bytes>(b0);
      __m128 d, c;
      four_scales<QT>(b0, bytes, d, c);
      __m256i lo0, hi0, lo1, hi1;
      unpack_pair<QT>(b0, b0 + bytes, lo0, hi0);
      unpack_pair<QT>(b0 + 2 * bytes, b0 + 3 * bytes, lo1, hi1);
      for (int r = 0; r < R; ++r) {
        const int8_t* xq = xs[r].q + 32 * b;
        const __m256 scale = _mm256_castps128_ps256(_mm_mul_ps(d, _mm_loadu_ps(xs[r].d + b)));
        const __m256 p0 = _mm256_cvtepi32_ps(dot_pair(lo0, hi0, xq));
        const __m256 p1 = _mm256_cvtepi32_ps(dot_pair(lo1, hi1, xq + 64));
        __m256& a = acc[n * R + r];
        a = _mm256_fmadd_ps(p0, _mm256_permutevar8x32_ps(scale, spread01), a);
        a = _mm256_fmadd_ps(p1, _mm256_permutevar8x32_ps(scale, spread23), a);
        corr[n * R + r] = _mm_fmadd_ps(c, _mm_loadu_ps(xs[r].s + b), corr[n * R + r]);
      }
    }
  }
  if (b + 2 <= nb) {  // a last pair (K = 576: four quads and a pair)
    for (int n = 0; n < RN; ++n) {
      const uint8_t* b0 = ws[n] + b * bytes;
      const __m128 d = two_halves(b0, b0 + bytes, 0);
      const __m128 c = T::has_min ? two_halves(b0, b0 + bytes, 2) : d;
      __m256i lo, hi;
      unpack_pair<QT>(b0, b0 + bytes, lo, hi);
      for (int r = 0; r < R; ++r) {
        const __m256 scale =
            _mm256_castps128_ps256(_mm_mul_ps(d, load_two_floats(xs[r].d + b)));
        const __m256 p = _mm256_cvtepi32_ps(dot_pair(lo, hi, xs[r].q + 32 * b));
        __m256& a = acc[n * R + r];
        a = _mm256_fmadd_ps(p, _mm256_permutevar8x32_ps(scale, spread01), a);
        corr[n * R + r] = _mm_fmadd_ps(c, load_two_floats(xs[r].s + b), corr[n * R + r]);
      }
    }
    b += 2;
  }
  if (b < nb) {  // an odd last block, its activations in natural order
    for (int n = 0; n < RN; ++n) {
      const uint8_t* b0 = ws[n] + b * bytes;
      const float d = load_half(b0);
      const float c = T::has_min ? load_half(b0 + 2) : d;
      __m256i q = nibbles_32(b0 + T::qs_offset);
      if constexpr (T::five_bit)
        q = _mm256_or_si256(q, bits_x16(load_u32(b0 + (T::has_min ? 4 : 2))));
      for (int r = 0; r < R; ++r) {
        const __m256i p = dot_u8s8(q, load_256(xs[r].q + 32 * b));
        __m256& a = acc[n * R + r];
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * xs[r].d[b]), a);
        corr[n * R + r] = _mm_add_ss(corr[n * R + r], _mm_set_ss(c * xs[r].s[b]));
      }
    }
  }
  for (int i = 0; i < RN * R; ++i) {
    __m128 cs = _mm_add_ps(corr[i], _mm_movehl_ps(corr[i], corr[i]));
    cs = _mm_add_ss(cs, _mm_movehdup_ps(cs));
    const float total = _mm_cvtss_f32(cs);
    out[i] = hsum(acc[i]) + (T::has_min ? total : -T::offset * total);
  }
}

// vpshufb masks broadcasting int16 lane j of each 128-bit half to all of it.
inline __m256i broadcast_mask(int j) {
  return _mm256_set1_epi16(static_cast<int16_t>((2 * j) | (2 * j + 1) << 8));
}

// Q4_K / Q5_K against Q8_K-style activations (one scale per 256): per
// super-block, sum_s sc[s] (q_s . xq_s) in int32 (the scales ride in
// vpmaddwd), minus the mins against the activation sums.
template <int QT, int RN, int R>
void dot_rows_q45k(const uint8_t* const* ws, int64_t K, const XRow* xs, float* out) {
  constexpr bool q5 = QT == kQ5_K;
  constexpr Format f = format_of(QT);
  const int64_t nb = K / 256;
  const __m256i low4 = _mm256_set1_epi8(15);
  __m256 acc[RN * R];
  for (int i = 0; i < RN * R; ++i) acc[i] = _mm256_setzero_ps();
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
      __m256& a = acc[n * R + r];
      a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_set1_ps(d * dx), a);
      a = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmin * dx), a);
    }
  }
  for (int i = 0; i < RN * R; ++i) out[i] = hsum(acc[i]);
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
  __m256 acc[RN * R];
  for (int i = 0; i < RN * R; ++i) acc[i] = _mm256_setzero_ps();
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
      const __m256i total = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(off, 5));
      __m256& a = acc[n * R + r];
      a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d * xs[r].d[b]), a);
    }
  }
  for (int i = 0; i < RN * R; ++i) out[i] = hsum(acc[i]);
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
      using T = Nibbles<QT>;
      __m256i v = nibbles_32(blk + T::qs_offset);
      if constexpr (T::five_bit)
        v = _mm256_or_si256(v, bits_x16(load_u32(blk + (T::has_min ? 4 : 2))));
      if constexpr (!T::has_min)
        v = _mm256_sub_epi8(v, _mm256_set1_epi8(static_cast<char>(T::offset)));
      store_256(q, v);
      scale_bytes<T::has_min>(q, 32, load_half(blk), T::has_min ? load_half(blk + 2) : 0.0f, y);
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
  else if constexpr (QT == kQ4_K || QT == kQ5_K)
    dot_rows_q45k<QT, RN, R>(ws, K, xs, out);
  else if constexpr (QT == kQ8_0)
    dot_rows_q8_0<RN, R>(ws, K, xs, out);
  else
    dot_rows_nibbles<QT, RN, R>(ws, K, xs, out);
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
        out[r] += d * xs[r].d[b] * static_cast<float>(total);
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
        out[r] += d * xs[r].d[b] * static_cast<float>(total) -
                  dmin * xs[r].d[b] * static_cast<float>(mins);
      }
    }
  }
}

#endif

// Rows [n0, n1) of W against all M quantized rows: out[m * ldo + n].
template <int QT>
void int8_rows(const uint8_t* w, int64_t row_bytes, int64_t K, const QuantRows& xq, int64_t M,
               int64_t n0, int64_t n1, float* out, int64_t ldo) {
  // One weight row at a time, so each thread reads one sequential stream.
  // dot_rows can take two rows a pass (RN = 2): with the weights in cache
  // that was 1.1-1.25x faster at M = 1 (Zen 3), but streaming an 11008x4096
  // matrix from memory it read 16-17 GB/s where one row at a time read 23-27.
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wr = w + n * row_bytes;
    for (int64_t m0 = 0; m0 < M; m0 += kRowGroup) {
      const int R = static_cast<int>(std::min<int64_t>(kRowGroup, M - m0));
      XRow xs[kRowGroup];
      for (int r = 0; r < R; ++r)
        xs[r] = {xq.q_row(m0 + r), xq.d_row(m0 + r), xq.s_row(m0 + r), xq.bs_row(m0 + r)};
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

// Work items of whole rows: about kItemsPerThread a thread, each at least
// `min_rows` (and a multiple of it).
int64_t rows_per_item(int64_t N, int64_t min_rows) {
  const int64_t items = std::max<int64_t>(1, at::get_num_threads() * kItemsPerThread);
  const int64_t rows = std::max<int64_t>(min_rows, (N + items - 1) / items);
  return (rows + min_rows - 1) / min_rows * min_rows;
}

void run_int8(const at::Tensor& xf, const uint8_t* w, int64_t row_bytes, int qtype, int64_t N,
              int64_t K, float* out) {
  const int64_t M = xf.size(0);
  // Reused across calls (a decode step makes hundreds): no allocation once warm.
  // A named reference, so that the pool's threads read this thread's rows (a
  // thread_local named in the lambda would be each worker's own).
  static thread_local QuantRows rows;
  QuantRows& xq = rows;
  quantize_rows(xf.data_ptr<float>(), xf.stride(0), M, K, qtype, xq);
  const int64_t step = rows_per_item(N, 4);
  const int64_t items = (N + step - 1) / step;
  dispatch_type(qtype, [&](auto qt) {
    aigc::parallel_items(items, N * K * M, kSerialWeights, [&](int64_t item, int) {
      const int64_t n0 = item * step, n1 = std::min(N, n0 + step);
      int8_rows<decltype(qt)::value>(w, row_bytes, K, xq, M, n0, n1, out, N);
    });
  });
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
    float* t = tile.data_ptr<float>();
    dispatch_type(qtype, [&](auto qt) {
      for (int64_t r = 0; r < rows; ++r) {
#ifdef AIGC_QL_AVX2
        dequantize_row_avx2<decltype(qt)::value>(w + (n0 + r) * row_bytes, K, t + r * K);
#else
        dequantize_row(qtype, w + (n0 + r) * row_bytes, K, t + r * K);
#endif
      }
    });
    // One thread's GEMM: inside the pool's parallel region the BLAS runs serially.
    at::Tensor dst = out.narrow(1, n0, rows);
    at::mm_out(dst, xf, tile.narrow(0, 0, rows).t());
  });
}

}  // namespace

namespace aigc {

// Shared with csrc/cuda/quant_linear.cu.
void check_quant_linear(const at::Tensor& x, const at::Tensor& weight, int64_t qtype, int64_t K,
                        const std::optional<at::Tensor>& bias) {
  const Format f = format_of(static_cast<int>(qtype));
  TORCH_CHECK_VALUE(f.block != 0, "aigc.quant_linear: unsupported GGML type id ", qtype,
                    "; supported: Q4_0 (2), Q4_1 (3), Q5_0 (6), Q5_1 (7), Q8_0 (8), Q4_K (12), "
                    "Q5_K (13), Q6_K (14)");
  const char* name = name_of(static_cast<int>(qtype));
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
                   "aigc.quant_linear: x must be float32 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 2, "aigc.quant_linear: x must have shape [M, K], got ", x.sizes());
  TORCH_CHECK_VALUE(K > 0 && K % f.block == 0, "aigc.quant_linear: K = ", K,
                    " must be a positive multiple of the ", name, " block size ", f.block);
  TORCH_CHECK_VALUE(x.size(1) == K, "aigc.quant_linear: x has ", x.size(1),
                    " columns but the weight rows have K = ", K);
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kByte,
                   "aigc.quant_linear: weight must be a uint8 tensor of raw GGUF blocks, got ",
                   weight.scalar_type());
  const int64_t row_bytes = K / f.block * f.bytes;
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == row_bytes,
                    "aigc.quant_linear: weight must have shape [N, ", row_bytes, "] (", K / f.block,
                    " ", name, " blocks of ", f.bytes, " bytes for K = ", K, "), got ",
                    weight.sizes());
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
    if (exact || M >= kFp32MinRows)
      run_fp32(xf, w, row_bytes, static_cast<int>(qtype), N, K, out);
    else
      run_int8(xf, w, row_bytes, static_cast<int>(qtype), N, K, out.data_ptr<float>());
  }
  if (bias.has_value()) out.add_(bias->to(at::kFloat));
  return x.scalar_type() == at::kFloat ? out : out.to(x.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(aigc, m) {
  m.def(
      "quant_linear(Tensor x, Tensor weight, int qtype, int K, Tensor? bias=None, "
      "bool exact=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) { m.impl("quant_linear", &quant_linear_cpu); }
