// Geometry of aigc::upsample_conv2d on the CPU: the sub-pixel (phase)
// decomposition both engines compute, and the strides they address tensors by.
//
// Output row oy receives kernel rows ky with (oy + pad - ky) divisible by the
// stride, i.e. ky = r + j*s where r = (oy + pad) mod s is the row's *phase*.
// So each of the s_h*s_w phases is an ordinary dense convolution of x with a
// sub-kernel of ceil((k - r)/s) taps per dimension: no multiply ever touches
// an inserted zero, and every output element is produced exactly once, so the
// bias/BN/activation epilogue runs on the accumulator tile while it is still
// in registers.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "cpu/upsample_conv2d.h"

namespace aigc::upsample {

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// One phase (ry, rx): the outputs oy = t*sh + ry - ph, ox = u*sw + rx - pw for
// t in [t0, t1], u in [u0, u1]; tap (jy, jx) reads input (t - jy, u - jx) with
// kernel element (ry + jy*sh, rx + jx*sw).
struct Phase {
  int64_t ry, rx, t0, t1, u0, u1;
  std::vector<std::array<int64_t, 2>> taps;
  int64_t rows() const { return std::max<int64_t>(t1 - t0 + 1, 0); }
  int64_t cols() const { return std::max<int64_t>(u1 - u0 + 1, 0); }
};

// The phases of a call that have outputs, ry-major (phases sharing ry are
// neighbours).
inline std::vector<Phase> make_phases(const Geometry& g) {
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

}  // namespace aigc::upsample
