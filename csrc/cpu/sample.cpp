// aigc::sample on the CPU: temperature, repetition penalty, top-k, top-p,
// min-p and the draw, a few passes over each row and no sort.
//
// The law (shared with csrc/cuda/sample.cu and reference.py's sample):
//   x  = logits as float32; at the ids of prev_tokens, x / penalty if x > 0
//        else x * penalty (each id once, however often it repeats)
//   temperature 0: the token is argmax x (the lowest index among ties).
//   m  = max x, inv_t = min(1 / temperature, FLT_MAX) (float32, rounded once)
//   e  = exp_nonpos((x - m) * inv_t) in [0, 1], 1 at the max (e = [x == +inf]
//        when m is +inf: the +inf logits share the probability equally)
//   q  = floor(e * 2^40), the integer mass of each token
//   keep the tokens with e >= tau, tau = max of
//     top-k: the k-th largest e (ties with it are kept),
//     top-p: the largest v with mass(e >= v and in top-k) >= ceil(p * mass(top-k)),
//     min-p: min_p (e is the probability relative to the most likely token);
//   draw: r = floor(bits * S / 2^64), S = kept mass, bits = Philox(seed,
//        offset, row); the token is the first index whose running kept mass
//        exceeds r. Integer masses make every sum exact and every running sum
//        monotone, so the token is always kept and never depends on the order
//        of additions.
//
// Per row: one pass finds the max (and NaN), one computes e and its masses,
// and when top-k/top-p are on, a radix select on the bits of e over the
// entries above a cheap lower bound (one SIMD pass picks them), then one pass
// for the kept mass and a partial one for the draw. The logits are read in
// place; only a repetition penalty makes a float32 copy of the row.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/parallel_items.h"
#include "cpu/simd.h"
#include "kernels/philox.h"

namespace {

using aigc::bits_to_float;
using aigc::float_to_bits;
using aigc::mass_of;

constexpr int64_t kChunk = 1024;   // running-mass granularity of the draw
constexpr int kBins = 1024;        // radix-select bins: 10 of the 30 bits of e
constexpr int64_t kSlicesPerTask = 16;  // ~16K logits a task of a split row: worth a hand-off
constexpr float kInf = std::numeric_limits<float>::infinity();

struct RowParams {
  float temperature;
  int64_t top_k;
  float top_p;
  float min_p;
  uint64_t seed;
  uint64_t offset;
  uint64_t row_id;  // the row number keyed into the draw
  const int64_t* prev = nullptr;  // previous token ids of the row (or null)
  int64_t n_prev = 0;
  float penalty = 1.0f;
};

// Per-thread buffers, reused across the rows a thread samples.
struct Scratch {
  std::vector<float> e;             // e of one row (first the penalised x)
  std::vector<uint64_t> chunk_mass;  // kept mass of each kChunk slice
  std::vector<uint32_t> cand;        // radix-select candidates (keys)
  std::vector<uint32_t> stage;       // gather_at_least's packing buffer
  std::vector<float> block_max;      // maxima of 64-entry blocks (top-k bound)
};

uint32_t key_at(const float* e, int64_t i) { return float_to_bits(e[i]); }

// ------------------------------------------------------------- SIMD helpers --
#ifdef AIGC_SIMD_AVX2
using aigc::simd::hmax;
using aigc::simd::loadu;

// A product the compiler may not fuse with a following add (see philox.h).
inline __m256 mul_rn8(__m256 a, __m256 b) {
  __m256 p = _mm256_mul_ps(a, b);
  __asm__("" : "+x"(p));
  return p;
}

// aigc::exp_nonpos on 8 lanes: the same operations in the same order. Not
// simd::exp_ps: the draw must pick the token the CUDA kernel and the PyTorch
// reference pick, so e must have their bits (no FMA, philox.h's polynomial).
inline __m256 exp_nonpos8(__m256 x) {
  using namespace aigc::expc;
  const __m256 in_range = _mm256_cmp_ps(x, _mm256_set1_ps(kMin), _CMP_GE_OQ);
  x = _mm256_blendv_ps(_mm256_set1_ps(kMin), x, in_range);
  const __m256 n = _mm256_round_ps(mul_rn8(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_sub_ps(x, mul_rn8(n, _mm256_set1_ps(kC1)));
  r = _mm256_sub_ps(r, mul_rn8(n, _mm256_set1_ps(kC2)));
  const __m256 r2 = mul_rn8(r, r);
  __m256 p = _mm256_add_ps(mul_rn8(_mm256_set1_ps(kP0), r), _mm256_set1_ps(kP1));
  p = _mm256_add_ps(mul_rn8(p, r), _mm256_set1_ps(kP2));
  p = _mm256_add_ps(mul_rn8(p, r), _mm256_set1_ps(kP3));
  p = _mm256_add_ps(mul_rn8(p, r), _mm256_set1_ps(kP4));
  p = _mm256_add_ps(mul_rn8(p, r), _mm256_set1_ps(kP5));
  const __m256 y = _mm256_add_ps(_mm256_add_ps(mul_rn8(p, r2), r), _mm256_set1_ps(1.0f));
  const __m256i scale_bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(mul_rn8(y, _mm256_castsi256_ps(scale_bits)), in_range);
}

// Adds the masses floor(e * 2^40) of the lanes in `keep` as two int32 sums
// of 20-bit halves: e*2^20 = hi + frac exactly, and floor(frac*2^20) = lo.
inline void add_mass8(__m256 e, __m256i keep, __m256i& hi_sum, __m256i& lo_sum) {
  const __m256 f = _mm256_mul_ps(e, _mm256_set1_ps(1048576.0f));
  const __m256i hi = _mm256_cvttps_epi32(f);
  const __m256 frac = _mm256_sub_ps(f, _mm256_cvtepi32_ps(hi));
  const __m256i lo = _mm256_cvttps_epi32(_mm256_mul_ps(frac, _mm256_set1_ps(1048576.0f)));
  hi_sum = _mm256_add_epi32(hi_sum, _mm256_and_si256(hi, keep));
  lo_sum = _mm256_add_epi32(lo_sum, _mm256_and_si256(lo, keep));
}

inline uint64_t hsum_u32(__m256i v) {
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  uint64_t s = 0;
  for (uint32_t x : lanes) s += x;
  return s;
}

#endif

// ------------------------------------------------------------------ passes --

struct MaxResult {
  float max;
  bool has_nan;
};

// The max of a row (read as float32) and whether it holds a NaN; with
// `copy`, the float32 row is also stored there.
template <typename T>
MaxResult max_row(const T* x, int64_t V, float* copy) {
  float m = -kInf;
  bool nan = false;
  int64_t i = 0;
#ifdef AIGC_SIMD_AVX2
  // Four independent max chains: one would wait out vmaxps's latency each step.
  __m256 vmax[4], vnan[4];
  for (int k = 0; k < 4; ++k) vmax[k] = _mm256_set1_ps(-kInf), vnan[k] = _mm256_setzero_ps();
  for (; i + 32 <= V; i += 32) {
    for (int k = 0; k < 4; ++k) {
      const __m256 v = loadu(x + i + 8 * k);
      vnan[k] = _mm256_or_ps(vnan[k], _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      vmax[k] = _mm256_max_ps(vmax[k], v);
      if (copy != nullptr) _mm256_storeu_ps(copy + i + 8 * k, v);
    }
  }
  for (; i + 8 <= V; i += 8) {
    const __m256 v = loadu(x + i);
    vnan[0] = _mm256_or_ps(vnan[0], _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    vmax[0] = _mm256_max_ps(vmax[0], v);
    if (copy != nullptr) _mm256_storeu_ps(copy + i, v);
  }
  m = hmax(_mm256_max_ps(_mm256_max_ps(vmax[0], vmax[1]), _mm256_max_ps(vmax[2], vmax[3])));
  nan = _mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(vnan[0], vnan[1]),
                                        _mm256_or_ps(vnan[2], vnan[3]))) != 0;
#endif
  for (; i < V; ++i) {
    const float v = static_cast<float>(x[i]);
    nan |= v != v;
    m = std::max(m, v);
    if (copy != nullptr) copy[i] = v;
  }
  return {m, nan};
}

// The first i with x[i] == m (m is in the row).
template <typename T>
int64_t first_equal(const T* x, int64_t V, float m) {
  int64_t i = 0;
#ifdef AIGC_SIMD_AVX2
  const __m256 target = _mm256_set1_ps(m);
  for (; i + 8 <= V; i += 8) {
    const int hits = _mm256_movemask_ps(_mm256_cmp_ps(loadu(x + i), target, _CMP_EQ_OQ));
    if (hits != 0) return i + __builtin_ctz(hits);
  }
#endif
  while (static_cast<float>(x[i]) != m) ++i;
  return i;
}

// The number of kChunk slices of a row of V logits.
int64_t slice_count(int64_t V) { return (V + kChunk - 1) / kChunk; }

// Calls f(first, last) over ranges of a row's kChunk slices: split over the
// threads when the row is long and no loop over rows holds them (a batch
// smaller than the thread count). Each slice keeps its own integer mass, so
// no split can change a sum, a threshold or a token. On the decode kernels'
// threads (parallel_items.h): a server samples between decode steps, and an
// OpenMP team woken here would spin on into the next step's kernels.
template <typename F>
void for_slices(int64_t V, const F& f) {
  const int64_t slices = slice_count(V);
  aigc::parallel_items(
      (slices + kSlicesPerTask - 1) / kSlicesPerTask, slices, kSlicesPerTask + 1,
      [&](int64_t task, int) {
        f(task * kSlicesPerTask, std::min(slices, (task + 1) * kSlicesPerTask));
      },
      aigc::Team::kKernelThreads);
}

uint64_t total_mass(const uint64_t* chunk_mass, int64_t V) {
  uint64_t total = 0;
  for (int64_t c = 0; c < slice_count(V); ++c) total += chunk_mass[c];
  return total;
}

// e = exp_nonpos((x - m) * inv_t) into `e` (which may alias x); fills the
// mass of every kChunk slice and returns the row's total mass.
template <typename T>
uint64_t exp_row(const T* x, int64_t V, float m, float inv_t, float* e, uint64_t* chunk_mass) {
  for_slices(V, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const int64_t c0 = c * kChunk, c1 = std::min(V, c0 + kChunk);
      uint64_t s = 0;
      int64_t i = c0;
#ifdef AIGC_SIMD_AVX2
      const __m256 vm = _mm256_set1_ps(m), vinv = _mm256_set1_ps(inv_t);
      const __m256i all = _mm256_set1_epi32(-1);
      __m256i hi = _mm256_setzero_si256(), lo = _mm256_setzero_si256();
      for (; i + 8 <= c1; i += 8) {
        const __m256 d = _mm256_mul_ps(_mm256_sub_ps(loadu(x + i), vm), vinv);
        const __m256 v = exp_nonpos8(d);
        _mm256_storeu_ps(e + i, v);
        add_mass8(v, all, hi, lo);
      }
      s = (hsum_u32(hi) << 20) + hsum_u32(lo);
#endif
      for (; i < c1; ++i) {
        e[i] = aigc::exp_nonpos((static_cast<float>(x[i]) - m) * inv_t);
        s += mass_of(e[i]);
      }
      chunk_mass[c] = s;
    }
  });
  return total_mass(chunk_mass, V);
}

// When the max is +inf, the +inf entries share the probability equally.
template <typename T>
uint64_t inf_row(const T* x, int64_t V, float* e, uint64_t* chunk_mass) {
  uint64_t total = 0;
  for (int64_t c0 = 0, c = 0; c0 < V; c0 += kChunk, ++c) {
    uint64_t s = 0;
    for (int64_t i = c0; i < std::min(V, c0 + kChunk); ++i) {
      e[i] = static_cast<float>(x[i]) == kInf ? 1.0f : 0.0f;
      s += mass_of(e[i]);
    }
    chunk_mass[c] = s;
    total += s;
  }
  return total;
}

// The mass of the entries with e >= tau (tau > 0), per kChunk slice and total.
uint64_t kept_mass(const float* e, int64_t V, uint32_t tau, uint64_t* chunk_mass) {
  for_slices(V, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const int64_t c0 = c * kChunk, c1 = std::min(V, c0 + kChunk);
      uint64_t s = 0;
      int64_t i = c0;
#ifdef AIGC_SIMD_AVX2
      const __m256i below = _mm256_set1_epi32(static_cast<int32_t>(tau - 1));
      __m256i hi = _mm256_setzero_si256(), lo = _mm256_setzero_si256();
      for (; i + 8 <= c1; i += 8) {
        const __m256 v = _mm256_loadu_ps(e + i);
        const __m256i keep = _mm256_cmpgt_epi32(_mm256_castps_si256(v), below);
        add_mass8(v, keep, hi, lo);
      }
      s = (hsum_u32(hi) << 20) + hsum_u32(lo);
#endif
      for (; i < c1; ++i)
        if (key_at(e, i) >= tau) s += mass_of(e[i]);
      chunk_mass[c] = s;
    }
  });
  return total_mass(chunk_mass, V);
}

// The first index whose running kept mass exceeds r (r < total kept mass).
int64_t draw(const float* e, int64_t V, uint32_t tau, const uint64_t* chunk_mass, uint64_t r) {
  uint64_t run = 0;
  for (int64_t c0 = 0, c = 0; c0 < V; c0 += kChunk, ++c) {
    if (run + chunk_mass[c] <= r) {
      run += chunk_mass[c];
      continue;
    }
    for (int64_t i = c0; i < std::min(V, c0 + kChunk); ++i) {
      if (key_at(e, i) < tau) continue;
      run += mass_of(e[i]);
      if (run > r) return i;
    }
  }
  TORCH_INTERNAL_ASSERT(false, "aigc.sample: draw past the kept mass");
  return -1;
}

// ----------------------------------------------------------- radix select --
// All thresholds are "the largest key v such that the weight of the keys >= v
// reaches a target", weight = count (top-k) or mass (top-p). Keys are the
// bits of e >= 0, ordered like the values. A cheap lower bound on the answer
// first drops the entries that cannot matter (usually most of the row); the
// rest are binned by the top 10 of their 30 significant bits, then the chosen
// bin by the next 10, then by the last 10.

#ifdef AIGC_SIMD_AVX2
// For each 8-bit lane mask, the lane indices of its set bits first: with
// _mm256_permutevar8x32_epi32 it packs the selected lanes to the front.
struct PackTable {
  alignas(32) uint32_t idx[256][8];
  PackTable() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int lane = 0; lane < 8; ++lane)
        if (m & (1 << lane)) idx[m][n++] = lane;
      while (n < 8) idx[m][n++] = 0;
    }
  }
};
const PackTable kPack;
#endif

// Keys of the entries with key >= lo (lo > 0), in index order. Branch-free
// left-packing: the hits are unpredictable, so branches would mispredict.
// `buf` is a grow-only staging buffer (resizing `out` would zero-fill it).
void gather_at_least(const float* e, int64_t V, uint32_t lo, std::vector<uint32_t>& buf,
                     std::vector<uint32_t>& out) {
  if (static_cast<int64_t>(buf.size()) < V + 8) buf.resize(V + 8);
  uint32_t* dst = buf.data();
  int64_t i = 0;
#ifdef AIGC_SIMD_AVX2
  const __m256i below = _mm256_set1_epi32(static_cast<int32_t>(lo - 1));
  for (; i + 8 <= V; i += 8) {
    const __m256i k = _mm256_castps_si256(_mm256_loadu_ps(e + i));
    const int bits = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(k, below)));
    const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.idx[bits]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_permutevar8x32_epi32(k, perm));
    dst += __builtin_popcount(bits);
  }
#endif
  for (; i < V; ++i)
    if (key_at(e, i) >= lo) *dst++ = key_at(e, i);
  out.assign(buf.data(), dst);
}

// The maximum of every 64-entry block of e.
void block_maxima(const float* e, int64_t V, std::vector<float>& out) {
  constexpr int64_t kBlock = 64;
  out.resize((V + kBlock - 1) / kBlock);
  for (int64_t b0 = 0, b = 0; b0 < V; b0 += kBlock, ++b) {
    const int64_t b1 = std::min(V, b0 + kBlock);
    float m = 0.0f;
    int64_t i = b0;
#ifdef AIGC_SIMD_AVX2
    __m256 vm = _mm256_setzero_ps();
    for (; i + 8 <= b1; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(e + i));
    m = hmax(vm);
#endif
    for (; i < b1; ++i) m = std::max(m, e[i]);
    out[b] = m;
  }
}

template <bool kMass>
uint64_t weight_of(uint32_t key) {
  if constexpr (kMass) {
    return mass_of(bits_to_float(key));
  } else {
    return 1;
  }
}

// Bins the candidates by bits [shift, shift + 10) and returns the bin where
// the running weight from the top, starting at `above`, reaches target;
// `above` becomes the weight above that bin and `cand` keeps only the bin.
template <bool kMass>
uint32_t narrow(std::vector<uint32_t>& cand, int shift, uint64_t& above, uint64_t target) {
  uint64_t hist[kBins] = {};
  for (uint32_t c : cand) hist[(c >> shift) & (kBins - 1)] += weight_of<kMass>(c);
  int b = kBins - 1;
  for (; b > 0 && above + hist[b] < target; --b) above += hist[b];
  cand.erase(std::remove_if(cand.begin(), cand.end(),
                            [&](uint32_t c) { return ((c >> shift) & (kBins - 1)) != uint32_t(b); }),
             cand.end());
  return static_cast<uint32_t>(b);
}

// The largest key v with above + weight(cand >= v) >= target.
template <bool kMass>
uint32_t radix_select(std::vector<uint32_t> cand, uint64_t above, uint64_t target) {
  for (int shift : {20, 10, 0}) narrow<kMass>(cand, shift, above, target);
  TORCH_INTERNAL_ASSERT(!cand.empty(), "aigc.sample: radix select lost its candidates");
  return cand.front();
}

// A lower bound on the top-k threshold: the k-th largest 64-entry block
// maximum (k blocks reach it, so k entries do). 0 when there are < k blocks.
uint32_t top_k_floor(const float* e, int64_t V, int64_t k, Scratch& s) {
  std::vector<float>& maxima = s.block_max;
  block_maxima(e, V, maxima);
  if (static_cast<int64_t>(maxima.size()) < k) return 0;
  std::nth_element(maxima.begin(), maxima.begin() + (k - 1), maxima.end(), std::greater<>());
  return float_to_bits(maxima[k - 1]);
}

// A lower bound on the top-p threshold x: entries below x weigh at most
// V * x * 2^40 in all, so if that is <= total - target, e >= x keeps enough.
uint32_t top_p_floor(int64_t V, uint64_t total, uint64_t target) {
  // (1 - 2^-50) absorbs the rounding of the conversions and the division.
  const double x = static_cast<double>(total - target) / (static_cast<double>(V) * 0x1p40) *
                   (1.0 - 0x1p-50);
  float f = static_cast<float>(x);
  if (static_cast<double>(f) > x) f = std::nextafter(f, 0.0f);
  return float_to_bits(std::min(f, 1.0f));
}

// tau of top-k and top-p (0 when both are off).
uint32_t select_threshold(const float* e, int64_t V, const RowParams& p, uint64_t total,
                          Scratch& s) {
  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  if (!use_k && !use_p) return 0;
  // Every threshold below is >= floor: drop what lies below it.
  const uint32_t floor = use_k ? top_k_floor(e, V, p.top_k, s)
                               : top_p_floor(V, total, aigc::top_p_target(p.top_p, total));
  std::vector<uint32_t>& cand = s.cand;
  if (floor > 0) {
    gather_at_least(e, V, floor, s.stage, cand);
  } else {
    cand.resize(V);  // every entry is a candidate
    std::memcpy(cand.data(), e, V * sizeof(float));
  }
  uint32_t tau_k = 0;
  uint64_t kept = total;  // the mass of the top-k set
  if (use_k) {
    tau_k = radix_select<false>(cand, 0, static_cast<uint64_t>(p.top_k));
    if (!use_p) return tau_k;
    cand.erase(std::remove_if(cand.begin(), cand.end(), [&](uint32_t c) { return c < tau_k; }),
               cand.end());
    kept = 0;
    for (uint32_t c : cand) kept += mass_of(bits_to_float(c));
  }
  return std::max(tau_k, radix_select<true>(cand, 0, aigc::top_p_target(p.top_p, kept)));
}

// ------------------------------------------------------------------- rows --

// x[id] = penalized x[id] at the previous tokens' ids, recomputed from the
// input so that repeated ids are penalised once.
template <typename T>
void penalize(const T* in, float* x, const RowParams& p) {
  for (int64_t j = 0; j < p.n_prev; ++j) {
    const int64_t id = p.prev[j];
    if (id >= 0) x[id] = aigc::apply_repetition_penalty(static_cast<float>(in[id]), p.penalty);
  }
}

// The tokens share e and the draw; only where the logits are read differs.
template <typename T>
int64_t draw_row(const T* x, int64_t V, float m, const RowParams& p, Scratch& s) {
  // 1/T rounded once; capped so that (x - m) * inv_t stays a number (0 at the max).
  const float inv_t = std::min(1.0f / p.temperature, std::numeric_limits<float>::max());
  float* e = s.e.data();
  uint64_t* chunk_mass = s.chunk_mass.data();
  const uint64_t total =
      m == kInf ? inf_row(x, V, e, chunk_mass) : exp_row(x, V, m, inv_t, e, chunk_mass);
  uint32_t tau = select_threshold(e, V, p, total, s);
  if (p.min_p > 0.0f) tau = std::max(tau, float_to_bits(p.min_p));
  const uint64_t kept = tau == 0 ? total : kept_mass(e, V, tau, chunk_mass);
  const uint64_t r = aigc::scale_random_bits(
      aigc::sample_random_bits(p.seed, p.offset, p.row_id), kept);
  return draw(e, V, tau, chunk_mass, r);
}

template <typename T>
int64_t sample_row(const T* x, int64_t V, const RowParams& p, Scratch& s) {
  const bool greedy = p.temperature == 0.0f;
  if (p.n_prev == 0) {  // read the logits in place
    const MaxResult scan = max_row(x, V, static_cast<float*>(nullptr));
    if (scan.has_nan) return aigc::kSampleNaN;
    if (scan.max == -kInf) return aigc::kSampleNoFinite;
    if (greedy) return first_equal(x, V, scan.max);
    return draw_row(x, V, scan.max, p, s);
  }
  // With a repetition penalty: a float32 copy of the row, penalised.
  float* xf = s.e.data();
  const MaxResult scan = max_row(x, V, xf);
  if (scan.has_nan) return aigc::kSampleNaN;
  penalize(x, xf, p);
  const float m = max_row(xf, V, static_cast<float*>(nullptr)).max;
  if (m == -kInf) return aigc::kSampleNoFinite;
  if (greedy) return first_equal(static_cast<const float*>(xf), V, m);
  return draw_row(static_cast<const float*>(xf), V, m, p, s);
}

// ---------------------------------------------------------------- binding --

void check_row_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t B,
                      const at::Tensor& logits) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, "aigc.sample: ", name, " must be a ",
                   c10::toString(dtype), " tensor, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == B, "aigc.sample: ", name,
                    " must have shape [", B, "] (one value per logits row), got ", t.sizes());
  TORCH_CHECK_VALUE(t.device() == logits.device(), "aigc.sample: ", name, " is on ", t.device(),
                    " but logits is on ", logits.device());
  TORCH_CHECK_VALUE(t.is_contiguous(), "aigc.sample: ", name, " must be contiguous");
}

}  // namespace

namespace aigc {
// Dtype, shape, device and layout checks common to every device (the CUDA
// binding calls it too).
void check_sample_inputs(const at::Tensor& logits, const at::Tensor& temperature,
                  const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& min_p,
                  const at::Tensor& seed, const at::Tensor& offset,
                  const std::optional<at::Tensor>& prev_tokens,
                  const std::optional<at::Tensor>& repetition_penalty,
                  const std::optional<at::Tensor>& row_ids) {
  const auto dt = logits.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf,
                   "aigc.sample: logits must be float32, bfloat16 or float16, got ", dt);
  TORCH_CHECK_VALUE(logits.dim() == 2, "aigc.sample: logits must have shape [batch, vocab], got ",
                    logits.sizes());
  const int64_t B = logits.size(0), V = logits.size(1);
  TORCH_CHECK_VALUE(V >= 1, "aigc.sample: logits has an empty vocabulary (shape ", logits.sizes(),
                    ")");
  TORCH_CHECK_VALUE(V <= aigc::kMaxVocab, "aigc.sample: vocabulary size ", V,
                    " exceeds the supported maximum ", aigc::kMaxVocab);
  TORCH_CHECK_VALUE(logits.stride(1) == 1 || V == 1,
                    "aigc.sample: logits rows must be contiguous (stride(1) == 1), got strides ",
                    logits.strides(), "; call .contiguous()");
  check_row_tensor(temperature, "temperature", at::kFloat, B, logits);
  check_row_tensor(top_k, "top_k", at::kLong, B, logits);
  check_row_tensor(top_p, "top_p", at::kFloat, B, logits);
  check_row_tensor(min_p, "min_p", at::kFloat, B, logits);
  check_row_tensor(seed, "seed", at::kLong, B, logits);
  check_row_tensor(offset, "offset", at::kLong, B, logits);
  if (row_ids.has_value()) check_row_tensor(*row_ids, "row_ids", at::kLong, B, logits);
  TORCH_CHECK_VALUE(prev_tokens.has_value() == repetition_penalty.has_value(),
                    "aigc.sample: prev_tokens and repetition_penalty go together (got only ",
                    prev_tokens.has_value() ? "prev_tokens" : "repetition_penalty", ")");
  if (prev_tokens.has_value()) {
    const at::Tensor& prev = *prev_tokens;
    TORCH_CHECK_TYPE(prev.scalar_type() == at::kLong,
                     "aigc.sample: prev_tokens must be an int64 tensor, got ", prev.scalar_type());
    TORCH_CHECK_VALUE(prev.dim() == 2 && prev.size(0) == B,
                      "aigc.sample: prev_tokens must have shape [", B,
                      ", n] (negative ids are padding), got ", prev.sizes());
    TORCH_CHECK_VALUE(prev.device() == logits.device(), "aigc.sample: prev_tokens is on ",
                      prev.device(), " but logits is on ", logits.device());
    TORCH_CHECK_VALUE(prev.is_contiguous(), "aigc.sample: prev_tokens must be contiguous");
    check_row_tensor(*repetition_penalty, "repetition_penalty", at::kFloat, B, logits);
  }
}
}  // namespace aigc

namespace {

// The per-row parameter value checks (on the CPU they are cheap to do first).
void check_values(const RowParams& p, int64_t row, int64_t V) {
  auto fail = [&](const char* name, auto value, int64_t status) {
    TORCH_CHECK_VALUE(false, "aigc.sample: ", name, "[", row, "] = ", value, ": ",
                      aigc::sample_status_message(status));
  };
  if (!(p.temperature >= 0.0f && p.temperature < kInf))
    fail("temperature", p.temperature, aigc::kSampleBadTemperature);
  if (p.top_k < 0) fail("top_k", p.top_k, aigc::kSampleBadTopK);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("top_p", p.top_p, aigc::kSampleBadTopP);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("min_p", p.min_p, aigc::kSampleBadMinP);
  if (p.prev != nullptr) {
    if (!(p.penalty > 0.0f && p.penalty < kInf))
      fail("repetition_penalty", p.penalty, aigc::kSampleBadPenalty);
    for (int64_t j = 0; j < p.n_prev; ++j)
      TORCH_CHECK_VALUE(p.prev[j] < V, "aigc.sample: prev_tokens[", row, ", ", j, "] = ",
                        p.prev[j], " is not a token id of a vocabulary of ", V);
  }
}

at::Tensor sample_cpu(const at::Tensor& logits, const at::Tensor& temperature,
                      const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& min_p,
                      const at::Tensor& seed, const at::Tensor& offset,
                      const std::optional<at::Tensor>& prev_tokens,
                      const std::optional<at::Tensor>& repetition_penalty,
                      const std::optional<at::Tensor>& row_ids) {
  aigc::check_sample_inputs(logits, temperature, top_k, top_p, min_p, seed, offset, prev_tokens,
                            repetition_penalty, row_ids);
  const int64_t B = logits.size(0), V = logits.size(1);
  const int64_t n_prev = prev_tokens.has_value() ? prev_tokens->size(1) : 0;
  auto row_params = [&](int64_t b) {
    RowParams p{temperature.data_ptr<float>()[b], top_k.data_ptr<int64_t>()[b],
                top_p.data_ptr<float>()[b],       min_p.data_ptr<float>()[b],
                static_cast<uint64_t>(seed.data_ptr<int64_t>()[b]),
                static_cast<uint64_t>(offset.data_ptr<int64_t>()[b]),
                static_cast<uint64_t>(row_ids.has_value() ? row_ids->data_ptr<int64_t>()[b] : b)};
    if (prev_tokens.has_value()) {
      p.prev = prev_tokens->data_ptr<int64_t>() + b * n_prev;
      p.n_prev = n_prev;
      p.penalty = repetition_penalty->data_ptr<float>()[b];
    }
    return p;
  };
  for (int64_t b = 0; b < B; ++b) check_values(row_params(b), b, V);

  at::Tensor tokens = at::empty({B}, logits.options().dtype(at::kLong));
  int64_t* out = tokens.data_ptr<int64_t>();
  const int64_t row_stride = logits.stride(0);
  auto run = [&](auto* x) {
    // Rows per task: ~2^18 logits (a few hundred microseconds), so that small
    // batches do not pay for waking (and, on a busy machine, waiting for) threads.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / V);
    auto rows = [&](int64_t begin, int64_t end) {
      // Kept per thread across calls: a fresh row buffer would cost page faults.
      static thread_local Scratch s;
      if (static_cast<int64_t>(s.e.size()) < V) s.e.resize(V);
      s.chunk_mass.resize(slice_count(V));  // within capacity after the first call
      for (int64_t b = begin; b < end; ++b)
        out[b] = sample_row(x + b * row_stride, V, row_params(b), s);
    };
    // Fewer rows than threads: row after row on the caller, so that each long
    // row's slice passes can split over the threads (for_slices) instead.
    if (B < at::get_num_threads()) {
      rows(0, B);
    } else {
      aigc::parallel_items(
          (B + grain - 1) / grain, B, grain + 1,
          [&](int64_t task, int) { rows(task * grain, std::min(B, (task + 1) * grain)); },
          aigc::Team::kKernelThreads);
    }
  };
  switch (logits.scalar_type()) {
    case at::kFloat: run(logits.data_ptr<float>()); break;
    case at::kBFloat16: run(logits.data_ptr<c10::BFloat16>()); break;
    default: run(logits.data_ptr<c10::Half>()); break;
  }
  for (int64_t b = 0; b < B; ++b)
    TORCH_CHECK_VALUE(out[b] >= 0, "aigc.sample: logits row ", b, ": ",
                      aigc::sample_status_message(out[b]));
  return tokens;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(aigc, m) {
  m.def(
      "sample(Tensor logits, Tensor temperature, Tensor top_k, Tensor top_p, Tensor min_p, "
      "Tensor seed, Tensor offset, Tensor? prev_tokens=None, Tensor? repetition_penalty=None, "
      "Tensor? row_ids=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) { m.impl("sample", &sample_cpu); }
