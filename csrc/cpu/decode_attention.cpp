// aigc::decode_attention on the CPU: one query token per sequence against its
// KV cache, grouped-query heads, variable lengths.
//
// Work items are (sequence, KV head, chunk of KV positions), spread over the
// kernels' own threads (parallel_items.h). An item reads its K and V rows once
// for all the query heads of its KV head (GQA), tile by tile: scores for the tile,
// online-softmax update (running max m, sum l, accumulator acc, in base 2 with
// log2(e) folded into q), then acc += p V. A sequence split into several
// chunks keeps each chunk's (m, l, acc) and a second pass merges them; a
// single-chunk sequence writes its output directly. Decode attention reads
// every cache byte once and does ~1 FMA per byte per query head, so the goal
// is to stream K/V at the machine's read bandwidth: rows read in address
// order wherever the register budget allows (the hardware prefetcher follows
// that stream and no other), register-blocked dot products and axpys on
// tiles that stay in L1 for the other heads of a KV head (with AVX-512, four
// heads a pass), and with GQA the rows of a tile ahead requested by hand,
// spread over all of a tile's passes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/parallel_items.h"
#include "cpu/simd.h"
#include "cpu/static_for.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace {

using aigc::kVectorRegisters;
using namespace aigc::simd;

constexpr int kTile = 32;         // KV positions per tile
// How far ahead K and V rows are requested (GQA), in tiles, into L2: the
// distance matters little from memory, and requests into L1 (prefetcht0,
// prefetchnta) evict the tile being computed.
constexpr int kPrefetchTiles = 2;
// KV positions per work item. A sequence is cut into chunks by its own length
// only (not the batch's, not the thread count), so that its result, merged
// from the same chunks, is bit for bit the same whatever else is in the batch
// and however many threads run; a sequence of up to kChunk positions is one
// item and needs no merge.
constexpr int64_t kChunk = 256;
constexpr int64_t kSerialElements = int64_t(1) << 14;  // K elements below which one thread runs
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ----------------------------------------------------------------- problem --

struct Problem {
  int64_t B, H, Hkv, G, D, Tmax;
  int64_t q_sb, q_sh;        // q strides (elements), d contiguous
  int64_t k_sb, k_sh, k_st;  // cache strides
  int64_t v_sb, v_sh, v_st;
  float scale;
};

// A work item: KV positions [t0, t1) of KV head `kvh` of sequence `b`. Its
// partial state lives at `slot` of the workspace when the sequence has
// several chunks (slot < 0: write the output directly).
struct Item {
  int64_t b, kvh, t0, t1, slot;
};

// Per-item softmax state of its G query heads: q (scaled), scores, m, l, acc.
struct State {
  std::vector<float> q, s, m, l, acc;
  void reset(int64_t G, int64_t D) {
    q.resize(G * D);
    s.resize(G * kTile);
    m.assign(G, kNegInf);
    l.assign(G, 0.0f);
    acc.assign(G * D, 0.0f);
  }
};

// The K and V rows of the tile kPrefetchTiles ahead, requested into L2 while
// this tile is computed. Each pass over the tile (a head block's scores or
// PV; else a head group's scores, a head's PV) calls step() once per row, and
// the requests are spread evenly over all the steps. With GQA most of a
// tile's time goes to arithmetic, during which the core makes few new demand
// loads and the hardware prefetcher idles. Both K and V are requested,
// spread over every pass: requesting only K, during the scores pass, leaves
// the next tile's V rows to come from memory on demand. In cache the
// requests cost a little: there they only take load slots. With one head per
// KV head the hardware prefetcher streams K and V alone, and requests only
// slow it.
class TilePrefetch {
 public:
  struct Rows {
    const char* first;
    int64_t stride;  // bytes
    int n;
  };
  TilePrefetch(Rows k, Rows v, int64_t row_bytes, int64_t steps)
      : k_(k), v_(v), row_bytes_(row_bytes), rows_(k.n + v.n),
        steps_(std::max<int64_t>(steps, 1)), credit_(steps_ - 1) {}

  // After s steps, ceil(rows * s / steps) rows are requested (Bresenham: no
  // division in the loop).
  void step() {
    if (done_ == rows_) return;
    credit_ += rows_;
    for (; credit_ >= steps_ && done_ < rows_; ++done_) {
      credit_ -= steps_;
      const char* row =
          done_ < k_.n ? k_.first + done_ * k_.stride : v_.first + (done_ - k_.n) * v_.stride;
#ifdef AIGC_SIMD_AVX2
      // asm, not _mm_prefetch: GCC 12 silently dropped every one of these
      // builtins from this file (none reached the object code).
      for (int64_t b = 0; b < row_bytes_; b += 64) asm volatile("prefetcht1 %0" : : "m"(row[b]));
#else
      (void)row;
#endif
    }
  }

 private:
  Rows k_, v_;
  int64_t row_bytes_;
  int rows_;
  int64_t steps_, credit_;
  int done_ = 0;
};

inline void step(TilePrefetch* ahead) {
  if (ahead != nullptr) ahead->step();
}

// The 8 horizontal sums of a[0..7], in lane order.
inline void hsum8(const Vec8f* a, float* out) {
#ifdef AIGC_SIMD_AVX2
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                      _mm256_permute2f128_ps(u0, u1, 0x31)));
#else
  for (int i = 0; i < 8; ++i) out[i] = hsum(a[i]);
#endif
}

// Scores of NG heads (rows of q) against positions [0, n) of the tile. TT
// positions at a time, NG * TT <= 8 accumulators: up to eight FMA chains side
// by side, one K load feeding NG FMAs, and one transposed sum for them all
// (three heads, SmolLM2's and Llama 3's groups, use six of the eight).
template <int NG, typename T>
void tile_scores(const float* q, int64_t D, const T* k, int64_t k_st, int n, float* s,
                 TilePrefetch* ahead) {
  constexpr int TT = 8 / NG;
  int t = 0;
  {
    for (; t + TT <= n; t += TT) {
      for (int u = 0; u < TT; ++u) step(ahead);
      Vec8f a[8];  // indexed through static_for: see static_for.h
      aigc::static_for<8>([&](auto i) { a[i] = Vec8f{}; });
      if constexpr (NG == 1) {
        // One row after another, in address order: the hardware prefetcher
        // follows that stream (interleaving the 8 rows defeats it), and the
        // 8 independent chains still overlap out of order.
        aigc::static_for<TT>([&](auto u) {
          for (int64_t d = 0; d < D; d += 8)
            a[u] = fmadd(loadu(q + d), loadu(k + (t + u) * k_st + d), a[u]);
        });
      } else {
        for (int64_t d = 0; d < D; d += 8) {
          Vec8f qd[NG];  // NG + TT loads feed NG * TT FMAs
          aigc::static_for<NG>([&](auto j) {
            Vec8f y = loadu(q + j * D + d);
            if constexpr (TT > 1) in_register(y);
            qd[j] = y;
          });
          aigc::static_for<TT>([&](auto u) {
            Vec8f x = loadu(k + (t + u) * k_st + d);
            in_register(x);
            aigc::static_for<NG>([&](auto j) { a[u * NG + j] = fmadd(qd[j], x, a[u * NG + j]); });
          });
        }
      }
      float sums[8];
      hsum8(a, sums);
      for (int u = 0; u < TT; ++u)
        for (int j = 0; j < NG; ++j) s[j * kTile + t + u] = sums[u * NG + j];
    }
  }
  for (; t < n; ++t) {
    step(ahead);
    const T* k0 = k + t * k_st;
    Vec8f a0[NG];
    for (int j = 0; j < NG; ++j) a0[j] = Vec8f{};
    for (int64_t d = 0; d < D; d += 8) {
      const Vec8f x0 = loadu(k0 + d);
      for (int j = 0; j < NG; ++j) a0[j] = fmadd(loadu(q + j * D + d), x0, a0[j]);
    }
    for (int j = 0; j < NG; ++j) s[j * kTile + t] = hsum(a0[j]);
  }
}

#ifdef __AVX512F__
#define AIGC_ATTN_AVX512 1
// Scores of NH heads (rows 0 .. NH-1 of q; two or three) against positions
// [0, n) of the tile, for D = 16 * DZ: the heads' q held in NH * DZ zmm
// registers, so the K rows can be read one after another in address order, a
// stream the hardware prefetcher follows, with TT positions x NH heads of FMA
// chains in flight (as many positions as the 32 registers leave room for).
// Written for GCC as tile_scores_quad is.
template <int NH, int DZ, typename T>
void tile_scores_heads(const float* q, const T* k, int64_t k_st, int n, float* s,
                       TilePrefetch* ahead) {
  using aigc::static_for;
  constexpr int64_t kD = 16 * DZ;
  constexpr int TT = NH * DZ + 4 * NH <= 28 ? 4 : NH * DZ + 2 * NH <= 28 ? 2 : 1;
  __m512 qz[NH][DZ];
  static_for<NH>([&](auto j) {
    static_for<DZ>([&](auto c) { qz[j][c] = _mm512_loadu_ps(q + j * kD + 16 * c); });
  });
  // Positions [t, t + R), each row whole before the next.
  auto rows = [&]<int R>(int t) {
    __m512 a[R][NH];
    static_for<R>([&](auto u) {
      step(ahead);
      const T* row = k + (t + u) * k_st;
      static_for<NH>([&](auto j) { a[u][j] = _mm512_setzero_ps(); });
      static_for<DZ>([&](auto c) {
        __m512 x = loadu16(row + 16 * c);
        in_register(x);
        static_for<NH>([&](auto j) { a[u][j] = _mm512_fmadd_ps(qz[j][c], x, a[u][j]); });
      });
    });
    static_for<R>([&](auto u) {
      static_for<NH>([&](auto j) { s[j * kTile + t + u] = hsum(a[u][j]); });
    });
  };
  int t = 0;
  for (; t + TT <= n; t += TT) rows.template operator()<TT>(t);
  for (; t < n; ++t) rows.template operator()<1>(t);
}

// acc[j] += sum_t p[j][t] * v_t for NH heads (rows 0 .. NH-1 of acc and p; two
// or three), D = 16 * DZ: the NH * DZ accumulators stay in registers for the
// whole tile, and the rows are read whole in address order.
template <int NH, int DZ, typename T>
void tile_pv_heads(float* acc, const T* v, int64_t v_st, int n, const float* p,
                   TilePrefetch* ahead) {
  using aigc::static_for;
  constexpr int64_t kD = 16 * DZ;
  __m512 a[NH][DZ];
  static_for<NH>([&](auto j) {
    static_for<DZ>([&](auto c) { a[j][c] = _mm512_loadu_ps(acc + j * kD + 16 * c); });
  });
  for (int t = 0; t < n; ++t) {
    step(ahead);
    const T* row = v + t * v_st;
    __m512 pt[NH];
    static_for<NH>([&](auto j) { pt[j] = _mm512_set1_ps(p[j * kTile + t]); });
    static_for<DZ>([&](auto c) {
      __m512 x = loadu16(row + 16 * c);
      in_register(x);
      static_for<NH>([&](auto j) { a[j][c] = _mm512_fmadd_ps(pt[j], x, a[j][c]); });
    });
  }
  static_for<NH>([&](auto j) {
    static_for<DZ>([&](auto c) { _mm512_storeu_ps(acc + j * kD + 16 * c, a[j][c]); });
  });
}

// The head sizes the register-blocked AVX-512 paths are built for.
inline bool zmm_rows(int64_t D) { return D == 64 || D == 80 || D == 96 || D == 128; }

// Calls f.template operator()<DZ>() with DZ = D / 16, the zmm registers a row.
template <typename F>
void with_zmm_row(int64_t D, F&& f) {
  switch (D) {
    case 64: f.template operator()<4>(); break;
    case 80: f.template operator()<5>(); break;
    case 96: f.template operator()<6>(); break;
    default: f.template operator()<8>(); break;  // 128
  }
}

// The 8 horizontal sums of a[0..7], in order.
inline void z_sums8(const __m512* a, float* out) {
  Vec8f halves[8];
  for (int i = 0; i < 8; ++i) halves[i] = fold(a[i]);
  hsum8(halves, out);
}

// Scores of four heads (rows 0-3 of q) against positions [0, n) of the
// tile, all four in one pass over K, two rows at a time: heads 0 and 1 keep
// q in registers, heads 2 and 3 read theirs from L1 (all four q and the
// eight accumulators would need 4 * DZ + 8 of the 32 registers).
// Written for GCC's register allocation (see static_for.h): offsets from q
// are constants (with D at run time GCC keeps a pointer per chunk of heads 2
// and 3 and spills zmm registers in the loop) and each loaded vector is
// pinned to a register (else folded into every FMA that uses it, one load
// each).
template <int DZ, typename T>
void tile_scores_quad(const float* q, const T* k, int64_t k_st, int n, float* s,
                      TilePrefetch* ahead) {
  using aigc::static_for;
  constexpr int64_t kD = 16 * DZ;
  __m512 qz[2][DZ];
  static_for<DZ>([&](auto c) {
    qz[0][c] = _mm512_loadu_ps(q + 16 * c);
    qz[1][c] = _mm512_loadu_ps(q + kD + 16 * c);
  });
  const float* q2 = q + 2 * kD;
  const float* q3 = q + 3 * kD;
  for (int t = 0; t < n; t += 2) {
    const bool two = t + 1 < n;
    step(ahead);
    if (two) step(ahead);
    const T* r0 = k + t * k_st;
    const T* r1 = two ? r0 + k_st : r0;  // a lone last row is scored twice, kept once
    __m512 a[8];  // [row][head]
    static_for<8>([&](auto i) { a[i] = _mm512_setzero_ps(); });
    static_for<DZ>([&](auto c) {
      __m512 x0 = loadu16(r0 + 16 * c), x1 = loadu16(r1 + 16 * c);
      in_register(x0);
      in_register(x1);
      a[0] = _mm512_fmadd_ps(qz[0][c], x0, a[0]);
      a[1] = _mm512_fmadd_ps(qz[1][c], x0, a[1]);
      a[4] = _mm512_fmadd_ps(qz[0][c], x1, a[4]);
      a[5] = _mm512_fmadd_ps(qz[1][c], x1, a[5]);
      __m512 y2 = _mm512_loadu_ps(q2 + 16 * c), y3 = _mm512_loadu_ps(q3 + 16 * c);
      in_register(y2);
      in_register(y3);
      a[2] = _mm512_fmadd_ps(y2, x0, a[2]);
      a[3] = _mm512_fmadd_ps(y3, x0, a[3]);
      a[6] = _mm512_fmadd_ps(y2, x1, a[6]);
      a[7] = _mm512_fmadd_ps(y3, x1, a[7]);
    });
    float sums[8];
    z_sums8(a, sums);
    for (int u = 0; u < (two ? 2 : 1); ++u)
      for (int j = 0; j < 4; ++j) s[j * kTile + t + u] = sums[u * 4 + j];
  }
}

// acc[j] += sum_t p[j][t] * v_t for four heads in one pass over V, two rows
// at a time: heads 0 and 1 accumulate in registers, heads 2 and 3 in L1.
// (Heads 0-1 and then 2-3 in two passes, all accumulators in registers, is
// faster in L1 but slower from memory, where the kernel's time goes.)
template <int DZ, typename T>
void tile_pv_quad(float* acc, const T* v, int64_t v_st, int n, const float* p,
                  TilePrefetch* ahead) {
  using aigc::static_for;
  constexpr int64_t kD = 16 * DZ;  // constant offsets, as in tile_scores_quad
  __m512 az[2][DZ];
  static_for<2>([&](auto j) {
    static_for<DZ>([&](auto c) { az[j][c] = _mm512_loadu_ps(acc + j * kD + 16 * c); });
  });
  float* acc2 = acc + 2 * kD;
  float* acc3 = acc + 3 * kD;
  // A lone last row pairs with a row of zeros (weight 0 on a copy of itself
  // would turn an inf in it into NaN).
  static const T zero_row[16 * DZ] = {};
  for (int t = 0; t < n; t += 2) {
    const bool two = t + 1 < n;
    step(ahead);
    if (two) step(ahead);
    const T* r0 = v + t * v_st;
    const T* r1 = two ? r0 + v_st : zero_row;
    __m512 p0[4], p1[4];
    static_for<4>([&](auto j) {
      p0[j] = _mm512_set1_ps(p[j * kTile + t]);
      p1[j] = _mm512_set1_ps(two ? p[j * kTile + t + 1] : 0.0f);
    });
    static_for<DZ>([&](auto c) {
      __m512 x0 = loadu16(r0 + 16 * c), x1 = loadu16(r1 + 16 * c);
      in_register(x0);
      in_register(x1);
      az[0][c] = _mm512_fmadd_ps(p1[0], x1, _mm512_fmadd_ps(p0[0], x0, az[0][c]));
      az[1][c] = _mm512_fmadd_ps(p1[1], x1, _mm512_fmadd_ps(p0[1], x0, az[1][c]));
      const __m512 b2 = _mm512_loadu_ps(acc2 + 16 * c), b3 = _mm512_loadu_ps(acc3 + 16 * c);
      _mm512_storeu_ps(acc2 + 16 * c, _mm512_fmadd_ps(p1[2], x1, _mm512_fmadd_ps(p0[2], x0, b2)));
      _mm512_storeu_ps(acc3 + 16 * c, _mm512_fmadd_ps(p1[3], x1, _mm512_fmadd_ps(p0[3], x0, b3)));
    });
  }
  static_for<2>([&](auto j) {
    static_for<DZ>([&](auto c) { _mm512_storeu_ps(acc + j * kD + 16 * c, az[j][c]); });
  });
}

// A tile's scores and PV by head blocks (g..g + block - 1) of block =
// head_block(G, D) heads: quads (tile_scores_quad, tile_pv_quad), triples or
// pairs (tile_scores_heads, tile_pv_heads).
template <typename T>
void tile_scores_blocks(int block, const float* q, int64_t G, int64_t D, const T* k,
                        int64_t k_st, int n, float* s, TilePrefetch* ahead) {
  with_zmm_row(D, [&]<int DZ>() {
    for (int64_t g = 0; g < G; g += block) {
      if (block == 4) tile_scores_quad<DZ>(q + g * D, k, k_st, n, s + g * kTile, ahead);
      if (block == 3) tile_scores_heads<3, DZ>(q + g * D, k, k_st, n, s + g * kTile, ahead);
      if (block == 2) tile_scores_heads<2, DZ>(q + g * D, k, k_st, n, s + g * kTile, ahead);
    }
  });
}
template <typename T>
void tile_pv_blocks(int block, float* acc, int64_t G, int64_t D, const T* v, int64_t v_st, int n,
                    const float* p, TilePrefetch* ahead) {
  with_zmm_row(D, [&]<int DZ>() {
    for (int64_t g = 0; g < G; g += block) {
      if (block == 4) tile_pv_quad<DZ>(acc + g * D, v, v_st, n, p + g * kTile, ahead);
      if (block == 3) tile_pv_heads<3, DZ>(acc + g * D, v, v_st, n, p + g * kTile, ahead);
      if (block == 2) tile_pv_heads<2, DZ>(acc + g * D, v, v_st, n, p + g * kTile, ahead);
    }
  });
}
#endif

// How many query heads the AVX-512 passes take at once (0: none apply, D
// has no register blocking or G is neither even nor a multiple of 3): 4 where
// G is a multiple of 4, one pass over K and one over V a tile for every four
// heads (pairs with a PV pass a head make two passes over K and four over V),
// else 3 (SmolLM2's groups) or 2.
inline int head_block(int64_t G, int64_t D) {
#ifdef AIGC_ATTN_AVX512
  if (!zmm_rows(D)) return 0;
  return G % 4 == 0 ? 4 : G % 3 == 0 ? 3 : G % 2 == 0 ? 2 : 0;
#else
  (void)G, (void)D;
  return 0;
#endif
}

// acc[j] += sum_t p[j][t] * v_t over columns [d0, d0 + 8*DB) for NG heads.
template <int NG, int DB, typename T>
void tile_pv_block(float* acc, int64_t D, const T* v, int64_t v_st, int n, const float* p,
                   int64_t d0, TilePrefetch* ahead) {
  using aigc::static_for;  // see static_for.h: the accumulators stay in registers
  Vec8f a[NG][DB];
  static_for<NG>([&](auto j) {
    static_for<DB>([&](auto c) { a[j][c] = loadu(acc + j * D + d0 + 8 * c); });
  });
  for (int t = 0; t < n; ++t) {
    step(ahead);
    const T* row = v + t * v_st + d0;
    Vec8f x[DB];
    static_for<DB>([&](auto c) {
      Vec8f xc = loadu(row + 8 * c);
      if constexpr (NG > 1) in_register(xc);
      x[c] = xc;
    });
    static_for<NG>([&](auto j) {
      const Vec8f pj = splat(p[j * kTile + t]);
      static_for<DB>([&](auto c) { a[j][c] = fmadd(pj, x[c], a[j][c]); });
    });
  }
  static_for<NG>([&](auto j) {
    static_for<DB>([&](auto c) { storeu(acc + j * D + d0 + 8 * c, a[j][c]); });
  });
}

template <int NG, typename T>
void tile_pv(float* acc, int64_t D, const T* v, int64_t v_st, int n, const float* p,
             TilePrefetch* ahead) {
  // One head: a block as wide as the registers allow (a whole 128-wide row
  // with 32 of them), so V is read row after row in address order, a stream
  // the hardware prefetcher follows. Several heads: 4 to 8 FMA chains.
  constexpr int DB = NG > 1 ? 2 : kVectorRegisters >= 32 ? 16 : 4;
  int64_t d = 0;
  // The first block of columns steps the prefetches: one step per row a pass.
  for (; d + 8 * DB <= D; d += 8 * DB)
    tile_pv_block<NG, DB>(acc, D, v, v_st, n, p, d, d == 0 ? ahead : nullptr);
  for (; d < D; d += 8) tile_pv_block<NG, 1>(acc, D, v, v_st, n, p, d, d == 0 ? ahead : nullptr);
}

// Calls f.template operator()<NG>(g0) for head groups of at most 4.
template <typename F>
void for_head_groups(int64_t G, F&& f) {
  int64_t g = 0;
  for (; g + 4 <= G; g += 4) f.template operator()<4>(g);
  if (G - g == 3) f.template operator()<3>(g);
  if (G - g == 2) f.template operator()<2>(g);
  if (G - g == 1) f.template operator()<1>(g);
}

// Online softmax over one tile of scores (base 2): rescales l and acc by
// 2^(m_old - m_new) and turns the scores into p = 2^(s - m_new).
void tile_softmax(State& st, int64_t G, int64_t D, int n) {
  for (int64_t g = 0; g < G; ++g) {
    float* s = st.s.data() + g * kTile;
    for (int t = n; t < kTile; ++t) s[t] = kNegInf;  // pad the vector tail
    Vec8f mx = loadu(s);
    for (int t = 8; t < kTile; t += 8) mx = vmax(mx, loadu(s + t));
    const float m_new = std::max(st.m[g], hmax(mx));
    const Vec8f vm = splat(m_new);
    Vec8f sum = Vec8f{};
    for (int t = 0; t < kTile; t += 8) {
      const Vec8f p = exp2_nonpos_ps(loadu(s + t) - vm);
      storeu(s + t, p);
      sum += p;
    }
    const float alpha = std::exp2(st.m[g] - m_new);  // 0 on the first tile
    st.l[g] = st.l[g] * alpha + hsum(sum);
    st.m[g] = m_new;
    if (alpha != 1.0f) {
      float* a = st.acc.data() + g * D;
      for (int64_t d = 0; d < D; ++d) a[d] *= alpha;
    }
  }
}

// The rows of the tile at position t of `it` in one cache (base pointer and
// strides in elements), continuing into `next` (the item this thread runs
// next, or null) past the end of `it`: the requests do not stop at an item
// boundary, so the next item starts with its first tiles in L2.
template <typename T>
TilePrefetch::Rows rows_ahead(const Item& it, const Item* next, int64_t t, const T* cache,
                              int64_t sb, int64_t sh, int64_t st) {
  const Item* src = &it;
  if (t >= it.t1 && next != nullptr) {
    t = next->t0 + (t - it.t1);
    src = next;
  }
  const int n = static_cast<int>(std::clamp<int64_t>(src->t1 - t, 0, kTile));
  const T* first = cache + src->b * sb + src->kvh * sh + t * st;
  return {reinterpret_cast<const char*>(first), st * static_cast<int64_t>(sizeof(T)), n};
}

// next_item(): the item this thread runs after `it` (null if none), asked
// only once the requests reach past the end of `it`.
template <typename T, typename NextItem>
void run_item(const Problem& P, const Item& it, const NextItem& next_item, const T* q, const T* k,
              const T* v, T* out, float* lse, float* ws, State& st) {
  const int64_t G = P.G, D = P.D;
  st.reset(G, D);
  const float qscale = P.scale * kLog2e;
  for (int64_t g = 0; g < G; ++g) {
    const T* qr = q + it.b * P.q_sb + (it.kvh * G + g) * P.q_sh;
    for (int64_t d = 0; d < D; ++d) st.q[g * D + d] = static_cast<float>(qr[d]) * qscale;
  }
  const T* kb = k + it.b * P.k_sb + it.kvh * P.k_sh;
  const T* vb = v + it.b * P.v_sb + it.kvh * P.v_sh;
  // GQA runs by head quads where AVX-512 allows (G a multiple of 4), else by
  // head triples or pairs, q and the accumulators in registers, rows in
  // address order; else scores by interleaved rows in head groups and PV a
  // head at a time.
  const int block = head_block(G, D);
  const int64_t score_passes = block > 0 ? G / block : (G + 3) / 4;
  const int64_t pv_passes = block > 0 ? G / block : kVectorRegisters >= 32 ? G : (G + 3) / 4;
  for (int64_t t0 = it.t0; t0 < it.t1; t0 += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, it.t1 - t0));
    std::optional<TilePrefetch> requests;  // GQA only
    if (G > 1) {
      const int64_t t_ahead = t0 + kPrefetchTiles * kTile;
      const Item* next = t_ahead >= it.t1 ? next_item() : nullptr;
      requests.emplace(rows_ahead(it, next, t_ahead, k, P.k_sb, P.k_sh, P.k_st),
                       rows_ahead(it, next, t_ahead, v, P.v_sb, P.v_sh, P.v_st),
                       D * static_cast<int64_t>(sizeof(T)), (score_passes + pv_passes) * n);
    }
    TilePrefetch* ahead = requests ? &*requests : nullptr;
    const T* kt = kb + t0 * P.k_st;
    const T* vt = vb + t0 * P.v_st;
#ifdef AIGC_ATTN_AVX512
    if (block > 0) tile_scores_blocks(block, st.q.data(), G, D, kt, P.k_st, n, st.s.data(), ahead);
#endif
    if (block == 0) {
      for_head_groups(G, [&]<int NG>(int64_t g) {
        tile_scores<NG>(st.q.data() + g * D, D, kt, P.k_st, n, st.s.data() + g * kTile, ahead);
      });
    }
    tile_softmax(st, G, D, n);
#ifdef AIGC_ATTN_AVX512
    if (block > 0) {
      tile_pv_blocks(block, st.acc.data(), G, D, vt, P.v_st, n, st.s.data(), ahead);
      continue;
    }
#endif
    // One head at a time where a whole row fits in the registers: each pass
    // then reads the V tile in address order (the first from memory, the
    // others from L1), which beats heads in groups sharing each load but
    // walking the tile column block by column block: that order is no stream
    // the hardware prefetcher follows.
    auto pv = [&]<int NG>(int64_t g) {
      tile_pv<NG>(st.acc.data() + g * D, D, vt, P.v_st, n, st.s.data() + g * kTile, ahead);
    };
    if constexpr (kVectorRegisters >= 32) {
      for (int64_t g = 0; g < G; ++g) pv.template operator()<1>(g);
    } else if (D == 64) {  // a 64-float row is 8 of the 16 registers
      for (int64_t g = 0; g < G; ++g)
        tile_pv_block<1, 8>(st.acc.data() + g * D, D, vt, P.v_st, n, st.s.data() + g * kTile, 0,
                            g == 0 ? ahead : nullptr);
    } else {
      for_head_groups(G, pv);
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = it.kvh * G + g;
    if (it.slot < 0) {  // the whole sequence: normalise and write
      const float inv = 1.0f / st.l[g];
      T* o = out + (it.b * P.H + h) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = static_cast<T>(st.acc[g * D + d] * inv);
      lse[it.b * P.H + h] = (st.m[g] + std::log2(st.l[g])) * kLn2;
    } else {  // a chunk: keep (m, l, acc) for the merge
      float* w = ws + (it.slot * G + g) * (D + 2);
      w[0] = st.m[g];
      w[1] = st.l[g];
      std::copy(st.acc.begin() + g * D, st.acc.begin() + (g + 1) * D, w + 2);
    }
  }
}

// Merges the chunk states of head h of sequence b (chunks at slots first..).
template <typename T>
void merge_head(const Problem& P, int64_t b, int64_t h, int64_t first, int64_t n_chunks,
                const float* ws, T* out, float* lse) {
  const int64_t G = P.G, D = P.D, g = h % G;
  auto state = [&](int64_t c) { return ws + ((first + c * P.Hkv) * G + g) * (D + 2); };
  float m = kNegInf;
  for (int64_t c = 0; c < n_chunks; ++c) m = std::max(m, state(c)[0]);
  float l = 0.0f;
  std::vector<float> acc(D, 0.0f);
  for (int64_t c = 0; c < n_chunks; ++c) {
    const float* w = state(c);
    const float f = std::exp2(w[0] - m);
    l += w[1] * f;
    for (int64_t d = 0; d < D; ++d) acc[d] += w[2 + d] * f;
  }
  T* o = out + (b * P.H + h) * D;
  for (int64_t d = 0; d < D; ++d) o[d] = static_cast<T>(acc[d] / l);
  lse[b * P.H + h] = (m + std::log2(l)) * kLn2;
}

// Work items: (sequence, chunk of kChunk positions, KV head). Many small items
// keep both threads busy to the end of a call on a shared machine (where one
// core often runs slower for a while), and cost little, since each thread's
// requests run on into the item it claims next (no cold first tiles per item).
template <typename T>
void decode_attention_cpu_impl(const Problem& P, const std::vector<int64_t>& lens, const T* q,
                               const T* k, const T* v, T* out, float* lse) {
  // Items in (b, chunk, kvh) order: the chunks of one (b, h) sit Hkv slots apart.
  std::vector<Item> items;
  std::vector<int64_t> first_slot(P.B, -1), n_chunks(P.B, 0);
  int64_t slots = 0;
  for (int64_t b = 0; b < P.B; ++b) {
    n_chunks[b] = (lens[b] + kChunk - 1) / kChunk;
    const bool split = n_chunks[b] > 1;
    if (split) first_slot[b] = slots;
    for (int64_t c = 0; c < n_chunks[b]; ++c)
      for (int64_t kvh = 0; kvh < P.Hkv; ++kvh)
        items.push_back({b, kvh, c * kChunk, std::min(lens[b], (c + 1) * kChunk),
                         split ? slots++ : -1});
    if (lens[b] == 0) {  // empty sequence: out = 0, lse = -inf
      std::fill(out + b * P.H * P.D, out + (b + 1) * P.H * P.D, static_cast<T>(0.0f));
      std::fill(lse + b * P.H, lse + (b + 1) * P.H, kNegInf);
    }
  }
  std::vector<float> ws(slots * P.G * (P.D + 2));
  // Items are handed out dynamically: with a few long items per thread, a
  // static split waits for whichever thread was slowed. An item's requests
  // run on into the item its thread claims next: requesting items[i + 1]
  // would fetch rows another thread is already reading, and every item would
  // start cold.
  const int64_t n_items = static_cast<int64_t>(items.size());
  int64_t elements = 0;
  for (const Item& it : items) elements += (it.t1 - it.t0) * P.D;
  std::vector<State> states(at::get_num_threads());
  aigc::parallel_items_claiming_next(
      n_items, elements, kSerialElements, [&](int64_t i, int thread, const auto& claim_next) {
        const auto next_item = [&]() -> const Item* {
          const int64_t j = claim_next();
          return j >= 0 ? &items[j] : nullptr;
        };
        run_item(P, items[i], next_item, q, k, v, out, lse, ws.data(), states[thread]);
      },
      aigc::Team::kKernelThreads);
  if (slots == 0) return;
  // The merges read (D + 2) floats a chunk: little work, on the same threads.
  aigc::parallel_items(
      P.B * P.H, slots * P.G * (P.D + 2), kSerialElements,
      [&](int64_t i, int) {
        const int64_t b = i / P.H, h = i % P.H;
        if (n_chunks[b] > 1)
          merge_head(P, b, h, first_slot[b] + h / P.G, n_chunks[b], ws.data(), out, lse);
      },
      aigc::Team::kKernelThreads);
}

}  // namespace

namespace aigc {

// Dtype, shape, layout and device checks shared with the CUDA binding.
void check_decode_attention(const at::Tensor& q, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, const at::Tensor& seq_lens, double scale) {
  auto check = [](bool ok, const auto&... msg) {
    TORCH_CHECK_VALUE(ok, "aigc.decode_attention: ", msg...);
  };
  const auto dt = q.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf,
                   "aigc.decode_attention: q must be float32, bfloat16 or float16, got ", dt);
  TORCH_CHECK_TYPE(k_cache.scalar_type() == dt && v_cache.scalar_type() == dt,
                   "aigc.decode_attention: q, k_cache and v_cache must share a dtype, got ", dt,
                   ", ", k_cache.scalar_type(), ", ", v_cache.scalar_type());
  TORCH_CHECK_TYPE(seq_lens.scalar_type() == at::kInt || seq_lens.scalar_type() == at::kLong,
                   "aigc.decode_attention: seq_lens must be int32 or int64, got ",
                   seq_lens.scalar_type());
  check(q.dim() == 3, "q must have shape [B, H, D], got ", q.sizes());
  check(k_cache.dim() == 4, "k_cache must have shape [B, Hkv, Tmax, D], got ", k_cache.sizes());
  check(v_cache.sizes() == k_cache.sizes(), "v_cache must have the shape of k_cache ",
        k_cache.sizes(), ", got ", v_cache.sizes());
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), Hkv = k_cache.size(1);
  check(k_cache.size(0) == B && k_cache.size(3) == D, "k_cache shape ", k_cache.sizes(),
        " does not match q shape ", q.sizes(), " (want [B, Hkv, Tmax, D])");
  check(Hkv > 0 && H % Hkv == 0, "the query heads H = ", H,
        " must be a multiple of the KV heads Hkv = ", Hkv);
  check(D > 0 && D % 8 == 0, "head size D = ", D, " must be a positive multiple of 8");
  check(seq_lens.dim() == 1 && seq_lens.size(0) == B, "seq_lens must have shape [", B, "], got ",
        seq_lens.sizes());
  for (const auto* t : {&k_cache, &v_cache, &seq_lens})
    check(t->device() == q.device(), "all inputs must be on one device: q is on ", q.device(),
          ", another is on ", t->device());
  check(q.stride(2) == 1 && k_cache.stride(3) == 1 && v_cache.stride(3) == 1,
        "the last dimension (D) of q, k_cache and v_cache must be contiguous; call .contiguous()");
  check(std::isfinite(scale), "scale must be finite, got ", scale);
}

}  // namespace aigc

namespace {

std::tuple<at::Tensor, at::Tensor> decode_attention_lse_cpu(const at::Tensor& q,
                                                            const at::Tensor& k_cache,
                                                            const at::Tensor& v_cache,
                                                            const at::Tensor& seq_lens,
                                                            double scale) {
  aigc::check_decode_attention(q, k_cache, v_cache, seq_lens, scale);
  const int64_t H = q.size(1), Hkv = k_cache.size(1);
  const Problem P{q.size(0),         H,
                  Hkv,               H / Hkv,
                  q.size(2),         k_cache.size(2),
                  q.stride(0),       q.stride(1),
                  k_cache.stride(0), k_cache.stride(1),
                  k_cache.stride(2), v_cache.stride(0),
                  v_cache.stride(1), v_cache.stride(2),
                  static_cast<float>(scale)};
  const at::Tensor lens_t = seq_lens.to(at::kLong).contiguous();
  std::vector<int64_t> lens(lens_t.data_ptr<int64_t>(), lens_t.data_ptr<int64_t>() + P.B);
  for (int64_t b = 0; b < P.B; ++b)
    TORCH_CHECK_VALUE(lens[b] >= 0 && lens[b] <= P.Tmax, "aigc.decode_attention: seq_lens[", b,
                      "] = ", lens[b], " is outside [0, Tmax = ", P.Tmax, "]");
  at::Tensor out = at::empty({P.B, P.H, P.D}, q.options());
  at::Tensor lse = at::empty({P.B, P.H}, q.options().dtype(at::kFloat));
  auto run = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    decode_attention_cpu_impl<T>(P, lens, q.data_ptr<T>(), k_cache.data_ptr<T>(),
                                 v_cache.data_ptr<T>(), out.data_ptr<T>(),
                                 lse.data_ptr<float>());
  };
  switch (q.scalar_type()) {
    case at::kFloat: run(static_cast<float*>(nullptr)); break;
    case at::kBFloat16: run(static_cast<c10::BFloat16*>(nullptr)); break;
    default: run(static_cast<c10::Half*>(nullptr)); break;
  }
  return {out, lse};
}

at::Tensor decode_attention_cpu(const at::Tensor& q, const at::Tensor& k_cache,
                                const at::Tensor& v_cache, const at::Tensor& seq_lens,
                                double scale) {
  return std::get<0>(decode_attention_lse_cpu(q, k_cache, v_cache, seq_lens, scale));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(aigc, m) {
  m.def(
      "decode_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor seq_lens, float scale) "
      "-> Tensor");
  m.def(
      "decode_attention_lse(Tensor q, Tensor k_cache, Tensor v_cache, Tensor seq_lens, "
      "float scale) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) {
  m.impl("decode_attention", &decode_attention_cpu);
  m.impl("decode_attention_lse", &decode_attention_lse_cpu);
}
