// aigc::sample on the CPU: temperature, repetition penalty, top-k, top-p,
// min-p and the draw, a few passes over each row and no sort.
//
// The law (shared with csrc/cuda/sample.cu and reference.py's sample):
//   x  = logits as float32; at the ids of prev_tokens, x / penalty if x > 0
//        else x * penalty (each id once, however often it repeats)
//   temperature 0: the token is argmax x (the lowest index among ties).
//   z  = x / temperature, m = max z
//   e  = exp_nonpos(z - m) in (0, 1] (e = [z == +inf] when m is +inf: the
//        +inf logits share the probability equally)
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
// Per row: one pass converts and scales (and finds the max), one computes e
// and its masses, and when top-k/top-p are on, a radix select on the bits of e
// (a 1024-bin histogram over the row, then two small ones over the boundary
// bin), then one pass for the kept mass and a partial one for the draw.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define AIGC_SAMPLE_AVX2 1
#endif

#include "kernels/philox.h"

namespace {

using aigc::bits_to_float;
using aigc::float_to_bits;
using aigc::mass_of;

constexpr int64_t kChunk = 1024;   // running-mass granularity of the draw
constexpr int kBinShift = 20;      // level-1 bins: the top 10 bits of e's 30 bits
constexpr int kBins = 1024;
constexpr float kInf = std::numeric_limits<float>::infinity();

struct RowParams {
  float temperature;
  int64_t top_k;
  float top_p;
  float min_p;
  uint64_t seed;
  uint64_t offset;
  const int64_t* prev = nullptr;  // previous token ids of the row (or null)
  int64_t n_prev = 0;
  float penalty = 1.0f;
};

// Per-thread buffers, reused across the rows a thread samples.
struct Scratch {
  std::vector<float> e;             // z, then e, of one row
  std::vector<uint64_t> chunk_mass;  // kept mass of each kChunk slice
  std::vector<uint32_t> cand;        // radix-select candidates (keys)
  std::vector<uint32_t> count;       // level-1 histogram
  std::vector<uint64_t> mass;
};

uint32_t key_at(const float* e, int64_t i) { return float_to_bits(e[i]); }

// ------------------------------------------------------------- SIMD helpers --
#ifdef AIGC_SAMPLE_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load8(const c10::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// A product the compiler may not fuse with a following add (see philox.h).
inline __m256 mul_rn8(__m256 a, __m256 b) {
  __m256 p = _mm256_mul_ps(a, b);
  __asm__("" : "+x"(p));
  return p;
}

// aigc::exp_nonpos on 8 lanes: the same operations in the same order.
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

inline float hmax(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  return *std::max_element(lanes, lanes + 8);
}
#endif

// ------------------------------------------------------------------ passes --

struct ScaleResult {
  float max;
  bool has_nan;
};

// z = x / divisor into `z`, with the max of z and whether x holds a NaN.
template <typename T>
ScaleResult scale_row(const T* x, int64_t V, float divisor, float* z) {
  float m = -kInf;
  bool nan = false;
  int64_t i = 0;
#ifdef AIGC_SAMPLE_AVX2
  const __m256 d = _mm256_set1_ps(divisor);
  __m256 vmax = _mm256_set1_ps(-kInf);
  __m256 vnan = _mm256_setzero_ps();
  for (; i + 8 <= V; i += 8) {
    const __m256 v = load8(x + i);
    vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256 zz = _mm256_div_ps(v, d);
    _mm256_storeu_ps(z + i, zz);
    vmax = _mm256_max_ps(vmax, zz);
  }
  m = hmax(vmax);
  nan = _mm256_movemask_ps(vnan) != 0;
#endif
  for (; i < V; ++i) {
    const float v = static_cast<float>(x[i]);
    nan |= v != v;
    z[i] = v / divisor;
    m = std::max(m, z[i]);
  }
  return {m, nan};
}

float max_of(const float* z, int64_t V) {
  float m = -kInf;
  int64_t i = 0;
#ifdef AIGC_SAMPLE_AVX2
  __m256 vmax = _mm256_set1_ps(-kInf);
  for (; i + 8 <= V; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(z + i));
  m = hmax(vmax);
#endif
  for (; i < V; ++i) m = std::max(m, z[i]);
  return m;
}

// In place z -> e = exp_nonpos(z - m); fills the mass of every kChunk slice.
// Returns the row's total mass.
uint64_t exp_row(float* z, int64_t V, float m, uint64_t* chunk_mass) {
  uint64_t total = 0;
  for (int64_t c0 = 0, c = 0; c0 < V; c0 += kChunk, ++c) {
    const int64_t c1 = std::min(V, c0 + kChunk);
    uint64_t s = 0;
    int64_t i = c0;
#ifdef AIGC_SAMPLE_AVX2
    const __m256 vm = _mm256_set1_ps(m);
    const __m256i all = _mm256_set1_epi32(-1);
    __m256i hi = _mm256_setzero_si256(), lo = _mm256_setzero_si256();
    for (; i + 8 <= c1; i += 8) {
      const __m256 e = exp_nonpos8(_mm256_sub_ps(_mm256_loadu_ps(z + i), vm));
      _mm256_storeu_ps(z + i, e);
      add_mass8(e, all, hi, lo);
    }
    s = (hsum_u32(hi) << 20) + hsum_u32(lo);
#endif
    for (; i < c1; ++i) {
      z[i] = aigc::exp_nonpos(z[i] - m);
      s += mass_of(z[i]);
    }
    chunk_mass[c] = s;
    total += s;
  }
  return total;
}

// When the max is +inf, the +inf entries share the probability equally.
uint64_t inf_row(float* z, int64_t V, uint64_t* chunk_mass) {
  uint64_t total = 0;
  for (int64_t c0 = 0, c = 0; c0 < V; c0 += kChunk, ++c) {
    uint64_t s = 0;
    for (int64_t i = c0; i < std::min(V, c0 + kChunk); ++i) {
      z[i] = z[i] == kInf ? 1.0f : 0.0f;
      s += mass_of(z[i]);
    }
    chunk_mass[c] = s;
    total += s;
  }
  return total;
}

// The mass of the entries with e >= tau (tau > 0), per kChunk slice and total.
uint64_t kept_mass(const float* e, int64_t V, uint32_t tau, uint64_t* chunk_mass) {
  uint64_t total = 0;
  for (int64_t c0 = 0, c = 0; c0 < V; c0 += kChunk, ++c) {
    const int64_t c1 = std::min(V, c0 + kChunk);
    uint64_t s = 0;
    int64_t i = c0;
#ifdef AIGC_SAMPLE_AVX2
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
    total += s;
  }
  return total;
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
// bits of e >= 0, ordered like the values. Level 1 bins the top 10 of the 30
// significant bits over the whole row; levels 2 and 3 bin 10 bits each over
// the candidates left in the chosen bin.

void level1_histogram(const float* e, int64_t V, bool with_mass, Scratch& s) {
  s.count.assign(kBins, 0);
  s.mass.assign(kBins, 0);
  uint32_t* count = s.count.data();
  uint64_t* mass = s.mass.data();
  if (with_mass) {
    for (int64_t i = 0; i < V; ++i) {
      const uint32_t b = key_at(e, i) >> kBinShift;
      count[b] += 1;
      mass[b] += mass_of(e[i]);
    }
  } else {
    for (int64_t i = 0; i < V; ++i) count[key_at(e, i) >> kBinShift] += 1;
  }
}

// Appends the keys of the entries in level-1 bin `bin` to `out`.
void gather_bin(const float* e, int64_t V, uint32_t bin, std::vector<uint32_t>& out) {
  out.clear();
  int64_t i = 0;
#ifdef AIGC_SAMPLE_AVX2
  const __m256i want = _mm256_set1_epi32(static_cast<int32_t>(bin));
  for (; i + 8 <= V; i += 8) {
    const __m256i k = _mm256_castps_si256(_mm256_loadu_ps(e + i));
    const __m256i hit = _mm256_cmpeq_epi32(_mm256_srli_epi32(k, kBinShift), want);
    for (int bits = _mm256_movemask_ps(_mm256_castsi256_ps(hit)); bits; bits &= bits - 1)
      out.push_back(key_at(e, i + __builtin_ctz(bits)));
  }
#endif
  for (; i < V; ++i)
    if ((key_at(e, i) >> kBinShift) == bin) out.push_back(key_at(e, i));
}

template <bool kMass>
uint64_t weight_of(uint32_t key) {
  if constexpr (kMass) {
    return mass_of(bits_to_float(key));
  } else {
    return 1;
  }
}

// Levels 2 and 3 over candidates that share their level-1 bin. `above` is
// the weight of the keys above that bin.
template <bool kMass>
uint32_t refine(std::vector<uint32_t>& cand, uint64_t above, uint64_t target) {
  uint64_t hist[kBins];
  for (int shift : {10, 0}) {
    std::fill(hist, hist + kBins, 0);
    for (uint32_t c : cand) hist[(c >> shift) & (kBins - 1)] += weight_of<kMass>(c);
    int b = kBins - 1;
    for (; b > 0 && above + hist[b] < target; --b) above += hist[b];
    cand.erase(std::remove_if(cand.begin(), cand.end(),
                              [&](uint32_t c) { return ((c >> shift) & (kBins - 1)) != uint32_t(b); }),
               cand.end());
  }
  TORCH_INTERNAL_ASSERT(!cand.empty(), "aigc.sample: radix select lost its candidates");
  return cand.front();
}

// Level-1 scan: the bin where the running weight from the top reaches target;
// `above` gets the weight of the bins above it.
template <typename W>
uint32_t scan_bins(const W* hist, uint64_t target, uint64_t& above) {
  above = 0;
  int b = kBins - 1;
  for (; b > 0 && above + hist[b] < target; --b) above += hist[b];
  return static_cast<uint32_t>(b);
}

// tau of top-k and top-p (0 when both are off).
uint32_t select_threshold(const float* e, int64_t V, const RowParams& p, uint64_t total,
                          Scratch& s) {
  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  if (!use_k && !use_p) return 0;
  level1_histogram(e, V, use_p, s);

  uint32_t tau_k = 0, bin_k = 0;
  uint64_t kept = total;  // the mass of the top-k set
  std::vector<uint32_t> k_cand;
  if (use_k) {
    uint64_t above = 0;
    bin_k = scan_bins(s.count.data(), static_cast<uint64_t>(p.top_k), above);
    gather_bin(e, V, bin_k, s.cand);
    k_cand = s.cand;
    tau_k = refine<false>(s.cand, above, static_cast<uint64_t>(p.top_k));
    if (!use_p) return tau_k;
    // Keep only the top-k part of its bin; the mass above the bin is whole.
    k_cand.erase(std::remove_if(k_cand.begin(), k_cand.end(), [&](uint32_t c) { return c < tau_k; }),
                 k_cand.end());
    uint64_t in_bin = 0;
    for (uint32_t c : k_cand) in_bin += mass_of(bits_to_float(c));
    s.mass[bin_k] = in_bin;
    for (uint32_t b = 0; b < bin_k; ++b) s.mass[b] = 0;
    kept = 0;
    for (uint32_t b = bin_k; b < kBins; ++b) kept += s.mass[b];
  }
  const uint64_t target = aigc::top_p_target(p.top_p, kept);
  uint64_t above = 0;
  const uint32_t bin_p = scan_bins(s.mass.data(), target, above);
  if (use_k && bin_p == bin_k) {
    s.cand = std::move(k_cand);
  } else {
    gather_bin(e, V, bin_p, s.cand);
  }
  return std::max(tau_k, refine<true>(s.cand, above, target));
}

// ------------------------------------------------------------------- rows --

// z[id] = penalized x[id] / divisor at the previous tokens' ids; returns false
// if an id is out of range. Recomputing from x makes repeats harmless.
template <typename T>
void penalize(const T* x, float* z, const RowParams& p, float divisor) {
  for (int64_t j = 0; j < p.n_prev; ++j) {
    const int64_t id = p.prev[j];
    if (id < 0) continue;  // padding
    z[id] = aigc::apply_repetition_penalty(static_cast<float>(x[id]), p.penalty) / divisor;
  }
}

template <typename T>
int64_t sample_row(const T* x, int64_t V, int64_t row, const RowParams& p, Scratch& s) {
  float* z = s.e.data();
  const bool greedy = p.temperature == 0.0f;
  const float divisor = greedy ? 1.0f : p.temperature;
  const ScaleResult scan = scale_row(x, V, divisor, z);
  if (scan.has_nan) return aigc::kSampleNaN;
  float m = scan.max;
  if (p.n_prev > 0) {
    penalize(x, z, p, divisor);
    m = max_of(z, V);
  }
  if (m == -kInf) return aigc::kSampleNoFinite;
  if (greedy) return std::find(z, z + V, m) - z;

  uint64_t* chunk_mass = s.chunk_mass.data();
  const uint64_t total = m == kInf ? inf_row(z, V, chunk_mass) : exp_row(z, V, m, chunk_mass);
  const float* e = z;
  uint32_t tau = select_threshold(e, V, p, total, s);
  if (p.min_p > 0.0f) tau = std::max(tau, float_to_bits(p.min_p));
  const uint64_t kept = tau == 0 ? total : kept_mass(e, V, tau, chunk_mass);
  const uint64_t r = aigc::scale_random_bits(
      aigc::sample_random_bits(p.seed, p.offset, static_cast<uint64_t>(row)), kept);
  return draw(e, V, tau, chunk_mass, r);
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
                  const std::optional<at::Tensor>& repetition_penalty) {
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
                      const std::optional<at::Tensor>& repetition_penalty) {
  aigc::check_sample_inputs(logits, temperature, top_k, top_p, min_p, seed, offset, prev_tokens,
                            repetition_penalty);
  const int64_t B = logits.size(0), V = logits.size(1);
  const int64_t n_prev = prev_tokens.has_value() ? prev_tokens->size(1) : 0;
  auto row_params = [&](int64_t b) {
    RowParams p{temperature.data_ptr<float>()[b], top_k.data_ptr<int64_t>()[b],
                top_p.data_ptr<float>()[b],       min_p.data_ptr<float>()[b],
                static_cast<uint64_t>(seed.data_ptr<int64_t>()[b]),
                static_cast<uint64_t>(offset.data_ptr<int64_t>()[b])};
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
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      Scratch s;
      s.e.resize(V);
      s.chunk_mass.resize((V + kChunk - 1) / kChunk);
      for (int64_t b = begin; b < end; ++b)
        out[b] = sample_row(x + b * row_stride, V, b, row_params(b), s);
    });
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
      "Tensor seed, Tensor offset, Tensor? prev_tokens=None, Tensor? repetition_penalty=None) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) { m.impl("sample", &sample_cpu); }
