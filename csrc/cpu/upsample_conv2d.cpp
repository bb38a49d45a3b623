// aigc::upsample_conv2d on the CPU:
//   y = activation((conv_transpose(x, w) + bias) * scale + shift), in one pass.
//
// Sub-pixel (phase) decomposition. Output row oy receives kernel rows ky with
// (oy + pad - ky) divisible by the stride, i.e. ky = r + j*s where
// r = (oy + pad) mod s is the row's *phase*. So each of the s_h*s_w phases is
// an ordinary dense convolution of x with a sub-kernel of ceil((k - r)/s) taps
// per dimension: no multiply ever touches an inserted zero, and every output
// element is produced exactly once, so the bias/BN/activation epilogue runs
// on the accumulator tile while it is still in registers.
//
// Each phase is computed as an implicit GEMM by one of two engines:
//  * cout-lanes (most layers): SIMD lanes run over output channels; a
//    register tile of NR output pixels x 16 channels accumulates
//    sum_{tap, ci} w[tap][ci][co] * x[pixel + tap][ci], reading x in NHWC
//    through a table of per-pixel row pointers (XNNPACK-style indirection,
//    padding taps point at a zero row), so x is never im2col-copied.
//  * pixel-lanes (Cout <= half a vector, e.g. a 64->3 RGB layer or a mono
//    audio layer): SIMD lanes run over consecutive output pixels of a phase.
//    The image is copied once into zero-padded planes so every tap is a
//    constant shift of the flattened plane, and a channel weight is a
//    broadcast: full lanes even with 3 output channels.
// bf16/fp16 are converted to fp32 while packing and accumulate in fp32 (this
// CPU has no bf16 dot-product instructions); float64 accumulates in double.
#include "cpu/upsample_conv2d.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define AIGC_UPSAMPLE_AVX2 1
#endif

namespace aigc::upsample {
namespace {

// ---------------------------------------------------------------------------
// SIMD vocabulary: GCC/Clang vector extensions, with AVX2 intrinsics where the
// compiler would otherwise emit poorer code (broadcast, fused multiply-add).
// ---------------------------------------------------------------------------
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int kLanes = 32 / sizeof(T);

template <typename T>
inline Vec<T> loadu(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void storeu(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}

#ifdef AIGC_UPSAMPLE_AVX2
inline Vec<float> splat(float s) { return _mm256_set1_ps(s); }
inline Vec<double> splat(double s) { return _mm256_set1_pd(s); }
inline Vec<float> fmadd(Vec<float> a, Vec<float> b, Vec<float> c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline Vec<double> fmadd(Vec<double> a, Vec<double> b, Vec<double> c) {
  return _mm256_fmadd_pd(a, b, c);
}
#else
template <typename T>
inline Vec<T> splat(T s) {
  Vec<T> v;
  for (int i = 0; i < kLanes<T>; ++i) v[i] = s;
  return v;
}
template <typename T>
inline Vec<T> fmadd(Vec<T> a, Vec<T> b, Vec<T> c) {
  return a * b + c;
}
#endif

// ---------------------------------------------------------------------------
// Epilogue activations.
// ---------------------------------------------------------------------------
template <typename T>
inline T activation_scalar(T v, Activation act, T slope) {
  switch (act) {
    case Activation::None: return v;
    case Activation::Relu: return v < T(0) ? T(0) : v;
    case Activation::LeakyRelu: return v < T(0) ? v * slope : v;
    case Activation::Tanh: return std::tanh(v);
    case Activation::Sigmoid: return T(1) / (T(1) + std::exp(-v));
    case Activation::Silu: return v / (T(1) + std::exp(-v));
  }
  return v;
}

#ifdef AIGC_UPSAMPLE_AVX2
// exp(x) for 8 floats: Cephes expf (range reduction by ln 2, degree-6
// polynomial, 2^n built in the exponent bits); ~1 ulp over the clamped range.
inline __m256 exp_ps(__m256 x) {
  // max/min return their second operand when one is NaN: keep x second so NaN stays NaN.
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f),
                    _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i n = _mm256_cvtps_epi32(fx);
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(pow2n));
}

inline __m256 sigmoid_ps(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// Cephes tanhf: odd polynomial below 0.625, 1 - 2/(exp(2|x|) + 1) above.
inline __m256 tanh_ps(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign_mask, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 e = exp_ps(_mm256_add_ps(a, a));
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  big = _mm256_or_ps(big, _mm256_and_ps(sign_mask, x));
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}
#endif

template <typename T>
inline Vec<T> activation_vec(Vec<T> v, Activation act, T slope) {
  switch (act) {
    case Activation::None: return v;
    // `v < 0 ? ... : v` keeps NaN as NaN, as torch.relu does.
    case Activation::Relu: return v < T(0) ? Vec<T>{} : v;
    case Activation::LeakyRelu: return v < T(0) ? v * slope : v;
    default: break;
  }
#ifdef AIGC_UPSAMPLE_AVX2
  if constexpr (std::is_same_v<T, float>) {
    switch (act) {
      case Activation::Tanh: return tanh_ps(v);
      case Activation::Sigmoid: return sigmoid_ps(v);
      case Activation::Silu: return _mm256_mul_ps(v, sigmoid_ps(v));
      default: break;
    }
  }
#endif
  for (int i = 0; i < kLanes<T>; ++i) v[i] = activation_scalar<T>(v[i], act, slope);
  return v;
}

// ---------------------------------------------------------------------------
// Geometry of the phases.
// ---------------------------------------------------------------------------
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// at::parallel_for grain: one chunk (no thread hand-off) for tiny problems,
// where waking the pool costs more than the work.
inline int64_t grain_for(int64_t items, int64_t work) {
  constexpr int64_t kSerialWork = int64_t(1) << 18;
  return work < kSerialWork ? std::max<int64_t>(items, 1) : 1;
}

// One phase (ry, rx): the outputs oy = t*sh + ry - ph, ox = u*sw + rx - pw for
// t in [t0, t1], u in [u0, u1]; tap (jy, jx) reads input (t - jy, u - jx) with
// kernel element (ry + jy*sh, rx + jx*sw).
struct Phase {
  int64_t ry, rx, t0, t1, u0, u1;
  std::vector<std::array<int64_t, 2>> taps;
  int64_t rows() const { return std::max<int64_t>(t1 - t0 + 1, 0); }
  int64_t cols() const { return std::max<int64_t>(u1 - u0 + 1, 0); }
};

std::vector<Phase> make_phases(const Geometry& g) {
  std::vector<Phase> phases;
  for (int64_t ry = 0; ry < g.sh; ++ry) {
    for (int64_t rx = 0; rx < g.sw; ++rx) {
      Phase p;
      p.ry = ry;
      p.rx = rx;
      p.t0 = ceil_div(g.ph - ry, g.sh);
      p.t1 = floor_div(g.Ho - 1 + g.ph - ry, g.sh);
      p.u0 = ceil_div(g.pw - rx, g.sw);
      p.u1 = floor_div(g.Wo - 1 + g.pw - rx, g.sw);
      for (int64_t jy = 0; ry + jy * g.sh < g.kh; ++jy)
        for (int64_t jx = 0; rx + jx * g.sw < g.kw; ++jx) p.taps.push_back({jy, jx});
      if (p.rows() > 0 && p.cols() > 0) phases.push_back(std::move(p));
    }
  }
  return phases;
}

// Element strides of a 4-D (n, c, h, w) view; 1-D tensors get h-stride 0.
struct Strides {
  int64_t n, c, h, w;
};
inline Strides strides_of(const at::Tensor& t) {
  if (t.dim() == 3) return {t.stride(0), t.stride(1), 0, t.stride(2)};
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// Per-channel epilogue y = act(acc * scale + shift) with bias folded in:
// shift' = bias * scale + shift. Padded with zeros to `padded` channels.
template <typename scalar_t, typename acc_t>
void fold_epilogue(const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& scale,
                   const c10::optional<at::Tensor>& shift, int64_t cout, int64_t padded,
                   std::vector<acc_t>& eff_scale, std::vector<acc_t>& eff_shift) {
  eff_scale.assign(padded, acc_t(0));
  eff_shift.assign(padded, acc_t(0));
  auto value = [](const c10::optional<at::Tensor>& t, int64_t c, acc_t fallback) {
    if (!t.has_value()) return fallback;
    return static_cast<acc_t>(t->data_ptr<scalar_t>()[c * t->stride(0)]);
  };
  for (int64_t c = 0; c < cout; ++c) {
    const acc_t s = value(scale, c, acc_t(1));
    eff_scale[c] = s;
    eff_shift[c] = value(bias, c, acc_t(0)) * s + value(shift, c, acc_t(0));
  }
}

template <typename scalar_t, typename acc_t>
inline acc_t weight_at(const scalar_t* w, const Strides& ws, int64_t ci, int64_t co, int64_t ky,
                       int64_t kx) {
  return static_cast<acc_t>(w[ci * ws.n + co * ws.c + ky * ws.h + kx * ws.w]);
}

// ---------------------------------------------------------------------------
// Engine 1: cout-lanes implicit GEMM.
// ---------------------------------------------------------------------------

// acc[i][v] = sum_{tap, ci} w[tap][ci][v*L:(v+1)*L] * x_i,tap[ci], where x_i,tap
// is pixel i's input row (Cin contiguous values) for that tap. Only the group's
// active taps (those inside the image for at least one pixel) are visited.
template <typename acc_t, int NR, int MV>
inline void cout_lanes_microkernel(const acc_t* const* rows, const int32_t* taps,
                                   int64_t ntaps, int64_t cin, const acc_t* wpanel,
                                   Vec<acc_t> (&acc)[NR][MV]) {
  constexpr int L = kLanes<acc_t>;
#pragma GCC unroll 16
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) acc[i][v] = Vec<acc_t>{};
  for (int64_t a = 0; a < ntaps; ++a) {
    const acc_t* p[NR];
#pragma GCC unroll 16
    for (int i = 0; i < NR; ++i) p[i] = rows[a * NR + i];
    const acc_t* w = wpanel + taps[a] * cin * MV * L;
    for (int64_t ci = 0; ci < cin; ++ci) {
      Vec<acc_t> wv[MV];
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) wv[v] = loadu(w + v * L);
      w += MV * L;
#pragma GCC unroll 16
      for (int i = 0; i < NR; ++i) {
        const Vec<acc_t> xb = splat(p[i][ci]);
#pragma GCC unroll 4
        for (int v = 0; v < MV; ++v) acc[i][v] = fmadd(wv[v], xb, acc[i][v]);
      }
    }
  }
}

// Stores `count` channels of one output pixel, `cstride` elements apart.
template <typename scalar_t, typename acc_t, int MV>
inline void store_channels(scalar_t* dst, int64_t cstride, const Vec<acc_t> (&y)[MV],
                           int64_t count) {
  constexpr int L = kLanes<acc_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (cstride == 1 && count == MV * L) {
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) storeu(dst + v * L, y[v]);
      return;
    }
  }
  alignas(32) acc_t tmp[MV * L];
  std::memcpy(tmp, y, sizeof tmp);
  for (int64_t c = 0; c < count; ++c) dst[c * cstride] = static_cast<scalar_t>(tmp[c]);
}

template <typename scalar_t, typename acc_t, int NR, int MV>
void run_cout_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                    const at::Tensor& weight, const std::vector<acc_t>& eff_scale,
                    const std::vector<acc_t>& eff_shift, const at::Tensor& out) {
  constexpr int L = kLanes<acc_t>;
  constexpr int BW = MV * L;  // output channels per register tile
  const int64_t cin = g.Cin;
  const int64_t blocks = (g.Cout + BW - 1) / BW;

  // x as NHWC in acc_t (used in place when it already is), plus a zero row
  // that padding taps point to.
  const Strides xs = strides_of(x);
  const bool x_ready = std::is_same_v<scalar_t, acc_t> && xs.c == 1 && xs.w == cin &&
                       (g.H == 1 || xs.h == g.W * cin) && (g.N == 1 || xs.n == g.H * g.W * cin);
  std::vector<acc_t> x_copy;
  const acc_t* xrows;
  if (x_ready) {
    xrows = reinterpret_cast<const acc_t*>(x.data_ptr<scalar_t>());
  } else {
    x_copy.resize(g.N * g.H * g.W * cin);
    const scalar_t* src = x.data_ptr<scalar_t>();
    at::parallel_for(0, g.N * g.H, grain_for(g.N * g.H, x.numel()), [&](int64_t begin,
                                                                         int64_t end) {
      for (int64_t nh = begin; nh < end; ++nh) {
        const int64_t n = nh / g.H, h = nh % g.H;
        const scalar_t* s = src + n * xs.n + h * xs.h;
        acc_t* d = x_copy.data() + nh * g.W * cin;
        for (int64_t c = 0; c < cin; ++c)
          for (int64_t w = 0; w < g.W; ++w) d[w * cin + c] = static_cast<acc_t>(s[c * xs.c + w * xs.w]);
      }
    });
    xrows = x_copy.data();
  }
  const std::vector<acc_t> zero_row(std::max<int64_t>(cin, 1), acc_t(0));

  // Weights per phase as [block][tap][ci][BW] (channels past Cout are zero).
  std::vector<int64_t> wofs(phases.size() + 1, 0);
  for (size_t p = 0; p < phases.size(); ++p)
    wofs[p + 1] = wofs[p] + blocks * static_cast<int64_t>(phases[p].taps.size()) * cin * BW;
  std::vector<acc_t> wpack(wofs.back());
  {
    const scalar_t* w = weight.data_ptr<scalar_t>();
    const Strides ws = strides_of(weight);
    const int64_t pb = static_cast<int64_t>(phases.size()) * blocks;
    at::parallel_for(0, pb, grain_for(pb, weight.numel()), [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const Phase& ph = phases[item / blocks];
        const int64_t b = item % blocks;
        const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
        acc_t* d = wpack.data() + wofs[item / blocks] + b * ntaps * cin * BW;
        for (int64_t tap = 0; tap < ntaps; ++tap) {
          const int64_t ky = ph.ry + ph.taps[tap][0] * g.sh, kx = ph.rx + ph.taps[tap][1] * g.sw;
          for (int64_t ci = 0; ci < cin; ++ci, d += BW)
            for (int64_t l = 0; l < BW; ++l) {
              const int64_t co = b * BW + l;
              d[l] = co < g.Cout ? weight_at<scalar_t, acc_t>(w, ws, ci, co, ky, kx) : acc_t(0);
            }
        }
      }
    });
  }

  // Pixels of a phase are ordered (t, u, n), image fastest: the NR pixels of a
  // group then mostly share one (t, u) and so the same taps inside the image,
  // and the taps that fall outside for all of them are skipped (1/4 of the
  // work of a 4x4 -> 8x8 layer, 15/16 of a 1x1 -> 4x4 one).
  // Work items: (phase, chunk of groups); a chunk runs every channel block so
  // its input rows stay in L2 while the weight panels stream by.
  const int threads = at::get_num_threads();
  std::vector<int64_t> groups(phases.size());
  int64_t total_groups = 0;
  int64_t max_taps = 1;
  for (size_t p = 0; p < phases.size(); ++p) {
    groups[p] = (g.N * phases[p].rows() * phases[p].cols() + NR - 1) / NR;
    total_groups += groups[p];
    max_taps = std::max<int64_t>(max_taps, phases[p].taps.size());
  }
  const int64_t bytes_per_group = NR * max_taps * std::max<int64_t>(cin, 1) * sizeof(acc_t);
  const int64_t chunk = std::clamp<int64_t>(
      std::min<int64_t>(total_groups / (8 * threads), (512 << 10) / bytes_per_group), 1, 16);
  std::vector<int64_t> item_start(phases.size() + 1, 0);  // first item of each phase
  for (size_t p = 0; p < phases.size(); ++p)
    item_start[p + 1] = item_start[p] + (groups[p] + chunk - 1) / chunk;

  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  const Strides os = strides_of(out);
  const acc_t slope = static_cast<acc_t>(g.negative_slope);

  int64_t total_macs = 0;
  for (const Phase& ph : phases)
    total_macs += g.N * ph.rows() * ph.cols() * static_cast<int64_t>(ph.taps.size()) * cin * g.Cout;
  at::parallel_for(0, item_start.back(), grain_for(item_start.back(), total_macs),
                   [&](int64_t begin, int64_t end) {
    std::vector<const acc_t*> table;  // [group][active tap][pixel] input rows
    std::vector<int32_t> active;      // [group][active tap] tap index
    std::vector<int64_t> nactive;     // [group] number of active taps
    std::vector<scalar_t*> dst;       // [group][pixel] output address of channel 0
    for (int64_t item = begin; item < end; ++item) {
      const size_t p = std::upper_bound(item_start.begin(), item_start.end(), item) -
                       item_start.begin() - 1;
      const Phase& ph = phases[p];
      const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
      const int64_t g0 = (item - item_start[p]) * chunk;
      const int64_t ng = std::min(chunk, groups[p] - g0);
      const int64_t pixels = g.N * ph.rows() * ph.cols();

      table.resize(ng * ntaps * NR);
      active.resize(ng * ntaps);
      nactive.assign(ng, 0);
      dst.resize(ng * NR);
      for (int64_t gi = 0; gi < ng; ++gi) {
        int64_t n[NR], t[NR], u[NR];
        for (int i = 0; i < NR; ++i) {
          const int64_t m = std::min((g0 + gi) * NR + i, pixels - 1);
          n[i] = m % g.N;
          t[i] = ph.t0 + (m / g.N) / ph.cols();
          u[i] = ph.u0 + (m / g.N) % ph.cols();
          dst[gi * NR + i] = (g0 + gi) * NR + i < pixels
                                 ? out_ptr + n[i] * os.n + (t[i] * g.sh + ph.ry - g.ph) * os.h +
                                       (u[i] * g.sw + ph.rx - g.pw) * os.w
                                 : nullptr;
        }
        for (int64_t tap = 0; tap < ntaps; ++tap) {
          const acc_t** rows = table.data() + (gi * ntaps + nactive[gi]) * NR;
          bool any = false;
          for (int i = 0; i < NR; ++i) {
            const int64_t iy = t[i] - ph.taps[tap][0], ix = u[i] - ph.taps[tap][1];
            const bool inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
            rows[i] = inside ? xrows + ((n[i] * g.H + iy) * g.W + ix) * cin : zero_row.data();
            any |= inside;
          }
          if (any) active[gi * ntaps + nactive[gi]++] = static_cast<int32_t>(tap);
        }
      }

      for (int64_t b = 0; b < blocks; ++b) {
        const acc_t* wpanel = wpack.data() + wofs[p] + b * ntaps * cin * BW;
        const int64_t count = std::min<int64_t>(BW, g.Cout - b * BW);
        Vec<acc_t> sc[MV], sh[MV];
        for (int v = 0; v < MV; ++v) {
          sc[v] = loadu(eff_scale.data() + b * BW + v * L);
          sh[v] = loadu(eff_shift.data() + b * BW + v * L);
        }
        for (int64_t gi = 0; gi < ng; ++gi) {
          Vec<acc_t> acc[NR][MV];
          cout_lanes_microkernel<acc_t, NR, MV>(table.data() + gi * ntaps * NR,
                                                active.data() + gi * ntaps, nactive[gi], cin,
                                                wpanel, acc);
          for (int i = 0; i < NR; ++i) {
            scalar_t* d = dst[gi * NR + i];
            if (d == nullptr) continue;
            Vec<acc_t> y[MV];
            for (int v = 0; v < MV; ++v)
              y[v] = activation_vec<acc_t>(fmadd(acc[i][v], sc[v], sh[v]), g.act, slope);
            store_channels<scalar_t, acc_t, MV>(d + b * BW * os.c, os.c, y, count);
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Engine 2: pixel-lanes, for a handful of output channels.
// ---------------------------------------------------------------------------

// The padded plane covers input rows [iy_lo, iy_hi] and columns [ix_lo, ix_hi]
// (zeros outside the image), so every tap of every phase reads inside it.
struct PaddedPlane {
  int64_t iy_lo, ix_lo, hp, wp, size;
};

PaddedPlane padded_plane(const Geometry& g, const std::vector<Phase>& phases) {
  int64_t iy_lo = 0, iy_hi = g.H - 1, ix_lo = 0, ix_hi = g.W - 1;
  for (const Phase& p : phases) {
    int64_t jy_max = 0, jx_max = 0;
    for (const auto& t : p.taps) {
      jy_max = std::max(jy_max, t[0]);
      jx_max = std::max(jx_max, t[1]);
    }
    iy_lo = std::min(iy_lo, p.t0 - jy_max);
    ix_lo = std::min(ix_lo, p.u0 - jx_max);
    iy_hi = std::max(iy_hi, p.t1);
    ix_hi = std::max(ix_hi, p.u1);
  }
  const int64_t hp = iy_hi - iy_lo + 1, wp = ix_hi - ix_lo + 1;
  return {iy_lo, ix_lo, hp, wp, hp * wp};
}

// acc[c][v] = sum_{ci, tap} w[ci][tap][c] * plane_ci[m0 + v*L + lane + offset(tap)].
template <typename acc_t, int NC, int MV>
inline void pixel_lanes_microkernel(const acc_t* planes, int64_t plane_stride, int64_t cin,
                                    const int64_t* offsets, int64_t ntaps, const acc_t* w,
                                    Vec<acc_t> (&acc)[NC][MV]) {
  constexpr int L = kLanes<acc_t>;
#pragma GCC unroll 4
  for (int c = 0; c < NC; ++c)
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) acc[c][v] = Vec<acc_t>{};
  for (int64_t ci = 0; ci < cin; ++ci, planes += plane_stride) {
    for (int64_t tap = 0; tap < ntaps; ++tap, w += NC) {
      const acc_t* src = planes + offsets[tap];
      Vec<acc_t> xv[MV];
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) xv[v] = loadu(src + v * L);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        const Vec<acc_t> wb = splat(w[c]);
#pragma GCC unroll 4
        for (int v = 0; v < MV; ++v) acc[c][v] = fmadd(xv[v], wb, acc[c][v]);
      }
    }
  }
}

template <typename scalar_t, typename acc_t, int NC, int MV>
void run_pixel_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                     const at::Tensor& weight, const std::vector<acc_t>& eff_scale,
                     const std::vector<acc_t>& eff_shift, const at::Tensor& out) {
  constexpr int L = kLanes<acc_t>;
  constexpr int BLOCK = MV * L;  // pixels per register tile
  const int64_t cin = g.Cin;
  const PaddedPlane pl = padded_plane(g, phases);
  const int64_t chunks = (g.Cout + NC - 1) / NC;

  // Weights per phase as [chunk][ci][tap][NC], and each tap's shift in the
  // flattened plane.
  std::vector<int64_t> wofs(phases.size() + 1, 0), tofs(phases.size() + 1, 0);
  for (size_t p = 0; p < phases.size(); ++p) {
    wofs[p + 1] = wofs[p] + chunks * cin * static_cast<int64_t>(phases[p].taps.size()) * NC;
    tofs[p + 1] = tofs[p] + static_cast<int64_t>(phases[p].taps.size());
  }
  std::vector<acc_t> wpack(wofs.back());
  std::vector<int64_t> offsets(std::max<int64_t>(tofs.back(), 1));
  {
    const scalar_t* w = weight.data_ptr<scalar_t>();
    const Strides ws = strides_of(weight);
    for (size_t p = 0; p < phases.size(); ++p) {
      const Phase& ph = phases[p];
      const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
      acc_t* d = wpack.data() + wofs[p];
      for (int64_t k = 0; k < chunks; ++k)
        for (int64_t ci = 0; ci < cin; ++ci)
          for (int64_t tap = 0; tap < ntaps; ++tap)
            for (int c = 0; c < NC; ++c, ++d) {
              const int64_t co = k * NC + c;
              *d = co < g.Cout ? weight_at<scalar_t, acc_t>(w, ws, ci, co,
                                                            ph.ry + ph.taps[tap][0] * g.sh,
                                                            ph.rx + ph.taps[tap][1] * g.sw)
                               : acc_t(0);
            }
      for (int64_t tap = 0; tap < ntaps; ++tap)
        offsets[tofs[p] + tap] = -(ph.taps[tap][0] * pl.wp + ph.taps[tap][1]);
    }
  }

  const scalar_t* xptr = x.data_ptr<scalar_t>();
  const Strides xs = strides_of(x);
  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  const Strides os = strides_of(out);
  const acc_t slope = static_cast<acc_t>(g.negative_slope);
  // Over-reads of the last tile of the last plane land in this zero tail.
  const int64_t buffer_size = cin * pl.size + BLOCK;

  // Copies input rows [h_begin, h_end) of image n into its padded planes.
  auto pack_rows = [&](acc_t* planes, int64_t n, int64_t h_begin, int64_t h_end) {
    for (int64_t ci = 0; ci < cin; ++ci)
      for (int64_t h = h_begin; h < h_end; ++h) {
        const scalar_t* s = xptr + n * xs.n + ci * xs.c + h * xs.h;
        acc_t* d = planes + ci * pl.size + (h - pl.iy_lo) * pl.wp - pl.ix_lo;
        if constexpr (std::is_same_v<scalar_t, acc_t>) {
          if (xs.w == 1) {
            std::memcpy(d, s, g.W * sizeof(acc_t));
            continue;
          }
        }
        for (int64_t w = 0; w < g.W; ++w) d[w] = static_cast<acc_t>(s[w * xs.w]);
      }
  };

  // Output tiles [tile_begin, tile_end) of phase p of image n, where tile k
  // covers flattened positions m_start(p) + k*BLOCK ... + BLOCK - 1.
  auto compute_tiles = [&](const acc_t* planes, int64_t n, size_t p, int64_t tile_begin,
                           int64_t tile_end) {
    const Phase& ph = phases[p];
    const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
    const int64_t m_start = (ph.t0 - pl.iy_lo) * pl.wp + (ph.u0 - pl.ix_lo);
    alignas(32) acc_t ybuf[NC][BLOCK];
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t m0 = m_start + tile * BLOCK;
      for (int64_t k = 0; k < chunks; ++k) {
        Vec<acc_t> acc[NC][MV];
        pixel_lanes_microkernel<acc_t, NC, MV>(planes + m0, pl.size, cin,
                                               offsets.data() + tofs[p], ntaps,
                                               wpack.data() + wofs[p] + k * cin * ntaps * NC, acc);
        const int64_t count = std::min<int64_t>(NC, g.Cout - k * NC);
        for (int c = 0; c < NC; ++c)
          for (int v = 0; v < MV; ++v) {
            const acc_t sc = eff_scale[k * NC + c], sh = eff_shift[k * NC + c];
            storeu(&ybuf[c][v * L],
                   activation_vec<acc_t>(fmadd(acc[c][v], splat(sc), splat(sh)), g.act, slope));
          }
        // Scatter the lanes that are real outputs of this phase.
        int64_t t = m0 / pl.wp + pl.iy_lo, u = m0 % pl.wp + pl.ix_lo;
        for (int lane = 0; lane < BLOCK; ++lane) {
          if (t > ph.t1) break;
          if (u >= ph.u0 && u <= ph.u1) {
            scalar_t* d = out_ptr + n * os.n + (t * g.sh + ph.ry - g.ph) * os.h +
                          (u * g.sw + ph.rx - g.pw) * os.w + k * NC * os.c;
            for (int64_t c = 0; c < count; ++c) d[c * os.c] = static_cast<scalar_t>(ybuf[c][lane]);
          }
          if (++u == pl.ix_lo + pl.wp) {
            u = pl.ix_lo;
            ++t;
          }
        }
      }
    }
  };
  auto tiles_of = [&](const Phase& ph) {
    const int64_t m_start = (ph.t0 - pl.iy_lo) * pl.wp + (ph.u0 - pl.ix_lo);
    const int64_t m_end = (ph.t1 - pl.iy_lo) * pl.wp + (ph.u1 - pl.ix_lo);
    return (m_end - m_start + BLOCK) / BLOCK;
  };

  const int threads = at::get_num_threads();
  int64_t total_macs = 0;
  for (const Phase& ph : phases)
    total_macs += g.N * ph.rows() * ph.cols() * static_cast<int64_t>(ph.taps.size()) * cin * g.Cout;
  if (total_macs < (int64_t(1) << 18)) {
    std::vector<acc_t> planes(buffer_size, acc_t(0));
    for (int64_t n = 0; n < g.N; ++n) {
      pack_rows(planes.data(), n, 0, g.H);
      for (size_t p = 0; p < phases.size(); ++p)
        compute_tiles(planes.data(), n, p, 0, tiles_of(phases[p]));
    }
  } else if (g.N >= 2 * threads) {
    // Enough images: each thread packs and computes whole images.
    at::parallel_for(0, g.N, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> planes(buffer_size, acc_t(0));
      for (int64_t n = begin; n < end; ++n) {
        pack_rows(planes.data(), n, 0, g.H);
        for (size_t p = 0; p < phases.size(); ++p)
          compute_tiles(planes.data(), n, p, 0, tiles_of(phases[p]));
      }
    });
  } else {
    // Few images: split each image's rows and tiles across threads.
    std::vector<acc_t> planes(buffer_size, acc_t(0));
    std::vector<int64_t> first_tile(phases.size() + 1, 0);
    for (size_t p = 0; p < phases.size(); ++p) first_tile[p + 1] = first_tile[p] + tiles_of(phases[p]);
    for (int64_t n = 0; n < g.N; ++n) {
      at::parallel_for(0, g.H, 1, [&](int64_t begin, int64_t end) {
        pack_rows(planes.data(), n, begin, end);
      });
      at::parallel_for(0, first_tile.back(), 4, [&](int64_t begin, int64_t end) {
        for (size_t p = 0; p < phases.size(); ++p) {
          const int64_t b = std::max(begin, first_tile[p]), e = std::min(end, first_tile[p + 1]);
          if (b < e) compute_tiles(planes.data(), n, p, b - first_tile[p], e - first_tile[p]);
        }
      });
    }
  }
}

// ---------------------------------------------------------------------------
// Dispatch.
// ---------------------------------------------------------------------------
template <typename scalar_t>
void upsample_cpu_typed(const Geometry& g, const at::Tensor& x, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias,
                        const c10::optional<at::Tensor>& scale,
                        const c10::optional<at::Tensor>& shift, const at::Tensor& out) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  constexpr int L = kLanes<acc_t>;
  const std::vector<Phase> phases = make_phases(g);
  std::vector<acc_t> eff_scale, eff_shift;
  fold_epilogue<scalar_t, acc_t>(bias, scale, shift, g.Cout, ((g.Cout + 2 * L - 1) / (2 * L)) * 2 * L,
                                 eff_scale, eff_shift);
  auto run = [&](auto engine) { engine(g, phases, x, weight, eff_scale, eff_shift, out); };
  if (2 * g.Cout <= L) {
    // A few output channels: pixels on the lanes.
    switch (g.Cout) {
      case 1: return run(run_pixel_lanes<scalar_t, acc_t, 1, 4>);
      case 2: return run(run_pixel_lanes<scalar_t, acc_t, 2, 4>);
      case 3: return run(run_pixel_lanes<scalar_t, acc_t, 3, 4>);
      default: return run(run_pixel_lanes<scalar_t, acc_t, 4, 3>);
    }
  }
  if (g.Cout <= L) return run(run_cout_lanes<scalar_t, acc_t, 12, 1>);
  return run(run_cout_lanes<scalar_t, acc_t, 6, 2>);
}

at::Tensor upsample_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias,
                               const c10::optional<at::Tensor>& scale,
                               const c10::optional<at::Tensor>& shift, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef output_padding,
                               c10::string_view activation, double negative_slope) {
  const Geometry g = check_args(x, weight, bias, scale, shift, stride, padding, output_padding,
                                std::string(activation), negative_slope);
  TORCH_CHECK(x.device().is_cpu(), "upsample_conv2d: the CPU kernel got x on ", x.device());
  at::Tensor out = allocate_output(x, g);
  if (out.numel() == 0) return out;
  switch (x.scalar_type()) {
    case at::kFloat: upsample_cpu_typed<float>(g, x, weight, bias, scale, shift, out); break;
    case at::kDouble: upsample_cpu_typed<double>(g, x, weight, bias, scale, shift, out); break;
    case at::kBFloat16:
      upsample_cpu_typed<c10::BFloat16>(g, x, weight, bias, scale, shift, out);
      break;
    case at::kHalf: upsample_cpu_typed<c10::Half>(g, x, weight, bias, scale, shift, out); break;
    default:
      TORCH_CHECK(false, "upsample_conv2d: x must be float32, float64, bfloat16 or float16 on the "
                  "CPU; got ", dtype_name(x.scalar_type()));
  }
  return out;
}

}  // namespace
}  // namespace aigc::upsample

TORCH_LIBRARY_FRAGMENT(aigc, m) {
  // The fake (meta) impl and autograd live in this Python module.
  m.set_python_module("aigc_sdk.ops.upsample");
  m.def(
      "upsample_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor? scale, Tensor? shift, "
      "int[] stride, int[] padding, int[] output_padding, str activation, "
      "float negative_slope) -> Tensor");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) {
  m.impl("upsample_conv2d", &aigc::upsample::upsample_conv2d_cpu);
}
