// Emulation binding of the upsample_conv2d CUDA kernels (tests/test_upsample_emulation.py).
// It fills the kernel's Params exactly as csrc/cuda/upsample_conv2d.cu does, from tensors
// the test prepares the same way (weight permuted to (kh, kw, Cin, Cout), fp32 scale and
// shift with the bias folded in), and launches the same kernel for the same dtype.
#include "emulation/emu_pybind.h"
#include "kernels/upsample_conv2d.cuh"

#include <pybind11/stl.h>

#include <array>

namespace k = aigc_kernels::upsample;
using emu::Ptr;

namespace {

// sizes: N, Cin, Cout, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw.
template <typename T>
void run(Ptr<const T> x, Ptr<const T> w, Ptr<const float> scale, Ptr<const float> shift,
         Ptr<T> out, std::array<long long, 4> x_stride, std::array<long long, 4> out_stride,
         std::array<int, 13> sizes, int act, float slope) {
  k::Params p{};
  p.x = x.get();
  p.w = w.get();
  p.scale = scale.get();
  p.shift = shift.get();
  p.out = out.get();
  for (int i = 0; i < 4; ++i) p.x_stride[i] = x_stride[i], p.out_stride[i] = out_stride[i];
  int* fields[] = {&p.N, &p.Cin, &p.Cout, &p.H, &p.W, &p.Ho, &p.Wo,
                   &p.kh, &p.kw, &p.sh, &p.sw, &p.ph, &p.pw};
  for (int i = 0; i < 13; ++i) *fields[i] = sizes[i];
  p.act = act;
  p.slope = slope;
  const int blocks = k::plan(p);
  const dim3 grid(blocks, (p.Cout + k::kBN - 1) / k::kBN);
  if constexpr (std::is_same_v<T, float>) {
    emu::launch(k::upsample_conv2d_simt<float>, grid, dim3(k::kSimtThreads), 0, p);
  } else {
    emu::launch(k::upsample_conv2d_wmma<T>, grid, dim3(k::kWmmaThreads), 0, p);
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upsample_conv2d_float32", &run<float>);
  m.def("upsample_conv2d_float16", &run<__half>);
  m.def("upsample_conv2d_bfloat16", &run<__nv_bfloat16>);
  emu::def_runtime_helpers(m);
}
