// aigc::upsample_conv2d on CUDA: the torch binding. Checks the arguments (the
// same checks and messages as the CPU kernel), prepares the weight as
// (kh, kw, Cin, Cout) and the folded per-channel scale/shift in fp32, and
// launches the kernel of csrc/kernels/upsample_conv2d.cuh: tensor cores for
// fp16/bf16, CUDA cores for fp32.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cpu/upsample_conv2d.h"
#include "kernels/upsample_conv2d.cuh"

namespace aigc::upsample {
namespace {

namespace k = aigc_kernels::upsample;
static_assert(static_cast<int>(Activation::Silu) == k::kSilu, "activation numbering");

void fill_strides(long long (&dst)[4], const at::Tensor& t) {
  if (t.dim() == 3) {
    dst[0] = t.stride(0), dst[1] = t.stride(1), dst[2] = 0, dst[3] = t.stride(2);
  } else {
    for (int i = 0; i < 4; ++i) dst[i] = t.stride(i);
  }
}

at::Tensor upsample_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight,
                                const c10::optional<at::Tensor>& bias,
                                const c10::optional<at::Tensor>& scale,
                                const c10::optional<at::Tensor>& shift, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef output_padding,
                                c10::string_view activation, double negative_slope) {
  const Geometry g = check_args(x, weight, bias, scale, shift, stride, padding, output_padding,
                                std::string(activation), negative_slope);
  TORCH_CHECK(x.is_cuda(), "upsample_conv2d: the CUDA kernel got x on ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf ||
                  x.scalar_type() == at::kBFloat16,
              "upsample_conv2d: x must be float32, float16 or bfloat16 on CUDA; got ",
              dtype_name(x.scalar_type()));
  TORCH_CHECK(g.N * g.Cin * g.H * g.W < (int64_t(1) << 31) &&
                  g.N * g.Cout * g.Ho * g.Wo < (int64_t(1) << 31),
              "upsample_conv2d: tensors of 2^31 or more elements are not supported on CUDA");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = allocate_output(x, g);
  if (out.numel() == 0) return out;

  // (Cin, Cout, kh, kw) -> (kh, kw, Cin, Cout): B tiles are then rows of Cout.
  const at::Tensor w4 = g.one_d ? weight.unsqueeze(2) : weight;
  const at::Tensor w = w4.permute({2, 3, 0, 1}).contiguous();
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor eff_scale = scale.has_value() ? scale->to(at::kFloat) : at::ones({g.Cout}, f32);
  at::Tensor eff_shift = at::zeros({g.Cout}, f32);
  if (bias.has_value()) eff_shift += bias->to(at::kFloat) * eff_scale;
  if (shift.has_value()) eff_shift += shift->to(at::kFloat);
  eff_scale = eff_scale.contiguous();

  k::Params p{};
  p.x = x.data_ptr();
  p.w = w.data_ptr();
  p.scale = eff_scale.data_ptr<float>();
  p.shift = eff_shift.data_ptr<float>();
  p.out = out.data_ptr();
  fill_strides(p.x_stride, x);
  fill_strides(p.out_stride, out);
  p.N = g.N, p.Cin = g.Cin, p.Cout = g.Cout, p.H = g.H, p.W = g.W, p.Ho = g.Ho, p.Wo = g.Wo;
  p.kh = g.kh, p.kw = g.kw, p.sh = g.sh, p.sw = g.sw, p.ph = g.ph, p.pw = g.pw;
  p.act = static_cast<int>(g.act);
  p.slope = static_cast<float>(g.negative_slope);
  const int blocks = k::plan(p);
  const dim3 grid(blocks, (g.Cout + k::kBN - 1) / k::kBN);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (x.scalar_type()) {
    case at::kFloat:
      k::upsample_conv2d_simt<float><<<grid, k::kSimtThreads, 0, stream>>>(p);
      break;
    case at::kHalf:
      k::upsample_conv2d_wmma<__half><<<grid, k::kWmmaThreads, 0, stream>>>(p);
      break;
    default:
      k::upsample_conv2d_wmma<__nv_bfloat16><<<grid, k::kWmmaThreads, 0, stream>>>(p);
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace aigc::upsample

TORCH_LIBRARY_IMPL(aigc, CUDA, m) {
  m.impl("upsample_conv2d", &aigc::upsample::upsample_conv2d_cuda);
}
