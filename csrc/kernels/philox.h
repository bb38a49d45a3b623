// Counter-based random numbers and the bit-exact scalar arithmetic that the
// sampler's CPU kernel, its CUDA kernel and its PyTorch reference share.
//
// Torch-free and compilable by nvcc (device and host) and by any C++17 host
// compiler (the CPU kernels and the CUDA emulation harness), so that the same
// (seed, offset, row) draws the same token everywhere:
//
//   * Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as
//     1, 2, 3", SC'11), the generator of cuRAND and of torch's CUDA RNG;
//   * exp_nonpos(x): e^x for x <= 0 built from correctly rounded mul/add only
//     (no FMA, no library exp), so every backend, and PyTorch's float32 ops in
//     aigc_sdk/ops/reference.py, produce the same bits;
//   * the fixed-point "mass" of a probability, exact integers whose sums do
//     not depend on the summation order (threads, SIMD lanes, atomics).
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define AIGC_HD __host__ __device__ __forceinline__
#else
#define AIGC_HD inline
#endif

namespace aigc {

// ---------------------------------------------------------------- Philox --

struct Philox4x32 {
  uint32_t v[4];
};

AIGC_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

// Philox4x32 with 10 rounds on counter (c0..c3) and key (k0, k1).
AIGC_HD Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                 uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c0, &hi0, &lo0);
    philox_mulhilo(kM1, c2, &hi1, &lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// The 64 random bits of one sampled row: key = seed, counter = (offset, row).
AIGC_HD uint64_t sample_random_bits(uint64_t seed, uint64_t offset, uint64_t row) {
  const Philox4x32 r = philox4x32_10(
      static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
      static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32),
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return (static_cast<uint64_t>(r.v[1]) << 32) | r.v[0];
}

// floor(bits * n / 2^64): a uniform integer in [0, n) without division.
AIGC_HD uint64_t scale_random_bits(uint64_t bits, uint64_t n) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(bits, n);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
#endif
}

// ---------------------------------------------- correctly rounded float ops --
// Compilers fuse a*b+c into one FMA (GCC does by default, nvcc too), which
// rounds once instead of twice and so changes low bits between backends. These
// wrappers force one rounding per operation: device intrinsics on the GPU, an
// empty asm that pins the product in a register on the host.

AIGC_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  float p = a * b;
#if defined(__x86_64__) || defined(__i386__)
  __asm__("" : "+x"(p));
#elif defined(__aarch64__)
  __asm__("" : "+w"(p));
#else
  volatile float pinned = p;
  p = pinned;
#endif
  return p;
#endif
}

AIGC_HD float bits_to_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

AIGC_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t bits;
  __builtin_memcpy(&bits, &f, sizeof bits);
  return bits;
#endif
}

AIGC_HD float round_half_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return __builtin_rintf(x);  // the default rounding mode: to nearest, ties to even
#endif
}

// ------------------------------------------------------ bit-exact e^x, x<=0 --
// Cephes expf: x = n ln2 + r (Cody-Waite, C1 has 9 significant bits so n*C1
// is exact), e^r by a degree-7 polynomial, times 2^n. Below kExpMin the result
// is flushed to 0 (e^-87 ~ 1.6e-38, far below the mass resolution 2^-40).
// Accuracy: within 2 ulp of e^x. The CPU's SIMD version in csrc/cpu/sample.cpp
// and reference.py's _exp_nonpos perform the same operations in the same order.
namespace expc {
constexpr float kMin = -87.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kC1 = 0.693359375f;
constexpr float kC2 = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f;
constexpr float kP1 = 1.3981999507e-3f;
constexpr float kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f;
constexpr float kP4 = 1.6666665459e-1f;
constexpr float kP5 = 5.0000001201e-1f;
}  // namespace expc

// e^x for x <= 0 (x = -inf gives 0). exp_nonpos(0) == 1 exactly.
AIGC_HD float exp_nonpos(float x) {
  using namespace expc;
  if (!(x >= kMin)) return 0.0f;
  const float n = round_half_even(mul_rn(x, kLog2e));
  float r = x - mul_rn(n, kC1);
  r = r - mul_rn(n, kC2);
  const float r2 = mul_rn(r, r);
  float p = mul_rn(kP0, r) + kP1;
  p = mul_rn(p, r) + kP2;
  p = mul_rn(p, r) + kP3;
  p = mul_rn(p, r) + kP4;
  p = mul_rn(p, r) + kP5;
  const float y = (mul_rn(p, r2) + r) + 1.0f;
  const uint32_t scale_bits = static_cast<uint32_t>(static_cast<int>(n) + 127) << 23;
  return mul_rn(y, bits_to_float(scale_bits));
}

// ------------------------------------------------------------ sampling law --
// Probability weights are e_i = exp_nonpos(z_i - max z) in (0, 1], and their
// masses are the integers floor(e_i * 2^40): sums of masses are exact, hence
// identical whatever the order in which threads add them, and every cumulative
// sum is monotone. Rows are limited to kMaxVocab entries so that a row's total
// mass stays below 2^63.
constexpr int kMassBits = 40;
constexpr int64_t kMaxVocab = (int64_t{1} << 23) - 1;

AIGC_HD uint64_t mass_of(float e) {
  return static_cast<uint64_t>(mul_rn(e, 1099511627776.0f));  // e * 2^40, exact
}

// The top-p target: the smallest kept mass, ceil(p * total) computed in double
// (correctly rounded on every backend), at most the total.
AIGC_HD uint64_t top_p_target(float top_p, uint64_t total) {
  const double t = static_cast<double>(top_p) * static_cast<double>(total);
  double c = static_cast<double>(static_cast<uint64_t>(t));
  if (c < t) c += 1.0;  // ceil without libm, same on host and device
  const uint64_t target = static_cast<uint64_t>(c);
  return target < total ? target : total;
}

// Per-row outcome codes written where the token would go (tokens are >= 0).
enum SampleStatus : int64_t {
  kSampleNaN = -1,            // the row's logits contain a NaN
  kSampleNoFinite = -2,       // every logit of the row is -inf
  kSampleBadTemperature = -3,  // temperature < 0, NaN or inf
  kSampleBadTopK = -4,        // top_k < 0
  kSampleBadTopP = -5,        // top_p outside (0, 1]
  kSampleBadMinP = -6,        // min_p outside [0, 1]
  kSampleBadPenalty = -7,     // repetition_penalty <= 0, NaN or inf
  kSampleBadPrevToken = -8,   // a previous token id >= vocabulary size
};

// What a status code means, for the bindings' error messages.
inline const char* sample_status_message(int64_t status) {
  switch (status) {
    case kSampleNaN: return "its logits contain NaN";
    case kSampleNoFinite: return "all its logits are -inf, so no token can be drawn";
    case kSampleBadTemperature: return "temperature must be finite and >= 0 (0 means greedy)";
    case kSampleBadTopK: return "top_k must be >= 0 (0 means no top-k)";
    case kSampleBadTopP: return "top_p must be in (0, 1] (1 means no top-p)";
    case kSampleBadMinP: return "min_p must be in [0, 1] (0 means no min-p)";
    case kSampleBadPenalty: return "repetition_penalty must be finite and > 0 (1 means none)";
    case kSampleBadPrevToken: return "prev_tokens holds an id >= the vocabulary size";
    default: return "unknown sampling error";
  }
}

// The repetition penalty of CTRL (Keskar et al. 2019): divide a positive
// logit, multiply a negative one.
AIGC_HD float apply_repetition_penalty(float x, float penalty) {
  return x > 0.0f ? x / penalty : x * penalty;
}

}  // namespace aigc
