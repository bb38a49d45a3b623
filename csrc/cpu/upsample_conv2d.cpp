// aigc::upsample_conv2d on the CPU:
//   y = activation((conv_transpose(x, w) + bias) * scale + shift), in one pass.
//
// The transposed convolution is split into its sub-pixel phases, each a dense
// convolution (upsample_conv2d_geometry.h), computed by one of two engines
// (upsample_conv2d_engines.h):
//  * cout-lanes (upsample_conv2d_cout_lanes.cpp, most layers): SIMD lanes run
//    over output channels, an implicit GEMM over NHWC input rows;
//  * pixel-lanes (upsample_conv2d_pixel_lanes.cpp, Cout <= half a vector,
//    e.g. a 64->3 RGB layer or a mono audio layer): SIMD lanes run over
//    consecutive output pixels of a phase, so 3 output channels still fill
//    the lanes.
// This file checks the arguments (upsample_conv2d.h, shared with the CUDA
// binding), folds bias and batch-norm into one scale and shift per channel,
// picks the engine and registers the op.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "cpu/upsample_conv2d.h"
#include "cpu/upsample_conv2d_engines.h"

#include <string>
#include <type_traits>
#include <vector>

namespace aigc::upsample {
namespace {

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

template <typename scalar_t>
void upsample_cpu_typed(const Geometry& g, const at::Tensor& x, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias,
                        const c10::optional<at::Tensor>& scale,
                        const c10::optional<at::Tensor>& shift, const at::Tensor& out) {
  using acc_t = acc_of<scalar_t>;
  const std::vector<Phase> phases = make_phases(g);
  std::vector<acc_t> eff_scale, eff_shift;
  // Padded to whole blocks of the widest tile (32 channels).
  fold_epilogue<scalar_t, acc_t>(bias, scale, shift, g.Cout, (g.Cout + 31) / 32 * 32, eff_scale,
                                 eff_shift);
  // A few output channels: pixels on the lanes.
  if (2 * g.Cout <= kLanes<acc_t>)
    return run_pixel_lanes<scalar_t>(g, phases, x, weight, eff_scale, eff_shift, out);
  return run_cout_lanes<scalar_t>(g, phases, x, weight, eff_scale, eff_shift, out);
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
