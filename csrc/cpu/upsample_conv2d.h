// Argument checking and output allocation for aigc::upsample_conv2d, shared by
// the CPU kernel (csrc/cpu/upsample_conv2d.cpp) and the CUDA binding
// (csrc/cuda/upsample_conv2d.cu), so both devices reject the same inputs with
// the same messages and return the same output layout.
//
//   upsample_conv2d(x, weight, bias?, scale?, shift?, stride, padding,
//                   output_padding, activation, negative_slope)
//     = activation((conv_transpose(x, weight) + bias[c]) * scale[c] + shift[c])
//
// x is (N, Cin, H, W) or (N, Cin, L); weight is ConvTranspose's
// (Cin, Cout, kH, kW) or (Cin, Cout, kL); bias, scale, shift are (Cout,) or
// absent; stride / padding / output_padding have one entry per spatial dim.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <string>

namespace aigc::upsample {

// Numbering shared with csrc/kernels/upsample_conv2d.cuh (enum class Act).
enum class Activation : int { None = 0, Relu = 1, LeakyRelu = 2, Tanh = 3, Sigmoid = 4, Silu = 5 };

inline Activation parse_activation(const std::string& name) {
  if (name == "none") return Activation::None;
  if (name == "relu") return Activation::Relu;
  if (name == "leaky_relu") return Activation::LeakyRelu;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "silu") return Activation::Silu;
  TORCH_CHECK(false, "upsample_conv2d: activation must be one of none, relu, leaky_relu, tanh, "
              "sigmoid, silu; got '", name, "'");
}

// Sizes of one call, with 1-D inputs seen as 2-D ones of height 1.
struct Geometry {
  int64_t N, Cin, Cout, H, W, Ho, Wo;
  int64_t kh, kw, sh, sw, ph, pw;
  bool one_d;
  Activation act;
  double negative_slope;
};

constexpr int64_t kMaxKernel = 8;

// Dtypes named as Python spells them ("torch.float32"), for messages.
inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    default: return std::string("torch.") + c10::toString(t);
  }
}
constexpr int64_t kMaxStride = 4;

inline void check_param_vector(const c10::optional<at::Tensor>& t, const char* name,
                               const at::Tensor& x, int64_t cout) {
  if (!t.has_value()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == cout, "upsample_conv2d: ", name,
              " must have shape (", cout, ",) (one value per output channel); got ", t->sizes());
  TORCH_CHECK(t->scalar_type() == x.scalar_type(), "upsample_conv2d: ", name, " has dtype ",
              dtype_name(t->scalar_type()), " but x has dtype ", dtype_name(x.scalar_type()),
              "; they must match");
  TORCH_CHECK(t->device() == x.device(), "upsample_conv2d: ", name, " is on ", t->device(),
              " but x is on ", x.device());
}

inline Geometry check_args(const at::Tensor& x, const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias,
                           const c10::optional<at::Tensor>& scale,
                           const c10::optional<at::Tensor>& shift, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef output_padding,
                           const std::string& activation, double negative_slope) {
  TORCH_CHECK(x.dim() == 3 || x.dim() == 4,
              "upsample_conv2d: x must be (N, C, H, W) or (N, C, L); got a ", x.dim(),
              "-D tensor of shape ", x.sizes());
  const int64_t spatial = x.dim() - 2;
  TORCH_CHECK(weight.dim() == x.dim(), "upsample_conv2d: weight must be ",
              spatial == 2 ? "(Cin, Cout, kH, kW)" : "(Cin, Cout, kL)", " for a ", x.dim(),
              "-D x (ConvTranspose layout, groups=1); got shape ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "upsample_conv2d: weight has dtype ",
              dtype_name(weight.scalar_type()), " but x has dtype ", dtype_name(x.scalar_type()),
              "; they must match");
  TORCH_CHECK(weight.device() == x.device(), "upsample_conv2d: weight is on ", weight.device(),
              " but x is on ", x.device());
  TORCH_CHECK(weight.size(0) == x.size(1), "upsample_conv2d: x has ", x.size(1),
              " channels but weight expects ", weight.size(0),
              " input channels (weight is (Cin, Cout, ...), ConvTranspose layout, groups=1)");
  const int64_t cout = weight.size(1);
  TORCH_CHECK(cout > 0, "upsample_conv2d: weight has 0 output channels");
  for (int64_t d = 0; d < spatial; ++d) {
    const int64_t k = weight.size(2 + d);
    TORCH_CHECK(k >= 1 && k <= kMaxKernel, "upsample_conv2d: kernel sizes 1..", kMaxKernel,
                " are supported; weight has kernel size ", k);
  }
  check_param_vector(bias, "bias", x, cout);
  check_param_vector(scale, "scale", x, cout);
  check_param_vector(shift, "shift", x, cout);

  auto check_len = [&](at::IntArrayRef v, const char* name) {
    TORCH_CHECK(static_cast<int64_t>(v.size()) == spatial, "upsample_conv2d: ", name,
                " must have ", spatial, " entries (one per spatial dim of x); got ", v);
  };
  check_len(stride, "stride");
  check_len(padding, "padding");
  check_len(output_padding, "output_padding");
  for (int64_t d = 0; d < spatial; ++d) {
    TORCH_CHECK(stride[d] >= 1 && stride[d] <= kMaxStride, "upsample_conv2d: strides 1..",
                kMaxStride, " are supported; got stride ", stride);
    TORCH_CHECK(padding[d] >= 0, "upsample_conv2d: padding must be >= 0; got ", padding);
    TORCH_CHECK(output_padding[d] >= 0 && output_padding[d] < stride[d],
                "upsample_conv2d: output_padding must be >= 0 and smaller than stride "
                "(as in ConvTranspose with dilation 1); got output_padding ",
                output_padding, " with stride ", stride);
  }
  TORCH_CHECK(std::isfinite(negative_slope), "upsample_conv2d: negative_slope must be finite");

  Geometry g{};
  g.one_d = spatial == 1;
  g.N = x.size(0);
  g.Cin = x.size(1);
  g.Cout = cout;
  g.H = g.one_d ? 1 : x.size(2);
  g.W = x.size(-1);
  g.kh = g.one_d ? 1 : weight.size(2);
  g.kw = weight.size(-1);
  g.sh = g.one_d ? 1 : stride[0];
  g.sw = stride[spatial - 1];
  g.ph = g.one_d ? 0 : padding[0];
  g.pw = padding[spatial - 1];
  const int64_t oph = g.one_d ? 0 : output_padding[0];
  const int64_t opw = output_padding[spatial - 1];
  TORCH_CHECK(g.H > 0 && g.W > 0, "upsample_conv2d: x has an empty spatial size ", x.sizes());
  g.Ho = (g.H - 1) * g.sh - 2 * g.ph + g.kh + oph;
  g.Wo = (g.W - 1) * g.sw - 2 * g.pw + g.kw + opw;
  TORCH_CHECK(g.Ho > 0 && g.Wo > 0, "upsample_conv2d: padding ", padding,
              " is too large for input size ", x.sizes().slice(2), " and kernel size ",
              weight.sizes().slice(2), ": the output would be empty");
  g.act = parse_activation(activation);
  g.negative_slope = negative_slope;
  return g;
}

// The output is channels_last when x is (and x is not also plain contiguous,
// which happens for C == 1 or H == W == 1); the fake impl in
// aigc_sdk/ops/upsample.py applies the same rule.
inline bool wants_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline at::Tensor allocate_output(const at::Tensor& x, const Geometry& g) {
  if (g.one_d) return at::empty({g.N, g.Cout, g.Wo}, x.options());
  const auto format =
      wants_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  return at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options().memory_format(format));
}

}  // namespace aigc::upsample
