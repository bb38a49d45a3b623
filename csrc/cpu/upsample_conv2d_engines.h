// What the two engines of aigc::upsample_conv2d on the CPU share: the
// epilogue activations, how a pass is spread over the threads, and their
// entry points. upsample_conv2d.cpp picks an engine per call;
// upsample_conv2d_cout_lanes.cpp and upsample_conv2d_pixel_lanes.cpp each
// pick their register tile.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/parallel_items.h"
#include "cpu/simd.h"
#include "cpu/upsample_conv2d.h"
#include "cpu/upsample_conv2d_geometry.h"

namespace aigc::upsample {

using simd::fmadd;
using simd::kLanes;
using simd::loadu;
using simd::splat;
using simd::storeu;
using simd::Vec;

// The accumulator type of an input dtype: float64 accumulates in double,
// the rest (float32, bf16, fp16) in float32.
template <typename scalar_t>
using acc_of = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

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

template <typename T>
inline Vec<T> activation_vec(Vec<T> v, Activation act, T slope) {
  switch (act) {
    case Activation::None: return v;
    // `v < 0 ? ... : v` keeps NaN as NaN, as torch.relu does.
    case Activation::Relu: return v < T(0) ? Vec<T>{} : v;
    case Activation::LeakyRelu: return v < T(0) ? v * slope : v;
    default: break;
  }
#ifdef AIGC_SIMD_AVX2
  if constexpr (std::is_same_v<T, float>) {
    switch (act) {
      case Activation::Tanh: return simd::tanh_ps(v);
      case Activation::Sigmoid: return simd::sigmoid_ps(v);
      case Activation::Silu: return v * simd::sigmoid_ps(v);
      default: break;
    }
  }
#endif
  for (int i = 0; i < kLanes<T>; ++i) v[i] = activation_scalar<T>(v[i], act, slope);
  return v;
}

// Work (multiply-adds or elements) below which a pass runs on the caller.
constexpr int64_t kSerialWork = int64_t(1) << 18;

template <typename F>
void parallel_items(int64_t items, int64_t work, const F& fn) {
  aigc::parallel_items(items, work, kSerialWork, fn);
}

// ---------------------------------------------------------------------------
// The engines. Each computes every phase of `phases` into `out` and applies
// the folded epilogue act(acc * eff_scale[c] + eff_shift[c]) (both padded
// with zeros to a multiple of 32 channels). Defined for float, double,
// c10::BFloat16 and c10::Half.
// ---------------------------------------------------------------------------

// SIMD lanes over output channels: an implicit GEMM for most layers.
template <typename scalar_t>
void run_cout_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                    const at::Tensor& weight, const std::vector<acc_of<scalar_t>>& eff_scale,
                    const std::vector<acc_of<scalar_t>>& eff_shift, const at::Tensor& out);

// SIMD lanes over output pixels, for layers with at most half a vector of
// output channels (2 * Cout <= kLanes<acc_of<scalar_t>>).
template <typename scalar_t>
void run_pixel_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                     const at::Tensor& weight, const std::vector<acc_of<scalar_t>>& eff_scale,
                     const std::vector<acc_of<scalar_t>>& eff_shift, const at::Tensor& out);

}  // namespace aigc::upsample
